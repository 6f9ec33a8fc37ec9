"""Corrected estimates: the retrained game's values from a cheap game and a few retrains,
checked against brute-force Shapley values of games built with a known shortcut error."""

import itertools
import math
import warnings

import numpy as np
import pytest

from diffcredit.coalitions import sample_design
from diffcredit.estimators import estimate
from diffcredit.estimators.correction import (
    check_paired_rows,
    corrected_estimate,
    correction_convergence,
    correction_dof,
)

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")  # a NaN likelihood is a bug


def brute_force_shapley(n, v):
    """Shapley values of the game v (a function of a frozenset) by the permutation-weight formula."""
    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for s in range(n):
            w = math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n)
            for members in itertools.combinations(others, s):
                phi[i] += w * (v(frozenset(members) | {i}) - v(frozenset(members)))
    return phi


class Games:
    """A cheap game c with pairwise interactions (which the stratified method estimates
    exactly on whole complementary pairs) and a retrained game r = slope * c + an
    additive shortcut error + a function of the size."""

    def __init__(self, n, seed=0, slope=0.7):
        rng = np.random.default_rng(seed)
        self.n, self.slope = n, slope
        self.a = rng.normal(size=n)
        self.pairs = np.triu(rng.normal(scale=0.3, size=(n, n)), 1)
        self.error = rng.normal(size=n)

    def _z(self, members):
        return np.array([i in members for i in range(self.n)], dtype=float)

    def cheap(self, members):
        z = self._z(members)
        return z @ self.a + z @ self.pairs @ z + np.sqrt(len(members))

    def retrained(self, members):
        return self.slope * self.cheap(members) + self._z(members) @ self.error + 0.3 * len(members) ** 2

    def evaluate(self, masks, game):
        return np.array([game(frozenset(np.flatnonzero(m))) for m in masks])

    def anchors(self, game):
        return game(frozenset()), game(frozenset(range(self.n)))


def test_singletons_and_complements_retrained_give_the_exact_retrained_values():
    g = Games(6)
    masks = sample_design(6, 24, "stratified", 0)
    k = 12  # the stratified design's first 2n rows: every singleton and its complement
    cheap, r = g.evaluate(masks, g.cheap), g.evaluate(masks[:k], g.retrained)
    df, fit = corrected_estimate(masks, cheap, *g.anchors(g.cheap), "stratified", np.arange(k), r,
                                 *g.anchors(g.retrained))
    truth = brute_force_shapley(6, g.retrained)
    np.testing.assert_allclose(df["value"], truth, atol=1e-6)
    assert fit["slope"] == pytest.approx(0.7, abs=1e-4)
    plain = estimate(masks, cheap, *g.anchors(g.cheap), "stratified")["value"]
    assert np.abs(plain - truth).max() > 1.0  # the cheap values alone are far off


@pytest.mark.parametrize("k", [5, 8, 12, 24])
def test_values_add_up_to_the_retrained_total(k):
    g = Games(6, seed=1)
    masks = sample_design(6, 24, "stratified", 1)
    df, _ = corrected_estimate(masks, g.evaluate(masks, g.cheap), *g.anchors(g.cheap), "stratified",
                               np.arange(k), g.evaluate(masks[:k], g.retrained), *g.anchors(g.retrained))
    empty, full = g.anchors(g.retrained)
    assert df["value"].sum() == pytest.approx(full - empty, abs=1e-9)
    assert (df["ci_low"] <= df["value"]).all() and (df["value"] <= df["ci_high"]).all()


def test_a_cheap_game_equal_to_the_retrained_one_is_left_as_it_is():
    g = Games(6, seed=2, slope=1.0)
    g.error[:] = 0.0
    masks = sample_design(6, 24, "stratified", 2)
    cheap = g.evaluate(masks, g.cheap)
    df, fit = corrected_estimate(masks, cheap, *g.anchors(g.cheap), "stratified", np.arange(8),
                                 cheap[:8], *g.anchors(g.cheap))
    plain = estimate(masks, cheap, *g.anchors(g.cheap), "stratified")
    np.testing.assert_allclose(df["value"], plain["value"], atol=1e-6)
    assert fit["slope"] == pytest.approx(1.0, abs=1e-6)


def _noisy_world(rep, n=6):
    """A retrained game with interactions, a cheap game with a per-contributor error that
    is largest for small coalitions (a pruned model's residue) and noise on both."""
    rng = np.random.default_rng(rep)
    codes = np.arange(1, 2**n - 1)
    masks = ((codes[:, None] >> np.arange(n)) & 1).astype(bool)
    z = masks.astype(float)
    a, pairs, bias = rng.normal(size=n), np.triu(rng.normal(scale=0.2, size=(n, n)), 1), 2 * rng.normal(size=n)
    true = z @ a + np.einsum("ri,ij,rj->r", z, pairs, z) + 3 * np.log1p(z.sum(1))
    cheap = true + (z @ bias) / z.sum(1) + 0.3 * rng.normal(size=len(z))
    measured = true + 0.3 * rng.normal(size=len(z))
    full = float(np.ones(n) @ a + np.ones(n) @ pairs @ np.ones(n) + 3 * np.log1p(n))
    table = dict(zip(map(int, codes), true)) | {0: 0.0, 2**n - 1: full}
    truth = brute_force_shapley(n, lambda s: table[sum(1 << i for i in s)])
    return codes, cheap, measured, full, truth


def test_intervals_cover_the_retrained_values_where_the_cheap_ones_do_not():
    """Expectation written before the run: the cheap game's own intervals leave out its
    per-contributor error, so they hold well under 90% of the retrained values; with every
    singleton and complement retrained the corrected intervals hold at least 85%, and the
    error shrinks by half."""
    n, covered, errors = 6, {"cheap": [], "corrected": []}, {"cheap": [], "corrected": []}
    for rep in range(40):
        codes, cheap, measured, full, truth = _noisy_world(rep, n)
        masks = sample_design(n, 3 * n, "stratified", rep)
        index = masks.astype(int) @ (1 << np.arange(n)) - 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arms = {"cheap": estimate(masks, cheap[index], 0.0, full, "stratified", seed=rep),
                    "corrected": corrected_estimate(masks, cheap[index], 0.0, full, "stratified", np.arange(2 * n),
                                                    measured[index[:2 * n]], 0.0, full, seed=rep)[0]}
        for name, df in arms.items():
            covered[name].append(np.mean((df["ci_low"] <= truth) & (truth <= df["ci_high"])))
            errors[name].append(np.linalg.norm(df["value"] - truth))
    assert np.mean(covered["cheap"]) < 0.75
    assert np.mean(covered["corrected"]) >= 0.85
    assert np.mean(errors["corrected"]) < 0.5 * np.mean(errors["cheap"])


def test_contributors_not_retrained_get_wider_intervals():
    g = Games(8, seed=3)
    masks = sample_design(8, 32, "stratified", 3)
    k = 8  # four singletons and four complements: half the contributors retrained
    df, _ = corrected_estimate(masks, g.evaluate(masks, g.cheap), *g.anchors(g.cheap), "stratified",
                               np.arange(k), g.evaluate(masks[:k], g.retrained), *g.anchors(g.retrained))
    seen = masks[:k][masks[:k].sum(1) == 1].argmax(1)
    width = (df["ci_high"] - df["ci_low"]).to_numpy()
    unseen = np.setdiff1d(np.arange(8), seen)
    assert width[unseen].min() > width[seen].max()


def test_too_few_retrained_rows_are_refused_with_the_count():
    masks = sample_design(6, 24, "stratified", 0)
    assert correction_dof(masks[:4]) == 2 and correction_dof(masks[:5]) == 3
    with pytest.raises(ValueError, match="leave 2 degrees of freedom .* needs 3"):
        check_paired_rows(masks, np.arange(4))
    with pytest.raises(ValueError, match="distinct rows"):
        check_paired_rows(masks, [0, 1, 2, 3, 3])
    with pytest.raises(ValueError, match="distinct rows"):
        check_paired_rows(masks, [0, 1, 2, 3, 30])
    with pytest.raises(ValueError, match="must be 2-D|one value per row"):
        corrected_estimate(masks, np.zeros(24), 0, 1, "stratified", np.arange(6), np.zeros(5), 0, 1)


def test_convergence_ends_at_the_estimate_and_starts_at_the_fewest_rows():
    g = Games(6, seed=4)
    masks = sample_design(6, 24, "stratified", 4)
    cheap, r = g.evaluate(masks, g.cheap), g.evaluate(masks[:12], g.retrained)
    conv = correction_convergence(masks, cheap, *g.anchors(g.cheap), "stratified", r, *g.anchors(g.retrained),
                                  n_boot=50)
    assert conv["prefix"].min() == 5 and conv["prefix"].max() == 12
    last, _ = corrected_estimate(masks, cheap, *g.anchors(g.cheap), "stratified", np.arange(12), r,
                                 *g.anchors(g.retrained), n_boot=50)
    np.testing.assert_allclose(conv[conv["prefix"] == 12]["value"], last["value"])
