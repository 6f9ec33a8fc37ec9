"""Training randomness in the intervals: its pooled variance, its draws, and the
coverage they give on games whose every coalition is measured with noise."""

import math
import warnings
from itertools import combinations

import numpy as np
import pytest

from diffcredit.coalitions import sample_design
from diffcredit.estimators import BootstrapWarning, estimate
from diffcredit.estimators.exact import Exact
from diffcredit.estimators.training_noise import pooled_variance, training_draws


def test_pooled_variance_is_the_mean_of_the_rows_sample_variances():
    rng = np.random.default_rng(0)
    first, again = rng.normal(size=5), rng.normal(size=(5, 2))
    runs = np.column_stack([first, again])
    variance, df = pooled_variance(first, again)
    assert df == 10
    assert variance == pytest.approx(np.mean([np.var(r, ddof=1) for r in runs]))
    # One more run per row: for two runs, half the squared difference.
    variance, df = pooled_variance(first, again[:, 0])
    assert (variance, df) == (pytest.approx(np.mean((first - again[:, 0]) ** 2 / 2)), 5)


@pytest.mark.parametrize("first, again", [(np.zeros(3), np.zeros((2, 1))), (np.zeros(2), np.zeros((2, 0))),
                                          (np.array([0.0, np.nan]), np.zeros(2))])
def test_pooled_variance_refuses_what_it_cannot_pool(first, again):
    with pytest.raises(ValueError):
        pooled_variance(first, again)


def test_draws_of_exact_values_have_the_spread_of_the_shapley_weights():
    """With sigma known (huge df), the draws of the exact values' error have, per player,
    the sd sigma * sqrt(sum over coalitions of the Shapley weight squared): every row's
    error enters player i's value with weight |S|!(n-|S|-1)!/n! if i is in S, minus the
    weight of S u {i} if not."""
    n, sigma = 4, 0.7
    masks = np.array([[j in s for j in range(n)] for k in range(1, n) for s in combinations(range(n), k)])
    values = np.random.default_rng(1).normal(size=len(masks))
    draws = training_draws(Exact().point, masks, values, 0.0, 1.0, sigma**2, 10**9, n_draws=40000, seed=3)

    def weight(size):  # the Shapley weight of a coalition of `size` others
        return math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)

    for i in range(n):
        w = [weight(int(m.sum()) - 1) if m[i] else -weight(int(m.sum())) for m in masks]
        assert draws[:, i].std() == pytest.approx(sigma * np.sqrt(np.sum(np.square(w))), rel=0.02)
    assert np.abs(draws.sum(axis=1)).max() < 1e-9  # the anchors are fixed: the errors sum to zero


def test_a_few_rows_widen_the_draws_beyond_a_known_sigma():
    """Sigma estimated from 3 degrees of freedom is uncertain: its draws are heavier-tailed
    than those at the same variance known exactly."""
    masks = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=bool)
    values = np.zeros(6)
    known = training_draws(Exact().point, masks, values, 0.0, 0.0, 1.0, 10**9, n_draws=20000, seed=0)
    few = training_draws(Exact().point, masks, values, 0.0, 0.0, 1.0, 3, n_draws=20000, seed=0)
    q = [97.5]
    assert np.percentile(np.abs(few[:, 0]), q) > 1.3 * np.percentile(np.abs(known[:, 0]), q)


def _coverage(method, scheme, budget, trials=100, sigma=1.0, k=6, n=11):
    """Share of the true values inside the intervals, with and without the training
    term, on an additive game plus a function of size whose every coalition (not the
    anchors) is measured with N(0, sigma^2) noise; k rows measured twice."""
    w = np.random.default_rng(0).normal(size=n)
    masks = sample_design(n, budget, scheme, 0)

    def game(m):
        return m @ w + 3 * np.sqrt(m.sum(axis=1))

    truth = w + 3 * np.sqrt(n) / n
    hit = {"with": [], "without": []}
    for t in range(trials):
        rng = np.random.default_rng(t + 1)
        v = game(masks) + rng.normal(0, sigma, len(masks))
        training = pooled_variance(v[:k], game(masks[:k]) + rng.normal(0, sigma, k))
        for name, arg in (("with", training), ("without", None)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BootstrapWarning)
                d = estimate(masks, v, 0.0, game(np.ones((1, n), bool))[0], method, seed=t, training=arg)
            hit[name].append(np.mean((d["ci_low"] <= truth) & (truth <= d["ci_high"])))
    return {k_: float(np.mean(h)) for k_, h in hit.items()}


def test_the_training_term_restores_coverage_where_the_bootstrap_sees_no_noise():
    """The stratified design of 30 coalitions of 11 players fits its singletons and
    complements exactly: its bootstrap cannot see measurement noise and its intervals
    hold almost none of the true values; with 6 rows trained twice they hold about 95%."""
    cover = _coverage("stratified", "stratified", 30)
    assert cover["without"] < 0.3
    assert cover["with"] >= 0.9


def test_the_training_term_never_narrows_an_interval():
    masks = sample_design(6, 48, "kernel_paired", 0)
    values = np.random.default_rng(2).normal(size=len(masks))
    plain = estimate(masks, values, 0.0, 1.0, "kernelshap", seed=1)
    wide = estimate(masks, values, 0.0, 1.0, "kernelshap", seed=1, training=(0.5, 6))
    np.testing.assert_allclose(wide["value"], plain["value"])
    assert ((wide["ci_high"] - wide["ci_low"]) > (plain["ci_high"] - plain["ci_low"])).all()


def test_a_deterministic_method_gets_intervals_from_training_alone():
    masks = sample_design(4, 4, "loo", 0)
    values = np.arange(4.0)
    plain = estimate(masks, values, 0.0, 10.0, "loo")
    assert (plain["ci_low"] == plain["ci_high"]).all()
    wide = estimate(masks, values, 0.0, 10.0, "loo", training=(1.0, 4))
    assert (wide["ci_low"] < wide["value"]).all() and (wide["value"] < wide["ci_high"]).all()
    assert estimate(masks, values, 0.0, 10.0, "loo", n_boot=0, training=(1.0, 4))["ci_low"].equals(plain["ci_low"])
