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
  (g(n) - g(0)) / n for everybody, so this removes the part of v that depends
  on size alone, which is large when v grows with the amount of data, from
  the sampling error. Weights are the leverage method's: each size's kernel
  mass shared among its rows, i.e. exact kernel weights for a size that is
  fully enumerated. Exact for additive games, for games with interactions of
  order at most 2 on designs of complementary pairs, and on the full
  enumeration; consistent otherwise.
* ``stratified_shrink``: ``stratified``, then the deviations of the values
  from the equal split (v(full) - v(empty)) / n are multiplied by a factor in
  [0, 1] estimated from the data (positive-part James-Stein in Bock's form,
  with a design-based sandwich variance of the fit). Biased toward the equal
  split, in exchange for lower error when the sampling error is large
  compared with the differences between players; the ranking is unchanged
  and the values still add up to v(full) - v(empty).
* ``banzhaf``: maximum sample reuse (Wang & Jia, 2023): mean v(S) over rows
  containing i minus mean v(S) over rows without i, with the anchors mixed in
  at their probability under uniform sampling, which keeps it unbiased although
  the design leaves them out.
* ``loo``: leave-one-out, v(full) - v(N \\ {i}).
* ``exact``: exact Shapley values from all 2^n - 2 coalitions and the anchors.
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
SHAPLEY_METHODS = ("kernelshap", "leverage", "stratified", "stratified_shrink", "exact")
DEFAULT_SCHEME = {
    "kernelshap": "kernel_paired",
    "leverage": "leverage",
    "stratified": "stratified",
    "stratified_shrink": "stratified",
    "banzhaf": "banzhaf",
    "loo": "loo",
    "exact": "exact",
}
# Methods without sampling error: their intervals have zero width.
DETERMINISTIC_METHODS = ("loo", "exact")
CI_LEVEL = 0.95


class IdentificationError(ValueError):
    """The design does not determine the values (too few or degenerate coalitions)."""


class BootstrapWarning(RuntimeWarning):
    """Some bootstrap resamples could not identify the values and were dropped."""


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
            bootstrap then resamples together; None detects it.
        n_players: if given, the number of columns `masks` must have.

    Returns:
        DataFrame indexed by player 0..n-1 with columns ``value``, ``ci_low``
        and ``ci_high``. Intervals are 95% percentile intervals from resampling
        rows (pairs in paired designs) with replacement; the stratified
        methods resample within each coalition size (pair class in paired
        designs), keeping the number of rows of each. The deterministic
        methods ``loo`` and ``exact`` report ci_low = ci_high = value.

    Raises:
        ValueError: malformed inputs or unknown method, before any work.
        IdentificationError: the design cannot identify the values.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    masks, values, v_empty, v_full = check_design(masks, values, v_empty, v_full, n_players)
    for name, number in (("n_boot", n_boot), ("seed", seed)):
        if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {number!r}")
    if paired is None:
        paired = is_paired(masks)
    elif paired and not is_paired(masks):
        raise ValueError("paired=True but row 2k+1 is not the complement of row 2k for every k")

    point = _POINT_ESTIMATORS[method]
    value = point(masks, values, v_empty, v_full)
    if method in DETERMINISTIC_METHODS:
        low = high = value
    elif n_boot == 0:
        low = high = np.full_like(value, np.nan)
    else:
        by_stratum = method in STRATIFIED_METHODS
        low, high = _bootstrap(point, masks, values, v_empty, v_full, paired, n_boot, seed, by_stratum)
    return pd.DataFrame(
        {"value": value, "ci_low": low, "ci_high": high},
        index=pd.RangeIndex(masks.shape[1], name="player"),
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


def _bootstrap(point, masks, values, v_empty, v_full, paired, n_boot, seed, by_stratum=False):
    """Percentile interval from resampling rows (or pairs) with replacement.

    With `by_stratum`, units are resampled within their stratum (coalition
    size, or pair class in paired designs), so every resample has the
    design's number of rows of each size.
    """
    units = _units(len(masks), paired)
    if by_stratum:
        strata = _unit_strata(masks, units)
    else:
        strata = [np.arange(len(units))]
    rng = np.random.default_rng(seed)
    replicates = np.full((n_boot, masks.shape[1]), np.nan)
    for b in range(n_boot):
        picks = np.concatenate([group[rng.integers(0, len(group), len(group))] for group in strata])
        rows = units[picks].ravel()
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
    if failed == n_boot:
        nan = np.full(masks.shape[1], np.nan)
        return nan, nan
    tail = 100 * (1 - CI_LEVEL) / 2
    low, high = np.nanpercentile(replicates, [tail, 100 - tail], axis=0)
    return low, high


def _units(m: int, paired: bool) -> np.ndarray:
    """Resampling units as rows of a (units, 2) index array; -1 pads a single row."""
    if paired:
        units = np.arange(2 * (m // 2)).reshape(-1, 2)
        if m % 2:
            units = np.vstack([units, [m - 1, -1]])  # the cut pair, padded
        return units
    return np.stack([np.arange(m), np.full(m, -1)], axis=1)


def _unit_strata(masks: np.ndarray, units: np.ndarray) -> list:
    """Unit indices grouped by stratum: the pair class min(|S|, n - |S|) of a
    whole pair, the size |S| of a single row. A cut pair is a stratum of its
    own, placed last so that the resampled pairs stay aligned."""
    n = masks.shape[1]
    sizes = masks[units[:, 0]].sum(axis=1)
    whole = units[:, 1] >= 0
    keys = np.where(whole, np.minimum(sizes, n - sizes), sizes + (n + 1))
    if not whole.all() and whole.any():
        keys[~whole] = 2 * n + 2  # the cut pair of a paired design
    return [np.flatnonzero(keys == key) for key in np.unique(keys)]


def _kernelshap(masks, values, v_empty, v_full):
    return _constrained_wls(masks, values - v_empty, v_full - v_empty, np.ones(len(masks)))


def _leverage(masks, values, v_empty, v_full):
    n = masks.shape[1]
    sizes = masks.sum(axis=1)
    counts = np.bincount(sizes, minlength=n)
    # Kernel mass of the row's size, shared among the design's rows of that size.
    weights = (n - 1) / (sizes * (n - sizes)) / counts[sizes]
    return _constrained_wls(masks, values - v_empty, v_full - v_empty, weights)


def _stratified(masks, values, v_empty, v_full):
    total = v_full - v_empty
    theta, _ = _within_size_fit(masks, values - v_empty)
    return total / masks.shape[1] + _zero_sum_basis(masks.shape[1]) @ theta


def _stratified_shrink(masks, values, v_empty, v_full):
    n = masks.shape[1]
    total = v_full - v_empty
    theta, fit = _within_size_fit(masks, values - v_empty)
    factor = _shrink_factor(masks, theta, fit)
    return total / n + _zero_sum_basis(n) @ (factor * theta)


def _within_size_fit(masks, y):
    """Kernel-weighted least squares of y on the players, with a fixed effect per size.

    Rows of size s get weight (n-1)/(s(n-s)) / count_s. Writing the values as
    total/n + B theta (B an orthonormal basis of the vectors summing to zero)
    and centring y and the features z B on their means within each size, the
    fit is ordinary weighted least squares in theta. Returns theta and the
    pieces `_shrink_factor` needs.
    """
    m, n = masks.shape
    sizes = masks.sum(axis=1)
    counts = np.bincount(sizes, minlength=n + 1)
    weights = (n - 1) / (sizes * (n - sizes)) / counts[sizes]
    basis = _zero_sum_basis(n)
    features = masks.astype(float) @ basis
    indicator = np.zeros((m, n + 1))
    indicator[np.arange(m), sizes] = 1.0
    per_size = np.maximum(counts, 1)[:, None]
    features = features - (indicator.T @ features / per_size)[sizes]
    y = y - (indicator.T @ y / per_size[:, 0])[sizes]
    root = np.sqrt(weights)
    theta, _, rank, _ = np.linalg.lstsq(features * root[:, None], y * root, rcond=None)
    if rank < n - 1:
        raise IdentificationError(
            f"the {m} coalitions identify only {rank} of the {n - 1} free parameters "
            "once each coalition size is centred on its mean; evaluate more (or more "
            "varied) coalitions, with several of each size"
        )
    return theta, (features, y, weights)


def _shrink_factor(masks, theta, fit):
    """Positive-part James-Stein factor (Bock's form) for the fitted theta.

    The covariance of theta is the sandwich M^-1 V M^-1, M = X'WX, with V
    the design-based variance of the score sum_r w_r x_r e_r: the units
    (complementary pairs in paired designs, rows otherwise) are treated as a
    sample without replacement within their stratum, so V sums, over strata,
    (1 - distinct/capacity) * k/(k-1) * the scatter of the k unit scores. A
    fully enumerated stratum thus adds nothing, and the full enumeration is
    left exact. Factor: 1 - (tr C - 2 lambda_max C) / |theta|^2, clipped to
    [0, 1]; 1 when tr C <= 2 lambda_max C, where Bock's condition fails.
    """
    features, y, weights = fit
    n = masks.shape[1]
    norm = float(theta @ theta)
    if norm == 0.0:
        return 1.0
    scores = features * (weights * (y - features @ theta))[:, None]
    units = _units(len(masks), is_paired(masks))
    unit_scores = scores[units[:, 0]] + np.where(units[:, 1:] >= 0, scores[units[:, 1]], 0.0)
    variance = np.zeros((n - 1, n - 1))
    for group in _unit_strata(masks, units):
        k = len(group)
        if k < 2:
            continue
        members = units[group]
        keys = {
            tuple(sorted(masks[row].tobytes() for row in unit if row >= 0)) for unit in members
        }
        sizes = masks[members[:, 0]].sum(axis=1)
        size = int(min(sizes[0], n - sizes[0])) if (members[:, 1] >= 0).all() else int(sizes[0])
        capacity = math.comb(n, size)
        if (members[:, 1] >= 0).all() and 2 * size == n:
            capacity //= 2
        sampled = 1.0 - min(1.0, len(keys) / capacity)
        spread = unit_scores[group] - unit_scores[group].mean(axis=0)
        variance += sampled * k / (k - 1) * (spread.T @ spread)
    inverse = np.linalg.pinv((features * weights[:, None]).T @ features)
    covariance = inverse @ variance @ inverse
    eigen = np.linalg.eigvalsh(covariance)
    excess = float(eigen.sum() - 2 * eigen[-1])
    if excess <= 0:
        return 1.0
    return max(0.0, 1.0 - excess / norm)


def _constrained_wls(masks, y, total, weights):
    """argmin sum_r w_r (y_r - z_r . phi)^2 subject to sum(phi) = total.

    Writing phi = total/n + B theta with B an orthonormal basis of the vectors
    summing to zero turns the problem into ordinary weighted least squares in
    theta, so efficiency holds exactly.
    """
    n = masks.shape[1]
    z = masks.astype(float)
    basis = _zero_sum_basis(n)
    root = np.sqrt(weights)
    design = (z @ basis) * root[:, None]
    target = (y - z.sum(axis=1) * total / n) * root
    theta, _, rank, _ = np.linalg.lstsq(design, target, rcond=None)
    if rank < n - 1:
        raise IdentificationError(
            f"the {len(masks)} coalitions identify only {rank} of the {n - 1} free "
            "parameters; evaluate more (or more varied) coalitions"
        )
    return total / n + basis @ theta


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
    "stratified_shrink": _stratified_shrink,
    "banzhaf": _banzhaf,
    "loo": _loo,
    "exact": _exact,
}
