import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from diffcredit.coalitions import COMPATIBLE_SCHEMES, sample_design
from diffcredit.estimators import (
    DEFAULT_SCHEME,
    METHODS,
    SHAPLEY_METHODS,
    SHRINKABLE_METHODS,
    BootstrapWarning,
    IdentificationError,
    estimate,
    is_paired,
)

LEAST_SQUARES = (
    ("kernel", "kernelshap"),
    ("kernel_paired", "kernelshap"),
    ("leverage", "leverage"),
    ("stratified", "leverage"),
    ("stratified", "stratified"),
    ("kernel", "stratified"),
    ("kernel_paired", "stratified"),
    ("leverage", "stratified"),
)
STRATIFIED_PAIRS = tuple(p for p in LEAST_SQUARES if p[1] == "stratified")
assert set(SHRINKABLE_METHODS) == {method for _, method in LEAST_SQUARES}


# ---------------------------------------------------------------- games ----


class Game:
    """A cooperative game given by a function of a mask array."""

    def __init__(self, n, value):
        self.n = n
        self.value = value
        self.v_empty = float(value(np.zeros((1, n), dtype=bool))[0])
        self.v_full = float(value(np.ones((1, n), dtype=bool))[0])

    def estimate(self, masks, method, **kwargs):
        return estimate(masks, self.value(masks), self.v_empty, self.v_full, method, **kwargs)


def additive_game(n, seed=0):
    weights = np.random.default_rng(seed).normal(size=n)
    return Game(n, lambda m: 3.0 + m @ weights), weights


def interaction_game(n, seed=0, triples=0):
    """Additive + all pairwise terms (+ optional three-way terms), with Shapley values."""
    rng = np.random.default_rng(seed)
    additive = rng.normal(size=n)
    pairwise = np.triu(rng.normal(size=(n, n)), 1)
    pairwise += pairwise.T
    members = np.array([rng.choice(n, 3, replace=False) for _ in range(triples)], dtype=int)
    members = members.reshape(-1, 3)
    weights = rng.normal(size=triples)

    def value(m):
        z = m.astype(float)
        quadratic = z @ additive + 0.5 * np.einsum("ri,ij,rj->r", z, pairwise, z)
        return quadratic + z[:, members].prod(axis=2) @ weights

    shapley = additive + pairwise.sum(axis=1) / 2  # w_ij / 2 to each of i and j
    for triple, w in zip(members, weights):
        shapley[triple] += w / 3
    return Game(n, value), shapley


def airport_game(n, seed=0):
    cost = np.random.default_rng(seed).uniform(size=n)
    return Game(n, lambda m: np.where(m, cost, 0.0).max(axis=1))


def voting_game(n, seed=0):
    weight = np.random.default_rng(seed).integers(1, 8, n)
    quota = weight.sum() // 2 + 1
    return Game(n, lambda m: (m @ weight >= quota).astype(float))


def shapley_by_permutations(game):
    """Average marginal contribution over all orderings (independent of the estimators)."""
    n = game.n
    total = np.zeros(n)
    for order in itertools.permutations(range(n)):
        masks = np.zeros((n + 1, n), dtype=bool)
        for k, player in enumerate(order):
            masks[k + 1 :, player] = True
        total[list(order)] += np.diff(game.value(masks))
    return total / math.factorial(n)


def banzhaf_by_enumeration(game):
    n = game.n
    value = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for r in range(n):
            for subset in itertools.combinations(others, r):
                mask = np.zeros((2, n), dtype=bool)
                mask[:, list(subset)] = True
                mask[1, i] = True
                value[i] += np.diff(game.value(mask))[0]
    return value / 2 ** (n - 1)


def design(n, budget, scheme, seed=0):
    return sample_design(n, budget, scheme, seed)


# ------------------------------------------------------- exact recovery ----


@pytest.mark.parametrize("scheme, method", LEAST_SQUARES)
@pytest.mark.parametrize("seed", range(3))
def test_least_squares_recovers_additive_games_exactly(scheme, method, seed):
    n = 7
    game, weights = additive_game(n, seed)
    masks = design(n, 6 * n, scheme, seed)
    result = game.estimate(masks, method, n_boot=0)
    np.testing.assert_allclose(result["value"], weights, atol=1e-10)


def test_banzhaf_and_loo_recover_additive_games():
    n = 6
    game, weights = additive_game(n)
    banzhaf = game.estimate(design(n, 62, "exact"), "banzhaf", n_boot=0)
    np.testing.assert_allclose(banzhaf["value"], weights)
    np.testing.assert_allclose(game.estimate(design(n, n, "loo"), "loo")["value"], weights)


@pytest.mark.parametrize("scheme, method", [
    ("kernel_paired", "kernelshap"),
    ("leverage", "leverage"),
    ("stratified", "leverage"),
    ("stratified", "stratified"),
    ("kernel_paired", "stratified"),
    ("leverage", "stratified"),
])
def test_paired_designs_are_exact_for_pairwise_interactions(scheme, method):
    """v(S) - v(N \\ S) is additive when interactions have order <= 2."""
    n = 8
    game, shapley = interaction_game(n)
    result = game.estimate(design(n, 4 * n, scheme, seed=1), method, n_boot=0)
    np.testing.assert_allclose(result["value"], shapley, atol=1e-10)


def test_unpaired_design_is_not_exact_for_pairwise_interactions():
    n = 8
    game, shapley = interaction_game(n)
    result = game.estimate(design(n, 4 * n, "kernel", seed=1), "kernelshap", n_boot=0)
    assert np.abs(result["value"] - shapley).max() > 1e-3


@pytest.mark.parametrize(
    "make_game", [airport_game, voting_game, lambda n: interaction_game(n, triples=4)[0]]
)
def test_exact_matches_permutation_average(make_game):
    game = make_game(6)
    result = game.estimate(design(6, 62, "exact"), "exact")
    np.testing.assert_allclose(result["value"], shapley_by_permutations(game), atol=1e-12)
    np.testing.assert_array_equal(result["ci_low"], result["value"])
    np.testing.assert_array_equal(result["ci_high"], result["value"])


def test_exact_matches_closed_form_with_interactions():
    game, shapley = interaction_game(9, triples=5)
    result = game.estimate(design(9, 510, "exact"), "exact")
    np.testing.assert_allclose(result["value"], shapley, atol=1e-12)


def test_exact_accepts_any_row_order():
    game = airport_game(5)
    masks = design(5, 30, "exact")
    shuffled = masks[np.random.default_rng(0).permutation(30)]
    np.testing.assert_allclose(
        game.estimate(shuffled, "exact")["value"], game.estimate(masks, "exact")["value"]
    )


@pytest.mark.parametrize("make_game", [airport_game, voting_game])
def test_banzhaf_on_full_enumeration_is_exact(make_game):
    """Needs the anchors weighted by their probability 2^-(n-1)."""
    game = make_game(6)
    result = game.estimate(design(6, 62, "exact"), "banzhaf", n_boot=0)
    np.testing.assert_allclose(result["value"], banzhaf_by_enumeration(game), atol=1e-12)


@pytest.mark.parametrize("make_game", [airport_game, voting_game])
def test_leverage_on_every_coalition_is_exact(make_game):
    """Sampling all coalitions, the leverage weights reduce to the Shapley kernel."""
    game = make_game(7)
    masks = design(7, 2**7 - 2, "leverage", seed=4)
    result = game.estimate(masks, "leverage", n_boot=0)
    np.testing.assert_allclose(result["value"], shapley_by_permutations(game), atol=1e-12)


@pytest.mark.parametrize("scheme", ["stratified", "leverage"])
@pytest.mark.parametrize(
    "make_game", [airport_game, voting_game, lambda n: interaction_game(n, triples=4)[0]]
)
def test_stratified_on_every_coalition_is_exact(scheme, make_game):
    """Every size fully enumerated: exact kernel weights, exact size means."""
    game = make_game(7)
    masks = design(7, 2**7 - 2, scheme, seed=2)
    result = game.estimate(masks, "stratified", n_boot=0)
    np.testing.assert_allclose(result["value"], shapley_by_permutations(game), atol=1e-12)


@pytest.mark.parametrize("scheme, method", STRATIFIED_PAIRS)
def test_stratified_is_exact_for_additive_plus_size_games(scheme, method):
    """v(S) = sum of weights + g(|S|): the size term gives everybody
    (g(n) - g(0)) / n, and the within-size fit removes it whatever the design."""
    n = 8
    weights = np.random.default_rng(3).normal(size=n)
    g = lambda size: 4.0 * np.sqrt(size) - 0.3 * size**2  # noqa: E731
    game = Game(n, lambda m: m @ weights + g(m.sum(axis=1)))
    shapley = weights + (g(n) - g(0)) / n
    for seed in range(3):
        masks = design(n, 6 * n, scheme, seed)
        result = game.estimate(masks, method, n_boot=0)
        np.testing.assert_allclose(result["value"], shapley, atol=1e-10)
    # The leverage estimator, fitted across sizes, is not.
    masks = design(n, 6 * n, "leverage", seed=0)
    assert np.abs(game.estimate(masks, "leverage", n_boot=0)["value"] - shapley).max() > 1e-2


def test_stratified_design_below_the_singleton_stratum():
    """A prefix shorter than the singleton stratum (2n rows) cannot centre the
    singletons and fits nothing else: the stratified method refuses it with a
    clear error, while the leverage method, which fits across sizes, already
    works from n - 1 pairs."""
    n = 6
    game, weights = additive_game(n)
    masks = design(n, 2 * (n - 1), "stratified", seed=1)
    with pytest.raises(IdentificationError, match="once each coalition size is centred"):
        game.estimate(masks, "stratified", n_boot=0)
    result = game.estimate(masks, "leverage", n_boot=0)
    np.testing.assert_allclose(result["value"], weights, atol=1e-10)
    full = design(n, 2 * n, "stratified", seed=1)
    np.testing.assert_allclose(game.estimate(full, "stratified", n_boot=0)["value"], weights, atol=1e-10)


def test_stratified_converges():
    game, shapley = interaction_game(8, seed=1, triples=6)
    errors = []
    for budget in (24, 60, 160, 254):
        masks = design(8, budget, "stratified", seed=0)
        errors.append(np.linalg.norm(game.estimate(masks, "stratified", n_boot=0)["value"] - shapley))
    assert errors[0] > errors[1] > errors[2] > 1e-3 and errors[3] < 1e-10


def test_loo_values():
    game = voting_game(6)
    masks = design(6, 6, "loo")
    expected = game.v_full - game.value(masks)
    np.testing.assert_allclose(game.estimate(masks, "loo")["value"], expected)
    reordered = masks[::-1]
    np.testing.assert_allclose(game.estimate(reordered, "loo")["value"], expected)


@pytest.mark.parametrize("method", SHAPLEY_METHODS)
def test_shapley_methods_are_efficient(method):
    n = 6
    game = voting_game(n, seed=2)
    scheme = DEFAULT_SCHEME[method]
    budget = 2**n - 2 if method == "exact" else 30
    for seed in range(3):
        result = game.estimate(design(n, budget, scheme, seed), method, n_boot=0)
        assert result["value"].sum() == pytest.approx(game.v_full - game.v_empty, abs=1e-10)


def test_kernel_scheme_works_with_kernelshap():
    """The reference pairing: unpaired kernel sampling with kernelshap."""
    assert "kernel" in COMPATIBLE_SCHEMES["kernelshap"]
    game, shapley = interaction_game(6)
    estimates = [game.estimate(design(6, m, "kernel"), "kernelshap", n_boot=0) for m in (20, 2000)]
    errors = [np.linalg.norm(e["value"] - shapley) for e in estimates]
    assert errors[1] < errors[0] / 3


# --------------------------------------------------------- unbiasedness ----


def mean_z_scores(game, scheme, method, budget, truth, n_seeds):
    """(mean over seeds - truth) / standard error of that mean, per player."""
    estimates = np.array([
        game.estimate(design(game.n, budget, scheme, seed), method, n_boot=0)["value"]
        for seed in range(n_seeds)
    ])
    standard_error = estimates.std(axis=0, ddof=1) / np.sqrt(n_seeds)
    return (estimates.mean(axis=0) - truth) / standard_error


def test_banzhaf_is_unbiased():
    """MSR with the anchor weighting is exactly unbiased: |z| < 4.5 for all 6
    players fails by chance with probability < 6 * 7e-6."""
    game = airport_game(6)
    z = mean_z_scores(game, "banzhaf", "banzhaf", 20, banzhaf_by_enumeration(game), n_seeds=300)
    assert np.abs(z).max() < 4.5


@pytest.mark.parametrize("scheme, method", LEAST_SQUARES)
@pytest.mark.parametrize("make_game", [airport_game, voting_game])
def test_least_squares_is_nearly_unbiased(scheme, method, make_game):
    """The least-squares estimators are ratio estimators: consistent, with an
    O(1/m) bias. For these games at m = 5n that bias is below 0.2 standard
    deviations of a single estimate (measured over 3000 seeds), i.e. below 1.6
    standard errors of a mean over 64 seeds; the 4.5 threshold leaves 2.9 for
    Monte Carlo error. Two exceptions are tested at m = 10n: on the stratified
    design, whose enumerated singletons leave less sampling error, the bias is
    a larger share of it (0.5 sd on the airport game at 5n, 0.23 at 10n), and
    i.i.d. pairs now and then fail to identify the stratified fit at 5n."""
    game = make_game(8)
    truth = shapley_by_permutations(game)
    budget = 80 if scheme == "stratified" or (scheme, method) == ("kernel_paired", "stratified") else 40
    z = mean_z_scores(game, scheme, method, budget, truth, n_seeds=64)
    assert np.abs(z).max() < 4.5


# ---------------------------------------------------------- intervals ----


@pytest.mark.parametrize("scheme, method, budget", [
    ("kernel", "kernelshap", 60),
    ("kernel_paired", "kernelshap", 60),
    ("leverage", "leverage", 40),
    ("stratified", "stratified", 40),
    ("kernel", "stratified", 60),
    ("banzhaf", "banzhaf", 60),
])
def test_interval_coverage_on_noisy_game(scheme, method, budget):
    """Fresh Gaussian noise (sd = RMS of the values) on every evaluation; 100
    seeds x 6 players. The target coverage is 95%."""
    n = 6
    game, shapley = interaction_game(n, triples=2)
    truth = banzhaf_by_enumeration(game) if method == "banzhaf" else shapley
    sigma = np.sqrt(np.mean(truth**2))
    covered = []
    for seed in range(100):
        masks = design(n, budget, scheme, seed)
        noisy = game.value(masks) + sigma * np.random.default_rng([99, seed]).normal(size=budget)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BootstrapWarning)
            result = estimate(masks, noisy, game.v_empty, game.v_full, method, seed=seed, n_boot=200)
        covered.append((result["ci_low"] <= truth) & (truth <= result["ci_high"]))
    coverage = np.mean(covered)
    assert 0.85 <= coverage <= 0.99


def test_intervals_are_seeded():
    game = airport_game(6)
    masks = design(6, 40, "kernel")
    a = game.estimate(masks, "kernelshap", seed=1)
    b = game.estimate(masks, "kernelshap", seed=1)
    c = game.estimate(masks, "kernelshap", seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["ci_low"], c["ci_low"])
    np.testing.assert_array_equal(a["value"], c["value"])
    assert (a["ci_low"] < a["ci_high"]).all()


def test_no_bootstrap_gives_nan_intervals():
    game = airport_game(6)
    result = game.estimate(design(6, 40, "kernel"), "kernelshap", n_boot=0)
    assert result["ci_low"].isna().all() and result["ci_high"].isna().all()
    assert result["value"].notna().all()


@pytest.mark.parametrize("scheme, method", (("kernel_paired", "kernelshap"), ("stratified", "stratified")))
def test_paired_designs_bootstrap_whole_pairs(scheme, method):
    """A pairwise game on a paired design is exact in every bootstrap replicate
    that keeps pairs whole (resampled pairs, or the wild bootstrap's sign flips
    of both residuals of a pair), so the interval has zero width; resampling or
    flipping single rows breaks pairs."""
    n = 6
    game, shapley = interaction_game(n)
    masks = design(n, 40, scheme, seed=3)
    auto = game.estimate(masks, method)
    np.testing.assert_allclose(auto["ci_low"], shapley, atol=1e-9)
    np.testing.assert_allclose(auto["ci_high"], shapley, atol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BootstrapWarning)
        rows = game.estimate(masks, method, paired=False)
    assert (rows["ci_high"] - rows["ci_low"]).min() > 1e-3


def test_stratified_at_the_smallest_budget_warns_that_its_intervals_miss_the_model_error():
    """At budget 2n the stratified design is every singleton and its complement:
    nothing is sampled, so the intervals have zero width, while the airport game's
    higher-order interactions put the values well off (checked against an
    independent computation). The user is told that sizes 2..n-2 are extrapolated."""
    n = 7
    game = airport_game(n)
    truth = shapley_by_permutations(game)
    masks = design(n, 2 * n, "stratified", seed=0)
    with pytest.warns(BootstrapWarning, match=r"4 of the 6 coalition sizes teach method 'stratified' nothing "
                                              r"\(sizes 2, 3, 4, 5: 4 with none\)"):
        result = game.estimate(masks, "stratified", seed=4, n_boot=300)
        again = game.estimate(masks, "stratified", seed=4, n_boot=300)
    pd.testing.assert_frame_equal(result, again)
    assert np.abs(result["ci_high"] - result["ci_low"]).max() < 1e-9
    assert np.linalg.norm(result["value"] - truth) > 0.2 * np.linalg.norm(truth)


@pytest.mark.parametrize("method", ["kernelshap", "leverage"])
def test_shapley_fits_warn_about_sizes_the_design_lacks(method):
    """The regression fits weigh every size by its kernel mass; a design without
    some sizes (here, kernel rows of sizes 1..3 only) is warned about, and one with
    every size is not."""
    n = 8
    game = airport_game(n)
    masks = design(n, 40 * n, "kernel", seed=1)
    small = masks[masks.sum(axis=1) <= 3]
    with pytest.warns(BootstrapWarning, match=r"4 of the 7 coalition sizes .* \(sizes 4, 5, 6, 7: 4 with none\)"):
        game.estimate(small, method, n_boot=20, paired=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BootstrapWarning)
        game.estimate(masks, method, n_boot=20, paired=False)


def test_stratified_warns_about_rows_alone_in_their_size():
    """Just past the singleton stratum most sampled sizes hold a single row,
    which the within-size fit cannot use; the intervals then say nothing about
    those sizes, and the user is told so."""
    n = 10
    game = airport_game(n)
    masks = design(n, 3 * n, "stratified", seed=0)
    counts = np.bincount(masks.sum(axis=1), minlength=n)
    alone = np.flatnonzero(counts == 1)
    assert alone.size and 1 not in alone
    with pytest.warns(BootstrapWarning, match=f"{alone.size} with a single coalition"):
        game.estimate(masks, "stratified", n_boot=20)
    masks = design(n, 5 * n, "stratified", seed=0)
    assert np.bincount(masks.sum(axis=1)).max() > 1 and 1 not in np.bincount(masks.sum(axis=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", BootstrapWarning)
        game.estimate(masks, "stratified", n_boot=20)


def test_is_paired():
    masks = design(6, 21, "kernel_paired")
    assert is_paired(masks)  # the cut last pair is allowed
    assert is_paired(masks[:20])
    assert not is_paired(design(6, 20, "kernel"))
    assert not is_paired(masks[1:])
    assert not is_paired(masks[:1])


def test_paired_true_requires_pairs():
    game = airport_game(6)
    with pytest.raises(ValueError, match="not the complement"):
        game.estimate(design(6, 20, "kernel"), "kernelshap", paired=True)


@pytest.mark.filterwarnings("ignore:.*coalition sizes teach method")  # a minimal design lacks sizes too
def test_bootstrap_warns_when_resamples_do_not_identify():
    n = 6
    game = airport_game(n)
    for seed in range(20):  # a minimal design that identifies the values
        masks = design(n, n - 1, "kernel", seed=seed)
        try:
            game.estimate(masks, "kernelshap", n_boot=0)
            break
        except IdentificationError:
            continue
    else:
        pytest.fail("no minimal design identifies the values")
    with pytest.warns(BootstrapWarning, match="could not identify"):
        game.estimate(masks, "kernelshap", n_boot=50)


# ------------------------------------------------------------- output ----


@pytest.mark.filterwarnings("ignore::diffcredit.estimators.BootstrapWarning")
@pytest.mark.parametrize("method", METHODS)
def test_output_format(method):
    n = 5
    game = voting_game(n)
    scheme = DEFAULT_SCHEME[method]
    budget = n if method == "loo" else 30
    result = game.estimate(design(n, budget, scheme), method, n_boot=10)
    assert list(result.columns) == ["value", "ci_low", "ci_high"]
    assert result.index.name == "player"
    assert result.index.tolist() == list(range(n))
    assert result["value"].dtype == float


def test_accepts_integer_masks_and_list_values():
    game, weights = additive_game(5)
    masks = design(5, 20, "kernel")
    result = estimate(masks.astype(int), game.value(masks).tolist(), game.v_empty, game.v_full,
                      "kernelshap", n_boot=0)
    np.testing.assert_allclose(result["value"], weights)


# ------------------------------------------------------------ shrinkage ----


def noisy_evaluations(game, masks, sd, seed):
    return game.value(masks) + sd * np.random.default_rng([7, seed]).normal(size=len(masks))


@pytest.mark.parametrize("scheme, method", LEAST_SQUARES)
def test_shrinkage_keeps_efficiency_and_only_shrinks(scheme, method):
    """The shrunk values sum to v(full) - v(empty), and their deviations from
    the equal split are never longer than the unshrunk ones."""
    n = 8
    game, shapley = interaction_game(n, seed=2, triples=3)
    sd = np.sqrt(np.mean(shapley**2))
    total = game.v_full - game.v_empty
    shrunk_at_all = 0
    for seed in range(5):
        masks = design(n, 6 * n, scheme, seed)
        values = noisy_evaluations(game, masks, sd, seed)
        plain = estimate(masks, values, game.v_empty, game.v_full, method, n_boot=0)["value"]
        shrunk = estimate(masks, values, game.v_empty, game.v_full, method, n_boot=0, shrink=True)["value"]
        assert shrunk.sum() == pytest.approx(total, abs=1e-9)
        plain_spread = np.linalg.norm(plain - total / n)
        shrunk_spread = np.linalg.norm(shrunk - total / n)
        assert shrunk_spread <= plain_spread + 1e-12
        shrunk_at_all += shrunk_spread < 0.99 * plain_spread
    assert shrunk_at_all >= 3


@pytest.mark.parametrize("scheme, method", LEAST_SQUARES)
def test_shrinkage_leaves_exact_fits_alone(scheme, method):
    """An additive game is fitted without residuals: no sampling error, no shrinkage."""
    n = 7
    game, weights = additive_game(n, seed=1)
    masks = design(n, 5 * n, scheme, seed=3)
    result = game.estimate(masks, method, n_boot=0, shrink=True)
    np.testing.assert_allclose(result["value"], weights, atol=1e-9)


@pytest.mark.parametrize("scheme, method", (("kernel", "kernelshap"), ("stratified", "stratified")))
def test_shrinkage_gives_the_equal_split_when_nothing_tells_players_apart(scheme, method):
    """v(S) = 2|S| + noise: every player's value is 2. Noise alone gives the
    unshrunk estimate a spread; shrinkage removes most of it, and the whole of
    it on the designs where the spread is within what noise explains."""
    n = 10
    game = Game(n, lambda m: 2.0 * m.sum(axis=1))
    plain_errors, shrunk_errors, equal_splits = [], [], 0
    for seed in range(20):
        masks = design(n, 5 * n, scheme, seed)
        values = noisy_evaluations(game, masks, 1.0, seed)
        plain = estimate(masks, values, 0.0, 2.0 * n, method, n_boot=0)["value"].to_numpy()
        shrunk = estimate(masks, values, 0.0, 2.0 * n, method, n_boot=0, shrink=True)["value"].to_numpy()
        plain_errors.append(np.linalg.norm(plain - 2.0))
        shrunk_errors.append(np.linalg.norm(shrunk - 2.0))
        equal_splits += bool(np.allclose(shrunk, 2.0, atol=1e-12))
    assert np.mean(shrunk_errors) < 0.5 * np.mean(plain_errors)
    assert equal_splits >= 10


def test_shrinkage_lowers_the_error_on_a_noisy_game_and_fades_with_budget():
    n = 10
    game, shapley = interaction_game(n, seed=4, triples=4)
    sd = 2 * np.sqrt(np.mean(shapley**2))
    errors = {}
    for budget in (3 * n, 60 * n):
        for shrink in (False, True):
            total = []
            for seed in range(20):
                masks = design(n, budget, "kernel", seed)
                values = noisy_evaluations(game, masks, sd, seed)
                result = estimate(masks, values, game.v_empty, game.v_full, "kernelshap",
                                  n_boot=0, shrink=shrink)
                total.append(np.linalg.norm(result["value"] - shapley))
            errors[budget, shrink] = np.mean(total)
    assert errors[3 * n, True] < 0.85 * errors[3 * n, False]
    gain_small = errors[3 * n, False] - errors[3 * n, True]
    gain_large = errors[60 * n, False] - errors[60 * n, True]
    assert abs(gain_large) < 0.25 * gain_small


def test_shrunk_intervals_contain_the_shrunk_value_and_the_plain_interval():
    n = 8
    game, shapley = interaction_game(n, seed=5, triples=3)
    masks = design(n, 4 * n, "stratified", seed=1)
    values = noisy_evaluations(game, masks, 2.0, seed=1)
    plain = estimate(masks, values, game.v_empty, game.v_full, "stratified", seed=3)
    shrunk = estimate(masks, values, game.v_empty, game.v_full, "stratified", seed=3, shrink=True)
    assert not np.allclose(plain["value"], shrunk["value"])
    assert (shrunk["ci_low"] <= shrunk["value"]).all() and (shrunk["value"] <= shrunk["ci_high"]).all()
    assert (shrunk["ci_low"] <= plain["ci_low"]).all() and (shrunk["ci_high"] >= plain["ci_high"]).all()
    # No bootstrap, no intervals: shrinkage does not invent them.
    bare = estimate(masks, values, game.v_empty, game.v_full, "stratified", n_boot=0, shrink=True)
    assert bare["ci_low"].isna().all()
    np.testing.assert_allclose(bare["value"], shrunk["value"])


def test_shrinkage_rejects_other_methods_and_non_booleans():
    game = airport_game(5)
    for method, scheme in (("banzhaf", "banzhaf"), ("loo", "loo"), ("exact", "exact")):
        with pytest.raises(ValueError, match=f"not for '{method}'"):
            game.estimate(design(5, 30, scheme), method, shrink=True)
    with pytest.raises(ValueError, match="shrink must be True or False"):
        game.estimate(design(5, 20, "kernel"), "kernelshap", shrink="yes")


# ------------------------------------------------------------- errors ----


def test_rejects_bad_inputs():
    n = 5
    masks = design(n, 20, "kernel")
    values = masks.sum(axis=1).astype(float)
    with_nan, with_inf = values.copy(), values.copy()
    with_nan[3], with_inf[4] = np.nan, np.inf
    with_full_row = np.vstack([masks, np.ones((1, n), bool)])
    method = "kernelshap"
    cases = [
        ((masks, values[:-1], 0, 5, method), {}, "masks has 20 rows but values has shape"),
        ((masks[:0], values[:0], 0, 5, method), {}, "design is empty"),
        ((masks, with_nan, 0, 5, method), {}, r"rows \[3\] are NaN"),
        ((masks, with_inf, 0, 5, method), {}, r"rows \[4\]"),
        ((masks, values, np.nan, 5, method), {}, "v_empty must be finite"),
        ((masks, values, 0, np.inf, method), {}, "v_full must be finite"),
        ((masks[0], values[:1], 0, 5, method), {}, "masks must be 2-D"),
        ((masks * 2, values, 0, 5, method), {}, "boolean or contain only 0 and 1"),
        ((masks[:, :1], values, 0, 5, method), {}, "at least 2 players"),
        ((masks, values, 0, 5, method), {"n_players": 6}, "masks has 5 columns but n_players is 6"),
        ((masks, values, 0, 5, "shapley"), {}, "unknown method 'shapley'"),
        ((with_full_row, np.append(values, 5), 0, 5, method), {},
         r"rows \[20\] are the empty or the full coalition"),
        ((masks, values, 0, 5, method), {"n_boot": -1}, "n_boot must be a non-negative integer"),
        ((masks, values, 0, 5, method), {"seed": -2}, "seed must be a non-negative integer"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            estimate(*args, **kwargs)


def test_rejects_unidentifiable_designs():
    n = 5
    game = airport_game(n)
    same_row = np.tile(design(n, 1, "kernel"), (10, 1))
    for method in ("kernelshap", "leverage"):
        with pytest.raises(IdentificationError, match="identify only 1 of the 4"):
            game.estimate(same_row, method)
    with pytest.raises(IdentificationError, match="identify only 0 of the 4 .* centred"):
        game.estimate(same_row, "stratified")
    always_in = design(n, 30, "banzhaf")
    always_in[:, 2] = True
    always_in = always_in[always_in.sum(axis=1) < n]
    with pytest.raises(IdentificationError, match=r"players \[2\]"):
        game.estimate(always_in, "banzhaf")
    with pytest.raises(IdentificationError, match="needs all 30 coalitions"):
        game.estimate(design(n, 30, "exact")[1:], "exact")
    with pytest.raises(IdentificationError, match="leave-one-out"):
        game.estimate(design(n, n, "loo")[[0, 1, 2, 3, 3]], "loo")
    assert issubclass(IdentificationError, ValueError)


# ---------------------------------------------------------------- image noise ----


def _shapley_coefficients(n: int) -> dict:
    """{coalition (tuple of members): coefficient of v(coalition) in each player's
    exact Shapley value}, by the permutation-weight formula."""
    coef = {}
    for size in range(n + 1):
        for members in itertools.combinations(range(n), size):
            c = np.zeros(n)
            for i in range(n):
                k = size - 1 if i in members else size
                w = math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n)
                c[i] = w if i in members else -w
            coef[members] = c
    return coef


def test_image_noise_gives_exact_values_the_interval_of_their_measurement_error():
    n, sigma, reps = 4, 0.05, 4000
    rng = np.random.default_rng(0)
    coef = _shapley_coefficients(n)
    inner = [m for m in coef if 0 < len(m) < n]
    masks = np.array([[i in m for i in range(n)] for m in inner])
    values = rng.normal(size=len(inner))
    noise = (values[:, None] + sigma * rng.normal(size=(len(inner), reps)),
             0.1 + sigma * rng.normal(size=reps), 1.0 + sigma * rng.normal(size=reps))
    out = estimate(masks, values, 0.1, 1.0, "exact", noise=noise)
    plain = estimate(masks, values, 0.1, 1.0, "exact")
    np.testing.assert_allclose(out["value"], plain["value"])
    assert (plain["ci_low"] == plain["value"]).all()
    # Independent: sd_i = sigma * sqrt(sum over every coalition of its coefficient squared).
    sd = sigma * np.sqrt(sum(c ** 2 for c in coef.values()))
    half = (out["ci_high"] - out["ci_low"]).to_numpy() / 2
    np.testing.assert_allclose(half, 1.96 * sd, rtol=0.06)


@pytest.mark.parametrize("scheme, method", [("kernel", "kernelshap"), ("stratified", "stratified")])
def test_noise_free_replicates_leave_the_intervals_unchanged_and_noise_widens_them(scheme, method):
    n = 6
    masks = sample_design(n, 40, scheme, 0)
    rng = np.random.default_rng(1)
    values = masks @ rng.normal(size=n) + 0.05 * rng.normal(size=len(masks))
    base = estimate(masks, values, 0.0, 1.0, method, n_boot=300)
    same = estimate(masks, values, 0.0, 1.0, method, n_boot=300,
                    noise=(np.repeat(values[:, None], 50, 1), np.zeros(50), np.ones(50)))
    np.testing.assert_allclose(same[["ci_low", "ci_high"]], base[["ci_low", "ci_high"]])
    noisy = estimate(masks, values, 0.0, 1.0, method, n_boot=300,
                     noise=(values[:, None] + 0.3 * rng.normal(size=(len(masks), 50)),
                            0.3 * rng.normal(size=50), 1 + 0.3 * rng.normal(size=50)))
    assert ((noisy["ci_high"] - noisy["ci_low"]) > (base["ci_high"] - base["ci_low"])).all()
    # The rows' noise counts too: a bootstrap cannot see all of it.
    rows_only = estimate(masks, values, 0.0, 1.0, method, n_boot=300,
                         noise=(values[:, None] + 0.3 * rng.normal(size=(len(masks), 50)), np.zeros(50), np.ones(50)))
    assert ((rows_only["ci_high"] - rows_only["ci_low"]) > (base["ci_high"] - base["ci_low"])).all()


def test_image_noise_of_the_rows_reaches_the_stratified_designs_enumerated_strata():
    """The stratified design of 30 coalitions of 11 players is the singletons, the
    complements and 8 single rows: its fit matches every pair's difference exactly, so
    the wild bootstrap sees no measurement noise. With the rows' image replicates in the
    draws, the intervals hold the true values about 95% of the time."""
    n, sigma, reps = 11, 1.0, 100
    w = np.random.default_rng(0).normal(size=n)
    masks = sample_design(n, 30, "stratified", 0)
    truth = w.copy()
    hits = []
    for t in range(100):
        rng = np.random.default_rng(t + 1)
        values = masks @ w + sigma * rng.normal(size=len(masks))
        # Replicates scatter around the measured value as the measurement scatters around the truth.
        noise = (values[:, None] + sigma * rng.normal(size=(len(masks), reps)), np.zeros(reps),
                 np.full(reps, w.sum()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BootstrapWarning)
            d = estimate(masks, values, 0.0, w.sum(), "stratified", seed=t, noise=noise)
        hits.append(np.mean((d["ci_low"] <= truth) & (truth <= d["ci_high"])))
    assert np.mean(hits) >= 0.9


def test_noise_of_the_wrong_shape_is_refused():
    masks = sample_design(4, 8, "kernel", 0)
    with pytest.raises(ValueError, match="noise must be rows"):
        estimate(masks, np.zeros(8), 0.0, 1.0, "kernelshap", noise=(np.zeros((7, 5)), np.zeros(5), np.zeros(5)))
