"""Budgets at and below the minimum, at the paper's scale of 258 contributors, and
the games of the large-n benchmark (benchmarks/games.py)."""

import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from diffcredit.coalitions import (
    COMPATIBLE_SCHEMES,
    min_budget,
    sample_design,
    validate,
)
from diffcredit.estimators import IdentificationError, estimate, get_method

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import games

N = 258
PAIRED = ("kernel_paired", "leverage", "stratified")
# Every sampled (scheme, method) pair; loo and exact take one fixed design.
SAMPLED = [(s, m) for m, schemes in COMPATIBLE_SCHEMES.items() if m not in ("loo", "exact") for s in schemes]


def lowest_for_design(method, n, paired):
    """The smallest minimum budget among the method's schemes paired as the design is,
    from coalitions.min_budget (independent of Method.min_rows)."""
    schemes = COMPATIBLE_SCHEMES[method]
    matching = [s for s in schemes if (s in PAIRED) == paired] or list(schemes)
    return min(min_budget(s, method, n) for s in matching)


def additive(n, seed=0):
    weights = np.random.default_rng(seed).normal(size=n)
    return (lambda masks: 2.0 + masks @ weights), weights


@pytest.mark.parametrize(("scheme", "method"), SAMPLED)
def test_below_the_minimum_is_refused_naming_budget_method_and_minimum(scheme, method, monkeypatch):
    value, _ = additive(N)
    record = get_method(method)
    calls = []
    monkeypatch.setattr(type(record), "point", lambda self, *a: calls.append(1))
    monkeypatch.setattr(type(record), "parts", lambda self, *a: calls.append(1))
    paired = scheme in PAIRED
    lowest = lowest_for_design(method, N, paired)
    for m in sorted(m for m in {N // 2, N - 1, lowest - 1} if 0 < m < lowest):
        masks = sample_design(N, m, scheme, 0)
        for shrink in (False, True) if record.shrinkable else (False,):
            with pytest.raises(IdentificationError) as info:
                estimate(masks, value(masks), 2.0, value(np.ones((1, N), dtype=bool))[0], method, shrink=shrink)
            message = str(info.value)
            assert f"budget {m} " in message and f"method {method!r}" in message, message
            assert f"at least {lowest} coalitions" in message, message
    assert not calls  # refused before any fit


@pytest.mark.parametrize(("scheme", "method"), SAMPLED)
def test_at_the_minimum_an_estimate_or_a_rank_error(scheme, method):
    """At the minimum budget of its own scheme a design gets past the budget
    check: either the fit identifies the values (then they are efficient, for an
    additive game exact) or the rank check refuses it."""
    value, weights = additive(N)
    m = min_budget(scheme, method, N)
    masks = sample_design(N, m, scheme, 1)
    v_full = float(value(np.ones((1, N), dtype=bool))[0])
    try:
        result = estimate(masks, value(masks), 2.0, v_full, method, n_boot=0)
    except IdentificationError as err:
        assert "too small" not in str(err)  # the rank check, not the budget check
        return
    values = result["value"].to_numpy()
    if get_method(method).efficient:
        assert values.sum() == pytest.approx(v_full - 2.0)
    # banzhaf: an additive game's Banzhaf values are its weights too. tree: no linear
    # fit, and two coalitions of 258 players cannot make its trees additive (its
    # accuracy is benchmarks/tree.py's).
    if method not in ("banzhaf", "tree"):
        np.testing.assert_allclose(values, weights, atol=1e-6)


def test_validate_and_estimate_agree_on_the_minimum():
    """The workflow's check (coalitions.validate) and estimate refuse the same budgets
    on each scheme's own designs, at a small n with every parity of pairs."""
    for n, (scheme, method) in itertools.product((5, 6, 9), SAMPLED):
        value, _ = additive(n)
        lowest = min_budget(scheme, method, n)
        validate(n, lowest, scheme, method)
        with pytest.raises(ValueError):
            validate(n, lowest - 1, scheme, method)
        if lowest - 1 < 1:
            continue
        masks = sample_design(n, lowest - 1, scheme, 0)
        # A design below its scheme's minimum may still meet the minimum of another
        # scheme of the method (a paired kernel design of even n for the stratified
        # method), so only designs below every matching scheme's minimum must fail.
        if lowest - 1 < lowest_for_design(method, n, scheme in PAIRED):
            with pytest.raises(IdentificationError, match=f"budget {lowest - 1} is too small"):
                estimate(masks, value(masks), 2.0, 2.0 + n, method, n_boot=0)


def test_a_cut_pair_below_the_minimum_is_refused():
    """n - 2 whole pairs and one row identify the n - 1 parameters of a paired
    design (the fit used to return values), but the budget is below the documented
    minimum 2(n - 1): refused, as coalitions.validate refuses it."""
    n = 12
    value, _ = additive(n)
    masks = sample_design(n, 2 * (n - 1) - 1, "leverage", 0)
    with pytest.raises(IdentificationError, match=r"budget 21 is too small for method 'leverage'.*at least 22"):
        estimate(masks, value(masks), 2.0, 3.0, "leverage")
    masks = sample_design(n, 2 * (n - 1), "leverage", 0)
    values = estimate(masks, value(masks), 2.0, float(value(np.ones((1, n), dtype=bool))[0]), "leverage", n_boot=0)
    np.testing.assert_allclose(values["value"], additive(n)[1], atol=1e-9)


# ---------------------------------------------------------------- games ----


def exact_shapley(game):
    masks = sample_design(game.n, 2**game.n - 2, "exact", 0)
    return estimate(masks, game.value(masks), game.v_empty, game.v_full, "exact")["value"].to_numpy()


@pytest.mark.parametrize("make", [games.interactions_game, games.harmful_game, games.airport_game, games.voting_game])
def test_closed_forms_match_enumeration(make):
    game = make(9, 3)
    np.testing.assert_allclose(game.shapley, exact_shapley(game), atol=1e-10)


def test_voting_values_add_up_at_large_n():
    """n C(n - 1, s) overflowed 64-bit integers from n = 64 on (the values summed to -57.7)."""
    for n in (64, 128, 258):
        game = games.voting_game(n, 0)
        assert game.shapley.sum() == pytest.approx(1.0)
        assert (game.shapley > 0).all()


def test_harmful_game_signs():
    for n in (20, 64, 258):
        shapley = games.harmful_game(n, 0).shapley
        harmful = max(1, round(0.05 * n))
        assert (shapley < 0).sum() == harmful
        assert np.sort(shapley)[harmful - 1] < -1.0 and np.sort(shapley)[harmful] > 0.0


def test_hashed_noise():
    rng = np.random.default_rng(0)
    small = rng.random((200, 50)) < 0.5
    # Up to 64 players: the original single-word hash (one splitmix64 of the salt).
    bits = np.uint64(1) << np.arange(50, dtype=np.uint64)
    code = small.astype(np.uint64) @ bits
    salt = games._splitmix64(np.full_like(code, 7))
    key = code ^ salt
    first = games._splitmix64(key)
    second = games._splitmix64(key ^ np.uint64(0x5851F42D4C957F2D))
    u1 = ((first >> np.uint64(11)).astype(float) + 1.0) / 2.0**53
    u2 = (second >> np.uint64(11)).astype(float) / 2.0**53
    expected = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    np.testing.assert_array_equal(games.hashed_normal(small, 7), expected)
    # Beyond 64: a fixed function of the whole coalition, players past 64 included.
    large = rng.random((2000, 258)) < 0.5
    noise = games.hashed_normal(large, 7)
    np.testing.assert_array_equal(noise, games.hashed_normal(large.copy(), 7))
    flipped = large.copy()
    flipped[:, 200] ^= True
    assert not np.isclose(noise, games.hashed_normal(flipped, 7)).any()
    assert abs(noise.mean()) < 0.1 and abs(noise.std() - 1.0) < 0.1
    assert math.isfinite(noise.sum())
