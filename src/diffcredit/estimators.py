"""Value estimators from an evaluated coalition design.

Every estimator takes the design (boolean masks, one row per coalition), the
property v(S) measured for each row, and the two anchors v(empty) and v(full),
and returns one value per contributor with a 95% bootstrap interval.

Methods:

* ``kernelshap``: constrained least squares of Covert & Lee (2021). Shapley
  values minimise the kernel-weighted squared error of an additive fit to
  v(S) - v(empty) subject to sum(phi) = v(full) - v(empty). When coalitions are
  drawn from the kernel itself the weights become uniform over rows.
* ``leverage``: Leverage SHAP (Musco & Witter, 2025): the same regression on a
  design drawn from the leverage-score distribution, each row reweighted by
  kernel mass / sampling probability. With coalitions drawn without replacement
  and uniformly within each size, the probability of a size-s coalition given
  the design's size counts is count_s / C(n, s), so a row of size s gets weight
  (n-1) / (s (n-s)) / count_s: the size's total kernel mass shared among its
  rows. A size that is fully enumerated thus gets exactly its kernel weights,
  and the full enumeration gives the exact Shapley values. Efficiency is
  imposed, as in the paper, by solving in the subspace orthogonal to the all
  ones vector and adding (v(full) - v(empty)) / n to every value.
* ``stratified``: the same weighted regression solved within coalition-size
  strata: v(S) and the features are centred on their mean over the design's
  rows of the same size before the fit (a fixed effect per size). Subtracting
  any function g(|S|) of the size alone changes the Shapley values only by
  (g(n) - g(0)) / n for everybody, so this takes the part of v that depends
  on size alone, which is large when v grows with the amount of data, out of
  the sampling error. Rows of size s get weight K_s (N_s - 1) / (N_s (c_s - 1))
  (K_s the kernel mass of the size, N_s = C(n, s), c_s its rows), which makes
  each size's centred scatter unbiased for its share of the regression, and
  is the exact kernel weight K_s / N_s for a size that is fully enumerated.
  Exact for games that are additive plus a function of |S|, for games with
  interactions of order at most 2 on designs of whole complementary pairs,
  and on the full enumeration; consistent otherwise. Its intervals come from
  a wild bootstrap that keeps the design.
* ``banzhaf``: maximum sample reuse (Wang & Jia, 2023): mean v(S) over rows
  containing i minus mean v(S) over rows without i, with the anchors mixed in
  at their probability under uniform sampling, which keeps it unbiased although
  the design leaves them out.
* ``loo``: leave-one-out, v(full) - v(N \\ {i}).
* ``exact``: exact Shapley values from all 2^n - 2 coalitions and the anchors.

Shrinkage (``shrink=True``, for the regression methods ``kernelshap``,
``leverage`` and ``stratified``): the estimate's deviations from the equal
split, d = phi - (v(full) - v(empty)) / n, are replaced by their posterior
mean under the empirical-Bayes model d ~ N(0, tau^2 I) on the zero-sum
subspace, with the estimate's sampling covariance Sigma from the fit's HC3
residuals (sandwich, by complementary pair in paired designs) and tau^2 by the
method of moments, max(0, (|d|^2 - tr Sigma) / (n - 1)): d is multiplied by
tau^2 (tau^2 I + Sigma)^-1 (James & Stein, 1961; Efron & Morris, 1973). The
values still sum to v(full) - v(empty), shrink the most where the design says
least, and approach the unshrunk values as Sigma vanishes with the budget; a
design that cannot tell the contributors apart at all gives the equal split.
It trades bias for variance: worth it at small budgets and on noisy
measurements, where Sigma is large against the spread of the values.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.linalg import null_space

from .coalitions import COMPATIBLE_SCHEMES, EXACT_MAX_PLAYERS, STRATIFIED_METHODS

METHODS = tuple(COMPATIBLE_SCHEMES)
# Methods whose values satisfy efficiency: they sum to v(full) - v(empty).
SHAPLEY_METHODS = ("kernelshap", "leverage", "stratified", "exact")
DEFAULT_SCHEME = {
    "kernelshap": "kernel_paired",
    "leverage": "leverage",
    "stratified": "stratified",
    "banzhaf": "banzhaf",
    "loo": "loo",
    "exact": "exact",
}
# Regression methods with a sampling covariance, which shrinkage needs.
SHRINKABLE_METHODS = ("kernelshap", "leverage", "stratified")
# Methods without sampling error: their intervals have zero width.
DETERMINISTIC_METHODS = ("loo", "exact")
CI_LEVEL = 0.95


class IdentificationError(ValueError):
    """The design does not determine the values (too few or degenerate coalitions)."""


class BootstrapWarning(RuntimeWarning):
    """The bootstrap intervals are unreliable at this budget: some resamples could
    not identify the values and were dropped, or (method ``stratified``) some
    rows are alone in their size and the intervals ignore the sizes they stand for."""


def estimate(
    masks,
    values,
    v_empty: float,
    v_full: float,
    method: str,
    seed: int = 0,
    n_boot: int = 200,
    paired: bool | None = None,
    *,
    n_players: int | None = None,
    shrink: bool = False,
    noise: tuple | None = None,
) -> pd.DataFrame:
    """Estimate each contributor's value from an evaluated design.

    Args:
        masks: (m, n) boolean (or 0/1) array, one coalition per row; neither
            the empty nor the full coalition may appear.
        values: (m,) measured v(S) for each row.
        v_empty: v of the empty coalition.
        v_full: v of the full coalition.
        method: one of `METHODS`.
        seed: seed of the bootstrap.
        n_boot: bootstrap resamples; 0 skips the intervals (NaN).
        paired: whether rows 2k and 2k+1 are complementary pairs, which the
            bootstrap then treats as one unit; None detects it.
        n_players: if given, the number of columns `masks` must have.
        shrink: shrink the values toward the equal split by empirical Bayes
            (see the module docstring); methods in `SHRINKABLE_METHODS`.
        noise: replicates of the measurements themselves, (rows (m, r), v_empty
            (r,), v_full (r,)): each coalition's property recomputed on resampled
            generated images. The estimate on replicate j minus its mean is a draw
            of the error that a finite sample of images adds; bootstrap replicate
            b adds draw b mod r, so the intervals cover both sources (for the
            deterministic methods, this error alone).

    Returns:
        DataFrame indexed by player 0..n-1 with columns ``value``, ``ci_low``
        and ``ci_high``. Intervals are 95% percentile intervals from resampling
        rows (pairs in paired designs) with replacement; for ``stratified``,
        from a wild bootstrap that keeps the design and flips the signs of
        the residuals of rows (pairs in paired designs). The deterministic
        methods ``loo`` and ``exact`` report ci_low = ci_high = value unless
        `noise` is given.
        With ``shrink``, the intervals are those of the unshrunk values,
        widened where needed to contain the shrunk value: the bootstrap
        intervals of a shrunk estimate are centred on its bias and cover
        the true values less often.

    Raises:
        ValueError: malformed inputs or unknown method, before any work.
        IdentificationError: the design cannot identify the values.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    check_shrink(method, shrink)
    masks, values, v_empty, v_full = check_design(masks, values, v_empty, v_full, n_players)
    for name, number in (("n_boot", n_boot), ("seed", seed)):
        if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {number!r}")
    if paired is None:
        paired = is_paired(masks)
    elif paired and not is_paired(masks):
        raise ValueError("paired=True but row 2k+1 is not the complement of row 2k for every k")

    point = _POINT_ESTIMATORS[method]
    if shrink:
        value = _shrunk(masks, values, v_empty, v_full, method, paired)
    else:
        value = point(masks, values, v_empty, v_full)
    errors = _noise_draws(point, masks, noise)
    if method in DETERMINISTIC_METHODS:
        low, high = (value, value) if errors is None else _percentiles(value + errors)
    elif n_boot == 0:
        low = high = np.full_like(value, np.nan)
    else:
        if method in STRATIFIED_METHODS:
            replicates = _wild_bootstrap(masks, values, v_empty, v_full, paired, n_boot, seed)
        else:
            replicates = _bootstrap(point, masks, values, v_empty, v_full, paired, n_boot, seed)
        if errors is not None:
            replicates = replicates + errors[np.arange(len(replicates)) % len(errors)]
        low, high = _percentiles(replicates)
    if shrink:
        low, high = np.minimum(low, value), np.maximum(high, value)
    return pd.DataFrame(
        {"value": value, "ci_low": low, "ci_high": high},
        index=pd.RangeIndex(masks.shape[1], name="player"),
    )


def _noise_draws(point, masks, noise) -> np.ndarray | None:
    """(r, n) centred draws of the values' error from replicated measurements, or None."""
    if noise is None:
        return None
    rows, empty, full = (np.asarray(x, dtype=float) for x in noise)
    if rows.ndim != 2 or rows.shape[0] != len(masks) or empty.shape != (rows.shape[1],) or full.shape != empty.shape:
        raise ValueError(f"noise must be rows ({len(masks)}, r), v_empty (r,) and v_full (r,); got shapes "
                         f"{rows.shape}, {empty.shape}, {full.shape}")
    if rows.shape[1] == 0:
        return None
    draws = np.stack([point(masks, rows[:, j], empty[j], full[j]) for j in range(rows.shape[1])])
    return draws - draws.mean(axis=0)


def check_shrink(method: str, shrink) -> None:
    """Refuse a shrink flag that is not a bool, or shrinkage for a method without it."""
    if not isinstance(shrink, (bool, np.bool_)):
        raise ValueError(f"shrink must be True or False, got {shrink!r}")
    if shrink and method not in SHRINKABLE_METHODS:
        raise ValueError(
            f"shrink is defined for the methods {', '.join(SHRINKABLE_METHODS)}, not for "
            f"{method!r}; drop shrink or use one of those methods"
        )


def is_paired(masks: np.ndarray) -> bool:
    """Whether row 2k+1 is the complement of row 2k for every complete pair.

    An odd final row (a pair cut by the budget) is allowed.
    """
    masks = np.asarray(masks, dtype=bool)
    end = 2 * (len(masks) // 2)
    return end > 0 and bool(np.array_equal(masks[1:end:2], ~masks[0:end:2]))


def check_design(masks, values, v_empty, v_full, n_players=None):
    """Validate an evaluated design; return (bool masks, float values, v_empty, v_full).

    Raises:
        ValueError: naming the first problem found.
    """
    masks = np.asarray(masks)
    if masks.ndim != 2:
        raise ValueError(f"masks must be 2-D (coalitions x players), got shape {masks.shape}")
    if masks.shape[0] == 0:
        raise ValueError("the design is empty: masks has no rows")
    if masks.dtype != bool:
        if not np.issubdtype(masks.dtype, np.number) or not np.isin(masks, (0, 1)).all():
            raise ValueError("masks must be boolean or contain only 0 and 1")
        masks = masks.astype(bool)
    m, n = masks.shape
    if n < 2:
        raise ValueError(f"masks must have at least 2 players (columns), got {n}")
    if n_players is not None and n != n_players:
        raise ValueError(f"masks has {n} columns but n_players is {n_players}")
    try:
        values = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"values must be numeric: {err}") from None
    if values.ndim != 1 or len(values) != m:
        raise ValueError(
            f"masks has {m} rows but values has shape {values.shape}; give one value per row"
        )
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"values must be finite; rows {bad[:10].tolist()} are NaN or infinite")
    anchors = []
    for name, anchor in (("v_empty", v_empty), ("v_full", v_full)):
        try:
            anchor = float(anchor)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {anchor!r}") from None
        if not math.isfinite(anchor):
            raise ValueError(f"{name} must be finite, got {anchor}")
        anchors.append(anchor)
    sizes = masks.sum(axis=1)
    anchor_rows = np.flatnonzero((sizes == 0) | (sizes == n))
    if anchor_rows.size:
        raise ValueError(
            f"rows {anchor_rows[:10].tolist()} are the empty or the full coalition; "
            "pass those as v_empty and v_full instead"
        )
    return masks, values, anchors[0], anchors[1]


def _bootstrap(point, masks, values, v_empty, v_full, paired, n_boot, seed):
    """Percentile interval from resampling rows (or pairs) with replacement."""
    units = _units(len(masks), paired)
    rng = np.random.default_rng(seed)
    replicates = np.full((n_boot, masks.shape[1]), np.nan)
    for b in range(n_boot):
        rows = units[rng.integers(0, len(units), len(units))].ravel()
        rows = rows[rows >= 0]
        try:
            replicates[b] = point(masks[rows], values[rows], v_empty, v_full)
        except IdentificationError:
            continue
    failed = int(np.isnan(replicates[:, 0]).sum())
    if failed:
        warnings.warn(
            f"{failed} of {n_boot} bootstrap resamples could not identify the values "
            "and were dropped; the intervals are unreliable at this budget",
            BootstrapWarning,
            stacklevel=3,
        )
    return replicates


def _wild_bootstrap(masks, values, v_empty, v_full, paired, n_boot, seed):
    """Percentile interval from a wild bootstrap of the within-size fit.

    The design is kept; each replicate refits y* = fit + e* s, where e* are
    the residuals inflated by 1 / (1 - leverage) (HC3: the fit has pulled
    them toward zero, most for the rows that weigh most) and s is a random
    sign per unit (a complementary pair in paired designs, a row otherwise).
    The fit is linear in y and ignores constants within a size, so a
    replicate is theta + P (e* s), with P the fit's fixed linear map.
    """
    n = masks.shape[1]
    counts = np.bincount(masks.sum(axis=1), minlength=n + 1)
    alone = np.flatnonzero(counts == 1)
    if alone.size:
        warnings.warn(
            f"{alone.size} rows are the only ones of their size (sizes {alone[:10].tolist()}); "
            "method 'stratified' learns nothing from them, and the intervals do not cover "
            "what those sizes would add: evaluate more coalitions",
            BootstrapWarning,
            stacklevel=3,
        )
    theta, inflated, projector, unit_of_row = _fit_parts("stratified", masks, values, v_empty, v_full, paired)
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_boot, unit_of_row.max() + 1))[:, unit_of_row]
    thetas = theta + (signs * inflated) @ projector.T
    return (v_full - v_empty) / n + thetas @ _zero_sum_basis(n).T


def _shrunk(masks, values, v_empty, v_full, method, paired) -> np.ndarray:
    """A regression method's values shrunk toward the equal split (empirical
    Bayes; see the module docstring). Inputs as for `estimate`, already checked."""
    n = masks.shape[1]
    theta, inflated, projector, unit_of_row = _fit_parts(method, masks, values, v_empty, v_full, paired)
    # Sandwich covariance of theta: the sum over units of (P e_u)(P e_u)^T.
    per_unit = np.zeros((unit_of_row.max() + 1, n - 1))
    np.add.at(per_unit, unit_of_row, (projector * inflated).T)
    covariance = per_unit.T @ per_unit
    prior = max(0.0, (theta @ theta - np.trace(covariance)) / (n - 1))
    if prior > 0.0:
        theta = prior * np.linalg.solve(prior * np.eye(n - 1) + covariance, theta)
    else:
        theta = np.zeros(n - 1)
    return (v_full - v_empty) / n + _zero_sum_basis(n) @ theta


def _fit_parts(method, masks, values, v_empty, v_full, paired):
    """A regression method's linear fit theta = P y, with what its error needs.

    Returns theta, the residuals inflated by 1 / (1 - leverage) (HC3: the fit
    has pulled them toward zero, most for the rows that weigh most; rows
    fitted exactly carry no information about the error and get 0), P, and
    the bootstrap unit (row, or complementary pair) of each row.
    """
    theta, (residual, leverage, projector) = _POINT_ESTIMATORS[method](
        masks, values, v_empty, v_full, with_parts=True
    )
    free = leverage < 1.0 - 1e-9
    inflated = np.where(free, residual / np.where(free, 1.0 - leverage, 1.0), 0.0)
    unit_of_row = np.empty(len(masks), dtype=int)
    for u, rows in enumerate(_units(len(masks), paired)):
        unit_of_row[rows[rows >= 0]] = u
    return theta, inflated, projector, unit_of_row


def _percentiles(replicates):
    """95% percentile interval of each column; NaN where every replicate failed."""
    tail = 100 * (1 - CI_LEVEL) / 2
    if np.isnan(replicates).all():
        nan = np.full(replicates.shape[1], np.nan)
        return nan, nan
    low, high = np.nanpercentile(replicates, [tail, 100 - tail], axis=0)
    return low, high


def _units(m: int, paired: bool) -> np.ndarray:
    """Bootstrap units as rows of an (units, 2) index array; -1 pads a single row."""
    if paired:
        units = np.arange(2 * (m // 2)).reshape(-1, 2)
        if m % 2:
            units = np.vstack([units, [m - 1, -1]])  # the cut pair, padded
        return units
    return np.stack([np.arange(m), np.full(m, -1)], axis=1)


def _kernelshap(masks, values, v_empty, v_full, with_parts=False):
    return _constrained_wls(masks, values - v_empty, v_full - v_empty, np.ones(len(masks)), with_parts)


def _leverage(masks, values, v_empty, v_full, with_parts=False):
    n = masks.shape[1]
    sizes = masks.sum(axis=1)
    counts = np.bincount(sizes, minlength=n)
    # Kernel mass of the row's size, shared among the design's rows of that size.
    weights = (n - 1) / (sizes * (n - sizes)) / counts[sizes]
    return _constrained_wls(masks, values - v_empty, v_full - v_empty, weights, with_parts)


def _stratified(masks, values, v_empty, v_full, with_parts=False):
    if with_parts:
        return _within_size_fit(masks, values - v_empty, with_parts=True)
    total = v_full - v_empty
    theta = _within_size_fit(masks, values - v_empty)
    return total / masks.shape[1] + _zero_sum_basis(masks.shape[1]) @ theta


def _within_size_fit(masks, y, with_parts=False):
    """Kernel-weighted least squares of y on the players, with a fixed effect per size.

    Writing the values as total/n + B theta (B an orthonormal basis of the
    vectors summing to zero) and centring y and the features z B on their
    means within each size, the fit is weighted least squares in theta, with
    the weights of `_within_size_weights`. A size with a single row centres
    it to zero: such a row tells nothing beyond its size's mean. With
    `with_parts`, also returns the residuals, each row's leverage (its size's
    mean included) and the linear map P with theta = P y.
    """
    m, n = masks.shape
    sizes = masks.sum(axis=1)
    counts = np.bincount(sizes, minlength=n + 1)
    weights = _within_size_weights(masks, sizes, counts)
    indicator = np.zeros((m, n + 1))
    indicator[np.arange(m), sizes] = 1.0
    per_size = np.maximum(counts, 1)
    features = masks.astype(float) @ _zero_sum_basis(n)
    root = np.sqrt(weights)
    # Centring leaves rounding noise where it should leave zeros, so the rank
    # is judged against the scale of the uncentred features.
    scale = np.linalg.norm(features * root[:, None], 2)
    features = features - (indicator.T @ features / per_size[:, None])[sizes]
    y = y - (indicator.T @ y / per_size)[sizes]
    singular = np.linalg.svd(features * root[:, None], compute_uv=False)
    rank = int((singular > scale * max(m, n) * np.finfo(float).eps).sum())
    theta = np.linalg.lstsq(features * root[:, None], y * root, rcond=None)[0]
    if rank < n - 1:
        raise IdentificationError(
            f"the {m} coalitions identify only {rank} of the {n - 1} free parameters "
            "once each coalition size is centred on its mean; evaluate more (or more "
            "varied) coalitions, with several of each size"
        )
    if not with_parts:
        return theta
    weighted = features * weights[:, None]
    inverse = np.linalg.pinv(weighted.T @ features)
    leverage = 1.0 / counts[sizes] + np.einsum("ij,jk,ik->i", weighted, inverse, features)
    return theta, (y - features @ theta, leverage, inverse @ weighted.T)


def _within_size_weights(masks, sizes, counts):
    """Row weights that make each size's centred scatter estimate its kernel share.

    The Shapley regression needs, for each size s, K_s = (n-1)/(s(n-s)) times
    the covariance of the coalitions of that size (divisor N_s = C(n, s)). The
    scatter of c_s rows around their own mean falls short of c_s times that
    covariance by a factor (c_s - 1)/c_s for a sample with repeats, and
    (c_s - 1) N_s / (c_s (N_s - 1)) for one without (a uniform c_s-subset).
    So a row gets K_s / (c_s - 1) if its size repeats a coalition, and
    K_s (N_s - 1) / (N_s (c_s - 1)) otherwise: K_s / N_s, the exact kernel
    weight, for a size that is fully enumerated. Rows alone in their size
    are centred to zero and get weight 0.
    """
    n = masks.shape[1]
    codes = masks.astype(np.int64) @ (1 << np.arange(n, dtype=np.int64)) if n < 63 else None
    weights = np.zeros(len(masks))
    for size in np.flatnonzero(counts > 1):
        rows = sizes == size
        kernel = (n - 1) / (size * (n - size))
        if codes is not None:
            repeats = len(np.unique(codes[rows])) < counts[size]
        else:
            repeats = len(np.unique(masks[rows], axis=0)) < counts[size]
        shortfall = 1.0 if repeats else 1.0 - 1.0 / math.comb(n, int(size))
        weights[rows] = kernel * shortfall / (counts[size] - 1)
    return weights


def _constrained_wls(masks, y, total, weights, with_parts=False):
    """argmin sum_r w_r (y_r - z_r . phi)^2 subject to sum(phi) = total.

    Writing phi = total/n + B theta with B an orthonormal basis of the vectors
    summing to zero turns the problem into ordinary weighted least squares in
    theta, so efficiency holds exactly. With `with_parts`, returns theta and
    (residuals, leverages, P) instead, P the linear map with theta = P t.
    """
    n = masks.shape[1]
    z = masks.astype(float)
    basis = _zero_sum_basis(n)
    root = np.sqrt(weights)
    features = z @ basis
    target = y - z.sum(axis=1) * total / n
    design = features * root[:, None]
    theta, _, rank, _ = np.linalg.lstsq(design, target * root, rcond=None)
    if rank < n - 1:
        raise IdentificationError(
            f"the {len(masks)} coalitions identify only {rank} of the {n - 1} free "
            "parameters; evaluate more (or more varied) coalitions"
        )
    if not with_parts:
        return total / n + basis @ theta
    projector = np.linalg.pinv(design) * root[None, :]
    leverage = np.einsum("ij,ji->i", features, projector)
    return theta, (target - features @ theta, leverage, projector)


@lru_cache(maxsize=None)
def _zero_sum_basis(n: int) -> np.ndarray:
    basis = null_space(np.ones((1, n)))
    basis.setflags(write=False)
    return basis


def _banzhaf(masks, values, v_empty, v_full):
    """MSR estimate of E[v(S) | i in S] - E[v(S) | i not in S] for uniform S.

    The design excludes the anchors, so they enter with their exact weight:
    given i in S, a uniform subset is the full coalition with probability
    2^-(n-1), and otherwise a uniform non-full subset containing i, which is
    what the design's rows containing i are (likewise for the empty one).
    """
    m, n = masks.shape
    z = masks.astype(float)
    inside = z.sum(axis=0)
    outside = m - inside
    missing = np.flatnonzero((inside == 0) | (outside == 0))
    if missing.size:
        raise IdentificationError(
            f"players {missing[:10].tolist()} are in every or in no coalition of the "
            "design; evaluate more coalitions"
        )
    mean_in = values @ z / inside
    mean_out = values @ (1 - z) / outside
    anchor = 0.5 ** (n - 1)
    return (anchor * v_full + (1 - anchor) * mean_in) - (anchor * v_empty + (1 - anchor) * mean_out)


def _loo(masks, values, v_empty, v_full):
    m, n = masks.shape
    left_out = np.argmin(masks, axis=1)
    if m != n or (masks.sum(axis=1) != n - 1).any() or len(np.unique(left_out)) != n:
        raise IdentificationError(
            f"method 'loo' needs exactly the {n} leave-one-out coalitions, each once; "
            "use scheme 'loo'"
        )
    value = np.empty(n)
    value[left_out] = v_full - values
    return value


def _exact(masks, values, v_empty, v_full):
    """phi_i = sum over S containing i of w(|S|-1) v(S) - sum over S without i of w(|S|) v(S).

    w(s) = s! (n-1-s)! / n! is the probability that i joins exactly the s
    players before it in a uniform random order. Rearranged for memory:
    phi_i = sum over S containing i of (w(|S|-1) + w(|S|)) v(S) - sum over
    all S of w(|S|) v(S); the anchors add (v(full) - v(empty)) / n, since
    w(n-1) = w(0) = 1/n.
    """
    m, n = masks.shape
    if n > EXACT_MAX_PLAYERS:
        raise ValueError(f"method 'exact' is limited to {EXACT_MAX_PLAYERS} players, got {n}")
    codes = np.zeros(m, dtype=np.int64)
    for player in range(n):
        codes |= masks[:, player].astype(np.int64) << player
    distinct = len(np.unique(codes))
    if m != 2**n - 2 or distinct != m:
        raise IdentificationError(
            f"method 'exact' needs all {2**n - 2} coalitions of {n} players, each once; "
            f"got {m} rows ({distinct} distinct); use scheme 'exact'"
        )
    sizes = masks.sum(axis=1)
    w = 1.0 / (n * np.array([math.comb(n - 1, s) for s in range(n)]))
    joined = values * w[sizes - 1]  # v(S) weighted as S = T + i for a player i in S
    before = values * w[sizes]  # v(S) weighted as the coalition a player outside S joins
    inside = np.array([(joined + before)[masks[:, player]].sum() for player in range(n)])
    return inside - before.sum() + (v_full - v_empty) / n


_POINT_ESTIMATORS = {
    "kernelshap": _kernelshap,
    "leverage": _leverage,
    "stratified": _stratified,
    "banzhaf": _banzhaf,
    "loo": _loo,
    "exact": _exact,
}
