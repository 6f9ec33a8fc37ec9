"""Values of the retrained game from a cheap game and a few retrained coalitions.

The Shapley value is linear in the game. With c the cheap game (sparsified
fine-tuning, say) evaluated on a whole design and r the retrained game evaluated on
k of its rows (the *paired* rows), write

    r(S) = b c(S) + e(S),    phi(r) = b phi(c) + phi(e).

b phi(c) comes from the cheap design (the configured method, its bootstrap and
image noise). b is a calibration slope: the least-squares slope of r on c within
coalition sizes over the paired rows (kernel-weighted as in the ``stratified``
method; a size's common offset is a function of |S| and only moves everybody's
value equally), floored at 0. The residual game e is what the retrains add: its
anchors are known (e(empty), e(full) from the anchors of both games), so its values
are (e(full) - e(empty)) / n plus a zero-sum per-contributor part theta, fitted to
the paired rows' residuals within sizes with an exchangeable prior
theta ~ N(0, tau^2 I) and row noise sigma^2 / w (w the row's kernel weight), both
variances chosen by maximising the marginal likelihood (empirical Bayes, as in
regression-adjusted estimation: a model of the retrained game from the cheap one,
corrected by the retrained rows). Contributors whose own coalitions were not
retrained get theta near 0 with variance tau^2: the intervals widen by how much
the retrained contributors needed correcting.

Intervals: replicate j draws b from its sandwich standard error, refits theta's
posterior mean on r - b_j c, draws theta from the posterior and adds the cheap
estimate's bootstrap replicate j scaled by b_j. They cover the coalition sampling
of the cheap design, its image noise, the slope's error and the correction's
(sampling noise of the retrains, including their image noise, and the spread of
per-contributor corrections for contributors not retrained).

What is exact: with noiseless games where r - b c is additive plus a function of
the size, paired rows that identify it (every singleton and complement, say) and a
cheap method that is exact on its design, the value is phi(r) exactly. Otherwise it
is not unbiased: the correction is shrunk toward zero (toward the calibrated cheap
values) by how little the retrains say, the bias that buys its small variance;
it vanishes as the retrained rows grow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from .common import check_design, zero_sum_basis
from .estimation import CI_LEVEL, estimate_draws
from .stratified import _within_size_weights

MIN_DOF = 3


def correction_dof(masks) -> int:
    """Degrees of freedom the paired rows leave for the correction: rows that share
    their size with another row, minus one per such size."""
    sizes = np.asarray(masks, dtype=bool).sum(axis=1)
    counts = np.bincount(sizes)
    return int(counts[counts > 1].sum() - (counts > 1).sum())


def check_paired_rows(masks, rows) -> np.ndarray:
    """The paired rows as distinct indices of `masks`, leaving at least `MIN_DOF`
    degrees of freedom. Raises ValueError naming the problem."""
    masks = np.asarray(masks, dtype=bool)
    rows = np.asarray(rows)
    if rows.ndim != 1 or rows.size == 0 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError("the retrained rows must be a non-empty list of row indices of the design")
    if (rows < 0).any() or (rows >= len(masks)).any() or len(np.unique(rows)) != len(rows):
        raise ValueError(f"the retrained rows must be distinct rows of the design's {len(masks)}")
    dof = correction_dof(masks[rows])
    if dof < MIN_DOF:
        raise ValueError(
            f"the {len(rows)} retrained coalitions leave {dof} degrees of freedom for the correction "
            f"(rows sharing a size, less one per size); it needs {MIN_DOF}: retrain more coalitions, "
            "at least two of each size used (5 for a stratified design)"
        )
    return rows


def corrected_estimate(masks, cheap, c_empty, c_full, method, rows, retrained, r_empty, r_full, *,
                       seed: int = 0, n_boot: int = 200, shrink: bool = False, noise=None):
    """Values of the retrained game r from the cheap game c on a design and r on some rows.

    Args:
        masks, cheap, c_empty, c_full: the cheap game's design, values and anchors.
        method: the cheap estimate's method (any Shapley method).
        rows: indices of the design rows that were also retrained.
        retrained, r_empty, r_full: r on those rows, and r's anchors.
        seed, n_boot, shrink: as for `estimate` (the cheap estimate's options; the
            replicates also draw the correction).
        noise: image replicates of the cheap game, as for `estimate`.

    Returns:
        (DataFrame indexed by player with ``value``, ``ci_low``, ``ci_high``, and a
        dict of the fit: slope, its standard error, tau, sigma, the rows and their
        degrees of freedom.)
    """
    masks, cheap, c_empty, c_full = check_design(masks, cheap, c_empty, c_full)
    rows = check_paired_rows(masks, rows)
    paired, retrained, r_empty, r_full = check_design(masks[rows], retrained, r_empty, r_full)
    n = masks.shape[1]
    value_c, reps_c = estimate_draws(masks, cheap, c_empty, c_full, method, seed, n_boot,
                                     shrink=shrink, noise=noise)
    fit = _Fit(paired, cheap[rows], retrained, c_empty, c_full, r_empty, r_full)
    basis = zero_sum_basis(n)
    value = fit.slope * value_c + fit.equal_share(fit.slope) + basis @ fit.theta(fit.slope)
    info = {"retrained_rows": int(len(rows)), "dof": correction_dof(paired), "slope": fit.slope,
            "slope_se": fit.slope_se, "tau": float(np.sqrt(fit.tau2)), "sigma": float(np.sqrt(fit.sigma2))}
    if reps_c is None:
        nan = np.full(n, np.nan)
        return _frame(value, nan, nan), info
    rng = np.random.default_rng([seed, 1])
    draws = np.empty((len(reps_c), n))
    root = np.linalg.cholesky(fit.posterior_cov + 1e-15 * np.eye(n - 1))
    for j, rep in enumerate(reps_c):
        b = max(0.0, fit.slope + fit.slope_se * rng.standard_normal())
        theta = fit.theta(b) + root @ rng.standard_normal(n - 1)
        draws[j] = b * rep + fit.equal_share(b) + basis @ theta
    tail = 100 * (1 - CI_LEVEL) / 2
    low, high = np.percentile(draws, [tail, 100 - tail], axis=0)
    if shrink:
        low, high = np.minimum(low, value), np.maximum(high, value)
    return _frame(value, low, high), info


def _frame(value, low, high) -> pd.DataFrame:
    return pd.DataFrame({"value": value, "ci_low": low, "ci_high": high},
                        index=pd.RangeIndex(len(value), name="player"))


class _Fit:
    """The calibration slope and the empirical-Bayes residual fit on the paired rows."""

    def __init__(self, masks, cheap, retrained, c_empty, c_full, r_empty, r_full):
        m, n = masks.shape
        self.n = n
        self.anchors = (c_empty, c_full, r_empty, r_full)
        sizes = masks.sum(axis=1)
        counts = np.bincount(sizes, minlength=n + 1)
        weights = _within_size_weights(masks, sizes, counts)
        keep = weights > 0
        sizes, weights = sizes[keep], weights[keep] / weights[keep].mean()
        groups = np.unique(sizes)
        indicator = (sizes[:, None] == groups[None, :]).astype(float)
        root = np.sqrt(weights)
        # An orthonormal basis of the whitened rows' space, less each size's mean.
        q, _ = np.linalg.qr(indicator * root[:, None], mode="complete")
        self.U = q[:, len(groups):].T * root[None, :]  # maps a row vector to its centred coordinates
        features = masks[keep].astype(float) @ zero_sum_basis(n)
        self.F = self.U @ features
        self.uc, self.ur = self.U @ cheap[keep], self.U @ retrained[keep]
        self.tau2, self.sigma2 = self._hyperparameters()
        gram = self.tau2 * self.F @ self.F.T + self.sigma2 * np.eye(len(self.uc))
        inv_c = np.linalg.solve(gram, self.uc)
        info = float(self.uc @ inv_c)
        if info <= 1e-12 * max(1.0, float(self.uc @ self.uc)):
            self.slope, self.slope_se = 1.0, 0.0  # c is constant within sizes: nothing to calibrate
        else:  # generalised least squares, given the correction's prior and the noise
            self.slope = max(0.0, float(inv_c @ self.ur) / info)
            self.slope_se = float(np.sqrt(1.0 / info))
        self.gain = self.tau2 * np.linalg.solve(gram, self.F).T  # theta's posterior mean = gain @ u
        self.posterior_cov = self.tau2 * np.eye(n - 1) - self.gain @ self.F * self.tau2
        self.posterior_cov = (self.posterior_cov + self.posterior_cov.T) / 2

    def theta(self, slope: float) -> np.ndarray:
        return self.gain @ (self.ur - slope * self.uc)

    def equal_share(self, slope: float) -> float:
        """(e(full) - e(empty)) / n for the residual game of this slope."""
        c_empty, c_full, r_empty, r_full = self.anchors
        return ((r_full - r_empty) - slope * (c_full - c_empty)) / self.n

    def _hyperparameters(self):
        """tau^2 and sigma^2 maximising the restricted likelihood of
        u_r = b u_c + F theta + noise (b profiled out, theta ~ N(0, tau^2 I))."""
        m = len(self.ur)
        total = max(float(self.ur @ self.ur) / m, 1e-300)
        floor = 1e-10 * total
        flat = float(self.uc @ self.uc) <= 1e-12 * max(1.0, float(self.ur @ self.ur))
        gram_f = self.F @ self.F.T

        def nll(p):
            cov = np.exp(p[0]) * gram_f + (np.exp(p[1]) + floor) * np.eye(m)
            sign, logdet = np.linalg.slogdet(cov)
            inv_r, inv_c = np.linalg.solve(cov, self.ur), np.linalg.solve(cov, self.uc)
            if flat:
                return 0.5 * (logdet + float(self.ur @ inv_r))
            info = float(self.uc @ inv_c)
            resid = self.ur - (float(self.uc @ inv_r) / info) * self.uc
            return 0.5 * (logdet + float(resid @ np.linalg.solve(cov, resid)) + np.log(info))

        start = np.log(total)
        best = None
        for t0, s0 in ((start, start), (start, start - 4), (start - 4, start)):
            res = minimize(nll, [t0, s0], method="Nelder-Mead",
                           options={"xatol": 1e-6, "fatol": 1e-10, "maxiter": 2000})
            if best is None or res.fun < best.fun:
                best = res
        return float(np.exp(best.x[0])), float(np.exp(best.x[1]) + floor)


def correction_convergence(masks, cheap, c_empty, c_full, method, retrained, r_empty, r_full, *,
                           n_points: int = 10, seed: int = 0, n_boot: int = 200, shrink: bool = False,
                           noise=None) -> pd.DataFrame:
    """The corrected values as the retrained rows grow: the design's first k rows
    retrained, k from the fewest that leave the correction `MIN_DOF` to all of
    `retrained` (whose rows are the design's first). Long format of
    `diagnostics.convergence`, `prefix` counting retrained rows."""
    masks = np.asarray(masks, dtype=bool)
    total = len(retrained)
    valid = [k for k in range(1, total + 1) if correction_dof(masks[:k]) >= MIN_DOF]
    if not valid:
        raise ValueError(f"no prefix of the {total} retrained rows leaves the correction {MIN_DOF} degrees of freedom")
    lengths = np.linspace(valid[0], total, n_points).round().astype(int)
    frames = []
    for k in sorted({int(x) for x in lengths if x in valid} | {total}):
        df, _ = corrected_estimate(masks, cheap, c_empty, c_full, method, np.arange(k), retrained[:k], r_empty,
                                   r_full, seed=seed, n_boot=n_boot, shrink=shrink, noise=noise)
        frames.append(df.reset_index().assign(prefix=k))
    out = pd.concat(frames, ignore_index=True)
    out["ci_width"] = out["ci_high"] - out["ci_low"]
    return out[["prefix", "player", "value", "ci_low", "ci_high", "ci_width"]]
