"""What the evaluations share: random subsets of contributors, intervals, correlations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..values import read_scores, read_values


def subset_size(n: int, fraction: float) -> int:
    """round(fraction * n), kept within 1 .. n - 1."""
    return min(max(int(round(fraction * n)), 1), n - 1)


def sample_subsets(n: int, alpha: float, count: int, seed: int) -> np.ndarray:
    """(count, n) bool: distinct uniformly random subsets of round(alpha * n) contributors.

    Rows are prefix-stable: more subsets append rows and keep the earlier ones.
    """
    k = subset_size(n, alpha)
    if count > math.comb(n, k):
        raise ValueError(f"{count} distinct subsets of {k} of {n} contributors do not exist "
                         f"(at most {math.comb(n, k)}); lower evaluations.lds.subsets or change its alpha")
    rng = np.random.default_rng([seed, n, k])
    seen, rows = set(), []
    while len(rows) < count:
        members = tuple(sorted(rng.choice(n, size=k, replace=False).tolist()))
        if members in seen:
            continue
        seen.add(members)
        row = np.zeros(n, dtype=bool)
        row[list(members)] = True
        rows.append(row)
    return np.array(rows, dtype=bool).reshape(count, n)


def t_interval(x, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of independent replicates (nan when fewer than 2)."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    mean = float(x.mean()) if len(x) else float("nan")
    if len(x) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return mean, mean - half, mean + half


def _corr(a, b, kind: str) -> float:
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float((stats.pearsonr if kind == "pearson" else stats.spearmanr)(a, b)[0])


def pearson(a, b) -> float:
    return _corr(a, b, "pearson")


def spearman(a, b) -> float:
    return _corr(a, b, "spearman")


def pearson_within_size(a, b, sizes) -> float:
    """Pearson of a and b within coalition sizes: each centred on its size's mean, over
    the sizes holding two rows or more. What two games share beyond the size trend that
    makes their plain correlation high whatever they say about the contributors."""
    a, b, sizes = (np.asarray(x, dtype=float) for x in (a, b, sizes))
    keep = np.zeros(len(a), dtype=bool)
    ca, cb = np.zeros(len(a)), np.zeros(len(b))
    for size in np.unique(sizes):
        at = sizes == size
        if at.sum() > 1:
            keep |= at
            ca[at], cb[at] = a[at] - a[at].mean(), b[at] - b[at].mean()
    return pearson(ca[keep], cb[keep]) if keep.sum() >= 3 else float("nan")


def subset_bootstrap(predicted: np.ndarray, actual: np.ndarray, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the seed-mean Spearman x 100 over subsets resampled with
    replacement (resamples where a side is constant are dropped)."""
    draws = subset_draws(predicted, actual, n_boot, seed)
    return percentile_interval(draws, n_boot, level)


def paired_subset_bootstrap(predicted: np.ndarray, baseline: np.ndarray, actual: np.ndarray, n_boot: int = 2000,
                            seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the difference of two methods' seed-mean Spearman x 100
    (`predicted`'s minus `baseline`'s), both computed on the same resampled subsets:
    the subsets' common luck cancels, as it does not between two unpaired intervals."""
    diff = subset_draws(predicted, actual, n_boot, seed) - subset_draws(baseline, actual, n_boot, seed)
    return percentile_interval(diff, n_boot, level)


def subset_draws(predicted: np.ndarray, actual: np.ndarray, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """(n_boot,) seed-mean Spearman x 100 on subsets resampled with replacement; the
    resamples depend only on (seed, number of subsets), so two methods' draws pair up.
    NaN where a side is constant; empty for fewer than three subsets."""
    from scipy import stats

    s = len(predicted)
    if s < 3 or n_boot < 1:
        return np.array([])
    idx = np.random.default_rng([seed, s]).integers(0, s, size=(n_boot, s))

    def rho(a, b):  # row-wise Pearson of (B, S) rank arrays
        a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
        den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, (a * b).sum(1) / den, np.nan)

    rp = stats.rankdata(predicted[idx], axis=1)
    return 100 * np.mean([rho(rp, stats.rankdata(actual[idx, j], axis=1)) for j in range(actual.shape[1])], axis=0)


def percentile_interval(draws: np.ndarray, n_boot: int = 2000, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of the finite draws; NaN when fewer than half of the
    `n_boot` resamples gave one."""
    draws = draws[np.isfinite(draws)]
    if len(draws) < max(n_boot / 2, 1):
        return float("nan"), float("nan")
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_all_scores(paths) -> list[dict]:
    return [read_scores(p) for p in paths]


def labelled_values(paths, labels) -> pd.DataFrame:
    """The values tables of several methods, each row labelled with its method."""
    return pd.concat([read_values(p).assign(method=label) for p, label in zip(paths, labels)], ignore_index=True)
