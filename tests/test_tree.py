"""The tree surrogate: its closed-form Shapley values and pair interactions are the
exact ones of the fitted booster (shapiq's enumeration of LightGBM's own
predictions), the anchored values are efficient, and on games the trees can
represent it recovers the known values and interactions."""

import warnings

import numpy as np
import pytest
import shapiq
from scipy.stats import spearmanr

from diffcredit.coalitions import sample_design
from diffcredit.estimators import BootstrapWarning, IdentificationError, estimate
from diffcredit.estimators import tree
from diffcredit.estimators.interactions import interactions


def all_masks(n):
    codes = np.arange(2**n)
    return ((codes[:, None] >> np.arange(n)) & 1).astype(bool)


def exact(table_fn, n):
    """shapiq's exact Shapley values and pairwise Shapley interactions of a game."""
    computer = shapiq.ExactComputer(n_players=n, game=lambda c: table_fn(np.asarray(c, bool)))
    sv = computer(index="SV", order=1)
    sii = computer(index="SII", order=2)
    phi = np.array([sv[(i,)] for i in range(n)])
    pairs = np.zeros((n, n))
    for key, value in sii.dict_values.items():
        if len(key) == 2:
            pairs[key] = pairs[key[::-1]] = value
    return phi, pairs


def rough_game(n, seed):
    """Random values on random coalitions: the trees fit something irregular,
    with leaves needing players both in and out."""
    rng = np.random.default_rng(seed)
    masks = sample_design(n, 40, "kernel", seed)
    return masks, rng.normal(size=len(masks)), rng.normal(), rng.normal()


@pytest.mark.parametrize("seed", [0, 1])
def test_closed_forms_are_the_boosters_exact_values(seed):
    n = 6
    masks, values, v_empty, v_full = rough_game(n, seed)
    booster = tree.fit(masks, values, v_empty, v_full)
    grid = all_masks(n)
    # The leaves' rules reproduce LightGBM's own predictions at every coalition.
    leaves = tree.Leaves(booster, n)
    np.testing.assert_allclose(leaves.predict(grid), booster.predict(grid.astype(float)), atol=1e-9)
    phi, pairs = exact(lambda c: booster.predict(c.astype(float)), n)
    found, g_empty, g_full = leaves.shapley()
    np.testing.assert_allclose(found, phi, atol=1e-8)
    np.testing.assert_allclose(leaves.interactions(), pairs, atol=1e-8)
    assert g_empty == pytest.approx(booster.predict(np.zeros((1, n)))[0])
    assert g_full == pytest.approx(booster.predict(np.ones((1, n)))[0])
    assert np.abs(pairs).max() > 1e-3  # the check had interactions to get right


def test_anchored_values_are_efficient_and_shift_equally():
    n = 6
    masks, values, v_empty, v_full = rough_game(n, 2)
    found = tree.anchored_values(masks, values, v_empty, v_full)
    assert found.sum() == pytest.approx(v_full - v_empty, abs=1e-9)
    phi, g_empty, g_full = tree.Leaves(tree.fit(masks, values, v_empty, v_full), n).shapley()
    np.testing.assert_allclose(found - phi, ((v_full - v_empty) - (g_full - g_empty)) / n, atol=1e-12)


def pair_game(n, seed):
    rng = np.random.default_rng(seed)
    single, pair = rng.normal(size=n), np.triu(rng.normal(size=(n, n)), 1)
    return lambda m: m.astype(float) @ single + np.einsum("ci,ij,cj->c", m.astype(float), pair, m.astype(float))


def test_recovers_a_game_of_pairs_from_every_coalition():
    """Every coalition of a game of singles and pairs: the trees fit it closely, and
    their values and interactions are the game's (shapiq's exact ones) to within
    the fit's error."""
    n = 6
    v = pair_game(n, 0)
    grid = all_masks(n)[1:-1]
    empty, full = np.zeros((1, n), bool), np.ones((1, n), bool)
    booster = tree.fit(grid, v(grid), v(empty)[0], v(full)[0])
    phi, pairs = exact(v, n)
    found = tree.anchored_values(grid, v(grid), v(empty)[0], v(full)[0])
    scale = np.abs(phi).max()
    np.testing.assert_allclose(found, phi, atol=0.05 * scale)
    np.testing.assert_allclose(tree.Leaves(booster, n).interactions(), pairs, atol=0.1 * np.abs(pairs).max())


def test_a_duplicate_is_the_most_redundant_pair_of_the_trees():
    n = 6
    size = np.array([1.0, 1.0, 1.0, 2.0, 0.5, 1.5])

    def v(m):
        held = m.astype(float).copy()
        held[:, 1] *= ~m[:, 0]  # the copy adds nothing beside its original
        return np.sqrt(held @ size)

    masks = sample_design(n, 60, "kernel", 0)
    booster = tree.fit(masks, v(masks), 0.0, v(np.ones((1, n), bool))[0])
    pairs = tree.Leaves(booster, n).interactions()
    worst = np.unravel_index(np.argmin(pairs), pairs.shape)
    assert set(worst) == {0, 1} and pairs[0, 1] < 0
    # What an estimate's interactions.csv holds for method tree: the same pair first,
    # its interval below 0.
    table = interactions(masks, v(masks), 0.0, v(np.ones((1, n), bool))[0], [f"c{i}" for i in range(n)], "tree",
                         n_boot=20)
    first = table.iloc[0]
    assert {first["i"], first["j"]} == {"c0", "c1"} and first["index"] == "tree"
    assert first["value"] == pytest.approx(pairs[0, 1]) and first["ci_high"] < 0


def test_additive_game_from_a_sampled_design():
    """An additive game on a kernel design of 60 coalitions of 10 players. Depth-5
    trees on 62 points approximate a linear function coarsely (kernelshap is exact
    here): values within 20% of the truth (11% measured), in the true order but
    for neighbours, efficient, with intervals around them."""
    n = 10
    weights = np.linspace(-0.5, 2.0, n)
    masks = sample_design(n, 60, "kernel", 0)
    table = estimate(masks, masks @ weights, 0.0, weights.sum(), "tree", n_boot=20)
    assert np.linalg.norm(table["value"] - weights) < 0.2 * np.linalg.norm(weights)
    assert spearmanr(table["value"], weights).statistic > 0.95
    assert table["value"].sum() == pytest.approx(weights.sum())
    assert ((table["ci_low"] <= table["value"]) & (table["value"] <= table["ci_high"])).all()
    assert (table["ci_high"] > table["ci_low"]).all()


def test_a_player_the_design_never_varies_is_refused():
    masks = np.array([[1, 0, 1], [1, 1, 0]], bool)
    with pytest.raises(IdentificationError, match=r"players \[0\] are in every or in no coalition"):
        tree.anchored_values(masks, [0.5, 0.4], 0.0, 1.0)


def test_stratified_tree_keeps_what_the_regression_gets_exactly():
    """A game additive plus a function of size: the stratified fit is exact, its
    residuals are zero, and the trees add nothing."""
    n = 8
    weights = np.linspace(-1.0, 2.0, n)
    masks = sample_design(n, 40, "stratified", 0)

    def v(m):
        return m @ weights + np.sqrt(m.sum(axis=1))

    found = tree.residual_values(masks, v(masks), 0.0, v(np.ones((1, n)))[0])
    truth = weights + np.sqrt(n) / n
    np.testing.assert_allclose(found, truth, atol=1e-9)


def test_stratified_tree_learns_a_three_way_interaction():
    """Additive plus one three-way term (players 0, 1, 2 together add 4): the
    stratified regression is not exact for it, trees on its residuals find part
    of it (error 0.58 of the regression's on this 40-coalition design).
    Truth: the three share the term, 4/3 each (shapiq's exact values)."""
    n = 8
    weights = np.linspace(-1.0, 1.0, n)

    def v(m):
        m = np.atleast_2d(m)
        return m @ weights + 4.0 * (m[:, 0] & m[:, 1] & m[:, 2])

    truth, _ = exact(v, n)
    np.testing.assert_allclose(truth, weights + 4.0 / 3 * (np.arange(n) < 3), atol=1e-12)
    masks = sample_design(n, 5 * n, "stratified", 0)
    empty, full = v(np.zeros(n, bool))[0], v(np.ones(n, bool))[0]
    plain = estimate(masks, v(masks), empty, full, "stratified", n_boot=0)["value"]
    hybrid = tree.residual_values(masks, v(masks), empty, full)
    assert hybrid.sum() == pytest.approx(full - empty)
    assert np.linalg.norm(hybrid - truth) < 0.75 * np.linalg.norm(plain - truth)


def test_stratified_tree_has_intervals_where_resampled_rows_could_not_identify_it():
    """The stratified design at 3n: resampled pairs would miss singletons the
    stratified fit needs; the wild bootstrap keeps the design, so every replicate
    counts, and the intervals hold the value."""
    n = 8
    weights = np.linspace(-1.0, 1.0, n)
    masks = sample_design(n, 3 * n, "stratified", 0)

    def v(m):
        m = np.atleast_2d(m)
        return m @ weights + 2.0 * (m[:, 0] & m[:, 1] & m[:, 2]) + np.sqrt(m.sum(axis=1))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BootstrapWarning)
        table = estimate(masks, v(masks), v(np.zeros(n, bool))[0], v(np.ones(n, bool))[0], "stratified_tree",
                         n_boot=40)
    assert not [w for w in caught if "could not identify" in str(w.message)]  # no replicate dropped
    assert np.isfinite(table[["ci_low", "ci_high"]].to_numpy()).all()
    assert ((table["ci_low"] <= table["value"]) & (table["value"] <= table["ci_high"])).all()
    assert (table["ci_high"] - table["ci_low"] > 0).all()
