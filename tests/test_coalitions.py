import numpy as np
import pytest

from diffcredit.coalitions import (
    COMPATIBLE_SCHEMES,
    EXACT_MAX_PLAYERS,
    SCHEMES,
    min_budget,
    sample_design,
    validate,
)
from diffcredit.estimators import METHODS

RANDOM_SCHEMES = ("kernel", "kernel_paired", "leverage", "stratified", "banzhaf")


def as_codes(masks):
    """Each row as an integer (bit i = player i)."""
    return masks.astype(np.int64) @ (1 << np.arange(masks.shape[1]))


def test_every_method_has_compatible_schemes():
    assert tuple(COMPATIBLE_SCHEMES) == METHODS
    for schemes in COMPATIBLE_SCHEMES.values():
        assert set(schemes) <= set(SCHEMES)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_prefix_stable(scheme):
    n = 5 if scheme == "exact" else 8
    small, large = (20, 50) if scheme != "exact" else (30, 50)
    np.testing.assert_array_equal(
        sample_design(n, large, scheme, seed=3)[:small], sample_design(n, small, scheme, seed=3)[:small]
    )


@pytest.mark.parametrize("scheme", RANDOM_SCHEMES)
def test_prefix_stable_across_chunks_and_seeded(scheme):
    n = 9
    full = sample_design(n, 301, scheme, seed=11)
    for budget in (1, 63, 64, 65, 130, 255):
        np.testing.assert_array_equal(full[:budget], sample_design(n, budget, scheme, seed=11))
    np.testing.assert_array_equal(full, sample_design(n, 301, scheme, seed=11))
    assert not np.array_equal(full, sample_design(n, 301, scheme, seed=12))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_shape_and_no_anchor_rows(scheme):
    n = 6
    budget = 2**n - 2 if scheme == "exact" else 40
    masks = sample_design(n, budget, scheme, seed=0)
    expected_rows = n if scheme == "loo" else budget
    assert masks.shape == (expected_rows, n)
    assert masks.dtype == bool
    sizes = masks.sum(axis=1)
    assert sizes.min() >= 1 and sizes.max() <= n - 1


def test_kernel_sizes_follow_the_shapley_kernel():
    n, budget = 6, 12_000
    masks = sample_design(n, budget, "kernel", seed=0)
    sizes = masks.sum(axis=1)
    s = np.arange(1, n)
    p = (1 / (s * (n - s))) / (1 / (s * (n - s))).sum()
    counts = np.bincount(sizes, minlength=n)[1:]
    sd = np.sqrt(budget * p * (1 - p))
    assert np.all(np.abs(counts - budget * p) < 5 * sd)
    # Within a size every player is equally likely to be included: s/n.
    for size in (1, 2, 3):
        rows = masks[sizes == size]
        freq = rows.mean(axis=0)
        sd = np.sqrt(size / n * (1 - size / n) / len(rows))
        assert np.all(np.abs(freq - size / n) < 5 * sd)


@pytest.mark.parametrize("scheme", ("kernel_paired", "leverage", "stratified"))
def test_paired_schemes_alternate_coalition_and_complement(scheme):
    masks = sample_design(7, 40, scheme, seed=1)
    np.testing.assert_array_equal(masks[1::2], ~masks[0::2])
    odd = sample_design(7, 41, scheme, seed=1)
    assert odd.shape == (41, 7)
    np.testing.assert_array_equal(odd[:40], masks)


def test_leverage_has_no_duplicates_and_uniform_sizes():
    n = 11  # five size classes {s, n - s}, each of equal leverage mass
    masks = sample_design(n, 400, "leverage", seed=5)
    codes = as_codes(masks)
    assert len(np.unique(codes)) == len(codes)
    # Until the n singletons run out (after 5n pairs), every prefix spreads its
    # pairs evenly over the classes: each size 1..n-1 holds the same number of
    # rows, up to one pair.
    for budget in (20, 61, 100, 110):
        counts = np.bincount(masks[:budget].sum(axis=1), minlength=n)[1:]
        assert counts.max() - counts.min() <= 1


def test_leverage_middle_size_gets_its_share():
    n = 8  # the middle class holds one size (4), the others two
    masks = sample_design(n, 50, "leverage", seed=2)
    counts = np.bincount(masks.sum(axis=1), minlength=n)[1:]
    assert counts.max() - counts.min() <= 2


def test_leverage_exhausts_small_sizes_then_continues_without_duplicates():
    n = 6
    total = 2**n - 2
    masks = sample_design(n, total, "leverage", seed=9)
    codes = np.sort(as_codes(masks))
    np.testing.assert_array_equal(codes, np.arange(1, total + 1))
    # The n singletons are used up long before the middle sizes.
    part = sample_design(n, 40, "leverage", seed=9)
    assert (part.sum(axis=1) == 1).sum() == n
    assert len(np.unique(as_codes(part))) == 40


@pytest.mark.parametrize("scheme", ("leverage", "stratified"))
def test_budget_cannot_exceed_all_coalitions(scheme):
    with pytest.raises(ValueError, match=f"scheme '{scheme}' samples without replacement"):
        sample_design(4, 15, scheme, seed=0)
    with pytest.raises(ValueError, match="budget 15 exceeds the 14 coalitions"):
        validate(4, 15, scheme, "leverage")


# ----------------------------------------------------------- stratified ----


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8])
def test_stratified_enumerates_every_coalition_once(n):
    total = 2**n - 2
    masks = sample_design(n, total, "stratified", seed=6)
    np.testing.assert_array_equal(np.sort(as_codes(masks)), np.arange(1, total + 1))


def test_stratified_starts_with_the_whole_singleton_stratum():
    n = 9
    for seed in range(3):
        masks = sample_design(n, 200, "stratified", seed)
        head = masks[: 2 * n]
        # Each pair is a singleton and its complement, every player once.
        singles = np.where(head[0::2].sum(axis=1) == 1, head[0::2].T, head[1::2].T).T
        assert (singles.sum(axis=1) == 1).all()
        assert sorted(np.argmax(singles, axis=1).tolist()) == list(range(n))
        rest = masks[2 * n :].sum(axis=1)
        assert rest.min() >= 2 and rest.max() <= n - 2
        assert len(np.unique(as_codes(masks))) == len(masks)
    # The order of the players and of the members of a pair is seeded.
    first, second = (sample_design(n, 2 * n, "stratified", seed) for seed in (0, 1))
    assert not np.array_equal(first, second)


def test_stratified_allocates_pair_classes_by_root_kernel_mass():
    """After the singletons, rows of size s (and n - s) are in proportion to
    1/sqrt(s(n-s)), to within one pair of each class, while no class runs out."""
    n = 12
    masks = sample_design(n, 2 * n + 2 * 60, "stratified", seed=2)
    sizes = masks[2 * n :].sum(axis=1)
    classes = np.minimum(sizes, n - sizes)[0::2]
    counts = np.bincount(classes, minlength=n // 2 + 1)[2:]
    k = np.arange(2, n // 2 + 1)
    share = 1 / np.sqrt(k * (n - k))
    share[-1] /= 2  # the middle class: both members of a pair have size n/2
    expected = len(classes) * share / share.sum()
    assert np.all(np.abs(counts - expected) <= 1.0 + 1e-9)


def test_stratified_balances_players_within_a_class():
    """Coalitions of a class come from blocks of random permutations: over a
    class's first few pairs, each player is in nearly the same number."""
    n = 12
    masks = sample_design(n, 2 * n + 2 * 40, "stratified", seed=4)
    rest = masks[2 * n :][0::2]
    sizes = rest.sum(axis=1)
    small = np.where(np.minimum(sizes, n - sizes)[:, None] == sizes[:, None], rest, ~rest)
    for size in (2, 3, 4):
        rows = small[small.sum(axis=1) == size]
        take = (n // size) * (len(rows) // (n // size))  # whole permutations only
        if take:
            freq = rows[:take].sum(axis=0)
            assert freq.max() - freq.min() <= 1 + (take // (n // size) > 1)


def test_banzhaf_rows_are_uniform_non_anchor_subsets():
    n, budget = 3, 30_000
    masks = sample_design(n, budget, "banzhaf", seed=4)
    counts = np.bincount(as_codes(masks), minlength=2**n)
    assert counts[0] == 0 and counts[-1] == 0
    expected = budget / (2**n - 2)
    sd = np.sqrt(budget * (1 / 6) * (5 / 6))
    assert np.all(np.abs(counts[1:-1] - expected) < 5 * sd)


def test_banzhaf_two_players():
    masks = sample_design(2, 50, "banzhaf", seed=0)
    assert set(map(tuple, masks.tolist())) == {(True, False), (False, True)}


def test_loo_design():
    n = 5
    masks = sample_design(n, n, "loo", seed=0)
    np.testing.assert_array_equal(masks, ~np.eye(n, dtype=bool))
    np.testing.assert_array_equal(sample_design(n, 3 * n, "loo", seed=7), masks)
    with pytest.raises(ValueError, match="set it to 5"):
        sample_design(n, n - 1, "loo", seed=0)


def test_exact_enumerates_all_coalitions_in_canonical_order():
    n = 5
    masks = sample_design(n, 2**n - 2, "exact", seed=0)
    assert masks.shape == (2**n - 2, n)
    np.testing.assert_array_equal(as_codes(masks), np.arange(1, 2**n - 1))
    assert len({tuple(r) for r in masks.tolist()}) == 2**n - 2


def test_exact_refuses_too_many_players():
    with pytest.raises(ValueError, match=rf"{EXACT_MAX_PLAYERS} players, got n_players=17"):
        sample_design(17, 2**17, "exact", seed=0)
    with pytest.raises(ValueError, match="n_players=17"):
        min_budget("exact", "exact", 17)


def test_exact_budget_too_small():
    with pytest.raises(ValueError, match="set it to 14"):
        sample_design(4, 10, "exact", seed=0)


@pytest.mark.parametrize(
    "args, message",
    [
        ((5, 10, "uniform", 0), "unknown scheme 'uniform'"),
        ((1, 10, "kernel", 0), "at least 2, got 1"),
        ((5, 0, "kernel", 0), "budget must be at least 1, got 0"),
        ((5, 10, "kernel", -1), "seed must be non-negative, got -1"),
        ((5, 2.5, "kernel", 0), "budget must be an integer"),
    ],
)
def test_sample_design_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        sample_design(*args)


def test_min_budget():
    n = 7
    assert min_budget("kernel", "kernelshap", n) == n - 1
    assert min_budget("kernel_paired", "kernelshap", n) == 2 * (n - 1)
    assert min_budget("leverage", "leverage", n) == 2 * (n - 1)
    assert min_budget("stratified", "leverage", n) == 2 * (n - 1)
    assert min_budget("stratified", "stratified", n) == 2 * n
    assert min_budget("kernel", "stratified", n) == n
    assert min_budget("kernel_paired", "stratified", n) == 2 * n
    assert min_budget("leverage", "stratified", n) == 2 * (n - 1 + 3)
    # Even n: pairs of the middle class cost no equation for their mean.
    assert min_budget("kernel_paired", "stratified", 8) == 2 * 7
    assert min_budget("leverage", "stratified", 8) == 2 * (7 + 3)
    assert min_budget("stratified", "stratified", 8) == 16
    assert min_budget("stratified", "stratified", 2) == 2
    assert min_budget("banzhaf", "banzhaf", n) == 2
    assert min_budget("loo", "loo", n) == n
    assert min_budget("exact", "exact", n) == 2**n - 2


@pytest.mark.parametrize(
    "args, message",
    [
        ((5, 100, "kernel", "shapley"), "unknown method 'shapley'"),
        ((5, 100, "random", "kernelshap"), "unknown scheme 'random'"),
        ((5, 100, "kernel", "exact"),
         "method 'exact' cannot be used with scheme 'kernel'; use scheme 'exact'"),
        ((5, 100, "kernel", "loo"), "use scheme 'loo'"),
        ((5, 100, "banzhaf", "kernelshap"), "use scheme 'kernel' or 'kernel_paired'"),
        ((1, 100, "kernel", "kernelshap"), "n_players must be at least 2, got 1"),
        ((10, 17, "kernel_paired", "kernelshap"), "budget 17 is too small .* at least 18"),
        ((5, 4, "loo", "loo"), "budget 4 is too small .* at least 5"),
        ((4, 20, "leverage", "leverage"), "budget 20 exceeds the 14 coalitions"),
        ((4, 20, "stratified", "stratified"), "budget 20 exceeds the 14 coalitions"),
        ((10, 19, "stratified", "stratified"), "budget 19 is too small .* at least 20"),
        ((10, 25, "leverage", "stratified"), "budget 25 is too small .* at least 26"),
        ((5, 30, "banzhaf", "stratified"),
         "use scheme 'stratified' or 'kernel' or 'kernel_paired' or 'leverage'"),
        ((5, 30, "stratified", "kernelshap"), "use scheme 'kernel' or 'kernel_paired'"),
        ((25, 10**9, "exact", "exact"), "limited to 16 players, got n_players=25"),
        ((5, "10", "kernel", "kernelshap"), "budget must be an integer"),
    ],
)
def test_validate_rejects(args, message):
    with pytest.raises(ValueError, match=message):
        validate(*args)


def test_validate_accepts_defaults():
    """Each method's default scheme passes at the method's minimum budget, and one
    coalition fewer is refused; likewise the reference pairing kernel + kernelshap.
    (That estimation starts at the minimum: test_estimator_registry.py.)"""
    from diffcredit.estimators import DEFAULT_SCHEME

    n = 8
    pairs = [*DEFAULT_SCHEME.items(), ("kernelshap", "kernel")]
    assert len(pairs) == len(METHODS) + 1
    for method, scheme in pairs:
        assert scheme in COMPATIBLE_SCHEMES[method]
        budget = min_budget(scheme, method, n)
        assert validate(n, budget, scheme, method) is None
        with pytest.raises(ValueError, match=f"budget {budget - 1} is too small for scheme '{scheme}' "
                                             f"with method '{method}' and {n} players: it needs at least {budget}"):
            validate(n, budget - 1, scheme, method)
    assert min_budget("kernel", "kernelshap", n) == 7
