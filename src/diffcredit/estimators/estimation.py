"""`estimate`: a method's values with their 95% bootstrap intervals, optionally shrunk.

Shrinkage (``shrink=True``, for the methods in `SHRINKABLE_METHODS`: linear
regression fits): the estimate's deviations from the equal split,
d = phi - (v(full) - v(empty)) / n, are replaced by their posterior mean under
the empirical-Bayes model d ~ N(0, tau^2 I) on the zero-sum subspace, with the
estimate's sampling covariance Sigma from the fit's HC3 residuals (sandwich, by
complementary pair in paired designs) and tau^2 by the method of moments,
max(0, (|d|^2 - tr Sigma) / (n - 1)): d is multiplied by
tau^2 (tau^2 I + Sigma)^-1 (James & Stein, 1961; Efron & Morris, 1973). The
values still sum to v(full) - v(empty), shrink the most where the design says
least, and approach the unshrunk values as Sigma vanishes with the budget; a
design that cannot tell the contributors apart at all gives the equal split.
It trades bias for variance: worth it at small budgets and on noisy
measurements, where Sigma is large against the spread of the values.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .base import IdentificationError, Method
from .common import check_design, is_paired, zero_sum_basis
from .methods import SHRINKABLE_METHODS, get_method
from .training_noise import training_draws

CI_LEVEL = 0.95


class BootstrapWarning(RuntimeWarning):
    """The bootstrap intervals are unreliable at this budget: some resamples could
    not identify the values and were dropped, or the design teaches a Shapley fit
    nothing about some coalition sizes (none of them, or for ``stratified`` a
    single one), so the fit extrapolates to them, an error no resample can show."""


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
    training: tuple | None = None,
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
            of the error that a finite sample of images adds, rows and anchors:
            bootstrap replicate b adds draw b mod r; for the deterministic methods
            the interval is this error. (A bootstrap cannot see the part shared by
            the coalitions that hold a contributor, nor, in the ``stratified``
            design's enumerated strata, any of it; where its residuals do hold
            some, that part is counted twice and the interval errs wide.)
        training: (variance, df) of the rows' training randomness, from rows
            trained twice (`training_noise.pooled_variance`): each replicate
            also adds the values' error under independent errors of that
            variance on every row (`training_noise.training_draws`). Needs
            n_boot > 0 (its draws are the replicates).

    Returns:
        DataFrame indexed by player 0..n-1 with columns ``value``, ``ci_low``
        and ``ci_high``. Intervals are 95% percentile intervals from resampling
        rows (pairs in paired designs) with replacement; for a method with the
        wild bootstrap (``stratified``), from a bootstrap that keeps the design
        and flips the signs of the residuals of rows (pairs in paired designs).
        The deterministic methods (``loo``, ``exact``) report
        ci_low = ci_high = value unless `noise` is given.
        With ``shrink``, the intervals are those of the unshrunk values,
        widened where needed to contain the shrunk value: the bootstrap
        intervals of a shrunk estimate are centred on its bias and cover
        the true values less often.

    Raises:
        ValueError: malformed inputs or unknown method, before any work.
        IdentificationError: fewer rows than the method's minimum budget for a
            design like this one (before any work; `check_rows`), or a design
            that cannot identify the values.
    """
    value, replicates = estimate_draws(masks, values, v_empty, v_full, method, seed, n_boot, paired,
                                       n_players=n_players, shrink=shrink, noise=noise, training=training)
    if replicates is None:
        low = high = np.full_like(value, np.nan)
    else:
        low, high = _percentiles(replicates)
    if shrink:
        low, high = np.minimum(low, value), np.maximum(high, value)
    return values_frame(value, low, high)


def values_frame(value, low, high) -> pd.DataFrame:
    """What `estimate` returns: ``value``, ``ci_low``, ``ci_high`` indexed by player."""
    return pd.DataFrame({"value": value, "ci_low": low, "ci_high": high},
                        index=pd.RangeIndex(len(value), name="player"))


def estimate_draws(masks, values, v_empty, v_full, method, seed=0, n_boot=200, paired=None, *,
                   n_players=None, shrink=False, noise=None, training=None):
    """`estimate`'s point values (n,) and its replicates (n_boot, n) before the
    percentiles: one row per bootstrap replicate, or the value plus each noise draw
    for a deterministic method; None where there are no intervals (n_boot = 0)."""
    record = get_method(method)
    check_shrink(method, shrink)
    masks, values, v_empty, v_full = check_design(masks, values, v_empty, v_full, n_players)
    for name, number in (("n_boot", n_boot), ("seed", seed)):
        if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {number!r}")
    if paired is None:
        paired = is_paired(masks)
    elif paired and not is_paired(masks):
        raise ValueError("paired=True but row 2k+1 is not the complement of row 2k for every k")
    check_rows(record, masks, is_paired(masks))

    if shrink:
        value = _shrunk(record, masks, values, v_empty, v_full, paired)
    else:
        value = record.point(masks, values, v_empty, v_full)
    errors = _noise_draws(record.point, masks, noise)
    trained = None
    if training is not None and n_boot:
        trained = training_draws(record.point, masks, values, v_empty, v_full, *training, n_draws=n_boot, seed=seed)
    if record.deterministic:
        if trained is None:
            return value, (value[None, :] if errors is None else value + errors)
        return value, value + trained + (0.0 if errors is None else errors[np.arange(n_boot) % len(errors)])
    if n_boot == 0:
        return value, None
    if record.efficient:
        _warn_unused_sizes(masks, record)
    if record.bootstrap == "wild":
        replicates = _wild_bootstrap(record, masks, values, v_empty, v_full, paired, n_boot, seed)
    elif record.bootstrap == "wild_refit":
        replicates = _wild_refit_bootstrap(record, masks, values, v_empty, v_full, paired, n_boot, seed)
    else:
        replicates = _bootstrap(record.point, masks, values, v_empty, v_full, paired, n_boot, seed)
    if errors is not None:
        replicates = replicates + errors[np.arange(len(replicates)) % len(errors)]
    if trained is not None:
        replicates = replicates + trained
    return value, replicates


def check_rows(record: Method, masks, paired: bool) -> None:
    """Refuse, before any fit, a design with fewer rows than the method's minimum
    budget for designs like it (`Method.min_rows`). The methods with a fixed
    design (``loo``, ``exact``) check it in their fit, before any work.

    Raises:
        IdentificationError: naming the budget, the method and the minimum.
    """
    if record.deterministic:
        return  # loo and exact take one fixed design, and their fits refuse any other, naming it
    m, n = masks.shape
    needed, schemes = record.min_rows(n, paired)
    if m < needed:
        kind = "a paired" if paired else "an unpaired"
        raise IdentificationError(
            f"budget {m} is too small for method {record.name!r} with {n} players: it needs at least "
            f"{needed} coalitions on {kind} design (schemes {', '.join(schemes)}); evaluate more "
            "coalitions, several times the minimum for a usable estimate (docs/estimators.md)"
        )


def _warn_unused_sizes(masks, record: Method) -> None:
    """Warn that a Shapley design teaches the fit nothing about some coalition sizes:
    it has none of them, or (method ``stratified``, which centres each size on its
    mean) a single one. The fit then takes their part of the values from the sizes
    it has, which is exact only for games it models exactly (for ``stratified``,
    additive plus a function of size, or paired designs and interactions of order
    at most 2). That error is the same in every resample, so the intervals cannot
    hold it: ``stratified`` at budget 2n (sizes 1 and n - 1 only) has intervals of
    zero width."""
    n = masks.shape[1]
    counts = np.bincount(masks.sum(axis=1), minlength=n)[1:]
    alone = np.flatnonzero(counts == 1) + 1 if record.bootstrap in ("wild", "wild_refit") else np.array([], dtype=int)
    missing = np.flatnonzero(counts == 0) + 1
    unused = np.union1d(alone, missing)
    if not unused.size:
        return
    sizes = ", ".join(map(str, unused[:10])) + (", ..." if unused.size > 10 else "")
    why = [f"{k} with {what}" for k, what in ((missing.size, "none"), (alone.size, "a single coalition")) if k]
    warnings.warn(
        f"{unused.size} of the {n - 1} coalition sizes teach method {record.name!r} nothing (sizes {sizes}: "
        f"{' and '.join(why)}); the fit extrapolates their part of the values, an error the intervals do not "
        "include: evaluate more coalitions",
        BootstrapWarning,
        stacklevel=3,
    )


def check_shrink(method: str, shrink) -> None:
    """Refuse a shrink flag that is not a bool, or shrinkage for a method without it."""
    if not isinstance(shrink, (bool, np.bool_)):
        raise ValueError(f"shrink must be True or False, got {shrink!r}")
    if shrink and not get_method(method).shrinkable:
        raise ValueError(
            f"shrink is defined for the methods {', '.join(SHRINKABLE_METHODS)}, not for "
            f"{method!r}; drop shrink or use one of those methods"
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


def _bootstrap(point, masks, values, v_empty, v_full, paired, n_boot, seed):
    """Replicates of the values from resampling rows (or pairs) with replacement."""
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


def _wild_bootstrap(record: Method, masks, values, v_empty, v_full, paired, n_boot, seed):
    """Replicates of the values from a wild bootstrap of a fit that ignores
    constants within a size (method ``stratified``).

    The design is kept; each replicate refits y* = fit + e* s, where e* are
    the residuals inflated by 1 / (1 - leverage) (HC3: the fit has pulled
    them toward zero, most for the rows that weigh most) and s is a random
    sign per unit (a complementary pair in paired designs, a row otherwise).
    The fit is linear in y and ignores constants within a size, so a
    replicate is theta + P (e* s), with P the fit's fixed linear map.
    """
    n = masks.shape[1]
    theta, inflated, projector, unit_of_row = _fit_parts(record, masks, values, v_empty, v_full, paired)
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_boot, unit_of_row.max() + 1))[:, unit_of_row]
    thetas = theta + (signs * inflated) @ projector.T
    return (v_full - v_empty) / n + thetas @ zero_sum_basis(n).T


def _wild_refit_bootstrap(record: Method, masks, values, v_empty, v_full, paired, n_boot, seed):
    """Replicates of a method that starts from a linear fit (``stratified_tree``): the
    design is kept, each replicate is y* = fit + e* s with the linear fit's HC3-inflated
    residuals e* and a random sign per unit (as `_wild_bootstrap`), and the whole
    method is refitted on y*. Resampling rows would leave a stratified fit whole sizes
    short, and the trees' own residuals are near zero (they interpolate)."""
    base = get_method(record.base)
    parts = base.parts(masks, values, v_empty, v_full)
    _, inflated, _, unit_of_row = _fit_parts(base, masks, values, v_empty, v_full, paired, parts)
    fitted = values - parts[1][0]
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_boot, unit_of_row.max() + 1))[:, unit_of_row]
    return np.stack([record.point(masks, fitted + s * inflated, v_empty, v_full) for s in signs])


def _shrunk(record: Method, masks, values, v_empty, v_full, paired) -> np.ndarray:
    """A linear fit's values shrunk toward the equal split (empirical Bayes; see
    the module docstring). Inputs as for `estimate`, already checked."""
    n = masks.shape[1]
    theta, inflated, projector, unit_of_row = _fit_parts(record, masks, values, v_empty, v_full, paired)
    # Sandwich covariance of theta: the sum over units of (P e_u)(P e_u)^T.
    per_unit = np.zeros((unit_of_row.max() + 1, n - 1))
    np.add.at(per_unit, unit_of_row, (projector * inflated).T)
    covariance = per_unit.T @ per_unit
    prior = max(0.0, (theta @ theta - np.trace(covariance)) / (n - 1))
    if prior > 0.0:
        theta = prior * np.linalg.solve(prior * np.eye(n - 1) + covariance, theta)
    else:
        theta = np.zeros(n - 1)
    return (v_full - v_empty) / n + zero_sum_basis(n) @ theta


def _fit_parts(record: Method, masks, values, v_empty, v_full, paired, parts=None):
    """A linear fit theta = P y, with what its error needs.

    Returns theta, the residuals inflated by 1 / (1 - leverage) (HC3: the fit
    has pulled them toward zero, most for the rows that weigh most; rows
    fitted exactly carry no information about the error and get 0), P, and
    the bootstrap unit (row, or complementary pair) of each row. `parts`: the
    record's `parts` of this design, when the caller has them already.
    """
    theta, (residual, leverage, projector) = parts or record.parts(masks, values, v_empty, v_full)
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
