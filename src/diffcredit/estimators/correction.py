"""Values of the retrained game from a cheap game and a few retrained coalitions.

The Shapley value is linear in the game. With c the cheap game (sparsified
fine-tuning, say) evaluated on a whole design and r the retrained game evaluated on
k of its rows (the *paired* rows), write

    r(S) = b c(S) + e(S),    phi(r) = b phi(c) + phi(e).

b phi(c) comes from the cheap design (the configured method, its bootstrap and
image noise). b is a calibration slope: the (generalised) least-squares slope of r on c within
coalition sizes over the paired rows (kernel-weighted as in the ``stratified``
method; a size's common offset is a function of |S| and only moves everybody's
value equally), floored at 0. The residual game e is what the retrains add: its
anchors are known (e(empty), e(full) from the anchors of both games), so its values
are (e(full) - e(empty)) / n plus a zero-sum per-contributor part beta0, fitted to
the paired rows' residuals within sizes. A contributor's effect may change
linearly with the coalition's size, beta0_i + beta1_i (2|S| - n) / n (its effect on
small coalitions need not be its effect on large ones), and the Shapley value of
that game is beta0. Priors: exchangeable, beta0 ~ N(0, tau0^2 I) and
beta1 ~ N(0, tau1^2 I), row noise sigma^2 / w (w the row's kernel weight); the
variances maximise the restricted likelihood (empirical Bayes), the size term kept
only where it pays for itself (Akaike). This is regression-adjusted estimation: a
model of the retrained game from the cheap one, corrected by the retrained rows.
Contributors whose own coalitions were not retrained get beta0 near 0 with
variance tau0^2: their intervals widen by how much the retrained contributors
needed correcting.

Intervals: replicate j draws b from its standard error, refits beta0's
posterior mean on r - b_j c, draws beta0 from the posterior and adds the cheap
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
from .estimation import _percentiles, estimate_draws, values_frame
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
    cheap_draws = estimate_draws(masks, cheap, c_empty, c_full, method, seed, n_boot, shrink=shrink, noise=noise)
    return _corrected(masks, cheap, c_empty, c_full, cheap_draws, rows, retrained, r_empty, r_full, seed, shrink)


def _corrected(masks, cheap, c_empty, c_full, cheap_draws, rows, retrained, r_empty, r_full, seed, shrink):
    """`corrected_estimate` from a checked cheap design and its estimate's draws
    (`estimation.estimate_draws`), which do not depend on the retrained rows."""
    rows = check_paired_rows(masks, rows)
    paired, retrained, r_empty, r_full = check_design(masks[rows], retrained, r_empty, r_full)
    n = masks.shape[1]
    value_c, reps_c = cheap_draws
    fit = _Fit(paired, cheap[rows], retrained, c_empty, c_full, r_empty, r_full)
    basis = zero_sum_basis(n)
    value = fit.slope * value_c + fit.equal_share(fit.slope) + basis @ fit.theta(fit.slope)
    info = {"retrained_rows": int(len(rows)), "dof": correction_dof(paired), "slope": fit.slope,
            "slope_se": fit.slope_se, "tau": float(np.sqrt(fit.tau2)), "tau_size": float(np.sqrt(fit.tilt2)),
            "sigma": float(np.sqrt(fit.sigma2))}
    if reps_c is None:
        nan = np.full(n, np.nan)
        return values_frame(value, nan, nan), info
    rng = np.random.default_rng([seed, 1])
    draws = np.empty((len(reps_c), n))
    eig, vec = np.linalg.eigh(fit.posterior_cov)
    root = vec * np.sqrt(np.clip(eig, 0.0, None))  # a square root that tolerates rounding
    for j, rep in enumerate(reps_c):
        b = max(0.0, fit.slope + fit.slope_se * rng.standard_normal())
        theta = fit.theta(b) + root @ rng.standard_normal(n - 1)
        draws[j] = b * rep + fit.equal_share(b) + basis @ theta
    low, high = _percentiles(draws)
    if shrink:
        low, high = np.minimum(low, value), np.maximum(high, value)
    return values_frame(value, low, high), info


class _Fit:
    """The calibration slope and the empirical-Bayes residual fit on the paired rows.

    The residual's per-contributor effect may change linearly with the coalition's
    size, delta_i(s) = beta0_i + beta1_i t(s), t(s) = (2s - n) / n: a contributor's
    effect on small coalitions need not be its effect on large ones (a Frechet
    distance's, say), and the Shapley value of such a game is beta0 (t averages to
    zero over the sizes 1 .. n-1). Priors beta0 ~ N(0, tau0^2 I), beta1 ~ N(0, tau1^2 I)
    on the zero-sum subspace; row noise sigma^2 / w.
    """

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
        z = masks[keep].astype(float) @ zero_sum_basis(n)
        tilt = (2.0 * sizes - n) / n
        self.F = self.U @ np.hstack([z, z * tilt[:, None]])
        self.uc, self.ur = self.U @ cheap[keep], self.U @ retrained[keep]
        self.tau2, self.tilt2, self.sigma2 = self._hyperparameters()
        prior = np.concatenate([np.full(n - 1, self.tau2), np.full(n - 1, self.tilt2)])
        gram = (self.F * prior) @ self.F.T + self.sigma2 * np.eye(len(self.uc))
        inv_c = np.linalg.solve(gram, self.uc)
        info = float(self.uc @ inv_c)
        if info <= 1e-12 * max(1.0, float(self.uc @ self.uc)):
            self.slope, self.slope_se = 1.0, 0.0  # c is constant within sizes: nothing to calibrate
        else:  # generalised least squares, given the correction's prior and the noise
            self.slope = max(0.0, float(inv_c @ self.ur) / info)
            self.slope_se = float(np.sqrt(1.0 / info))
        gain = (prior[:, None] * self.F.T) @ np.linalg.inv(gram)  # beta's posterior mean = gain @ u
        cov = np.diag(prior) - gain @ self.F * prior[None, :]
        self.gain = gain[: n - 1]  # beta0: the values' part
        self.posterior_cov = (cov[: n - 1, : n - 1] + cov[: n - 1, : n - 1].T) / 2

    def theta(self, slope: float) -> np.ndarray:
        return self.gain @ (self.ur - slope * self.uc)

    def equal_share(self, slope: float) -> float:
        """(e(full) - e(empty)) / n for the residual game of this slope."""
        c_empty, c_full, r_empty, r_full = self.anchors
        return ((r_full - r_empty) - slope * (c_full - c_empty)) / self.n

    def _hyperparameters(self):
        """tau0^2, tau1^2 and sigma^2 maximising the restricted likelihood of
        u_r = b u_c + F beta + noise (b profiled out)."""
        m, half = len(self.ur), self.F.shape[1] // 2
        total = max(float(self.ur @ self.ur) / m, 1e-300)
        floor = 1e-10 * total
        flat = float(self.uc @ self.uc) <= 1e-12 * max(1.0, float(self.ur @ self.ur))
        gram0, gram1 = self.F[:, :half] @ self.F[:, :half].T, self.F[:, half:] @ self.F[:, half:].T

        def nll(p):
            # Variances so large or small that the covariance is numerically singular
            # (a negative determinant or information) are outside the search, not NaN.
            with np.errstate(over="ignore"):
                cov = np.exp(p[0]) * gram0 + np.exp(p[1]) * gram1 + (np.exp(p[2]) + floor) * np.eye(m)
            sign, logdet = np.linalg.slogdet(cov)
            if sign <= 0 or not np.isfinite(logdet):
                return np.inf
            inv_r, inv_c = np.linalg.solve(cov, self.ur), np.linalg.solve(cov, self.uc)
            if flat:
                return 0.5 * (logdet + float(self.ur @ inv_r))
            info = float(self.uc @ inv_c)
            if not info > 0:
                return np.inf
            resid = self.ur - (float(self.uc @ inv_r) / info) * self.uc
            out = 0.5 * (logdet + float(resid @ np.linalg.solve(cov, resid)) + np.log(info))
            return out if np.isfinite(out) else np.inf

        start, off = np.log(total), -np.inf

        def fit(free_tilt: bool):
            best = None
            for t0, s0 in ((start, start), (start, start - 4), (start - 4, start)):
                if free_tilt:
                    f, p0 = nll, (t0, t0, s0)
                else:
                    f, p0 = (lambda p: nll((p[0], off, p[1]))), (t0, s0)
                res = minimize(f, p0, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-10, "maxiter": 4000})
                if best is None or res.fun < best.fun:
                    best = res
            return best

        # The size tilt is one more variance, kept where it improves the restricted
        # likelihood by more than its cost (Akaike: 1 per parameter).
        plain, tilted = fit(False), fit(True)
        if tilted.fun < plain.fun - 1.0:
            tau2, tilt2, sigma2 = np.exp(tilted.x)
        else:
            (tau2, sigma2), tilt2 = np.exp(plain.x), 0.0
        return float(tau2), float(tilt2), float(sigma2 + floor)


def correction_convergence(masks, cheap, c_empty, c_full, method, retrained, r_empty, r_full, *,
                           n_points: int = 10, seed: int = 0, n_boot: int = 200, shrink: bool = False,
                           noise=None) -> pd.DataFrame:
    """The corrected values as the retrained rows grow: the design's first k rows
    retrained, k from the fewest that leave the correction `MIN_DOF` to all of
    `retrained` (whose rows are the design's first). Long format of
    `diagnostics.convergence`, `prefix` counting retrained rows."""
    masks, cheap, c_empty, c_full = check_design(masks, cheap, c_empty, c_full)
    total = len(retrained)
    valid = [k for k in range(1, total + 1) if correction_dof(masks[:k]) >= MIN_DOF]
    if not valid:
        raise ValueError(f"no prefix of the {total} retrained rows leaves the correction {MIN_DOF} degrees of freedom")
    lengths = np.linspace(valid[0], total, n_points).round().astype(int)
    cheap_draws = estimate_draws(masks, cheap, c_empty, c_full, method, seed, n_boot, shrink=shrink, noise=noise)
    frames = []
    for k in sorted({int(x) for x in lengths if x in valid} | {total}):
        df, _ = _corrected(masks, cheap, c_empty, c_full, cheap_draws, np.arange(k), retrained[:k], r_empty, r_full,
                           seed, shrink)
        frames.append(df.reset_index().assign(prefix=k))
    out = pd.concat(frames, ignore_index=True)
    out["ci_width"] = out["ci_high"] - out["ci_low"]
    return out[["prefix", "player", "value", "ci_low", "ci_high", "ci_width"]]
