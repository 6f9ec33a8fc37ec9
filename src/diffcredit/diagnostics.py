"""Diagnostics for estimated values: efficiency, convergence, rank stability.

Random designs are prefix-stable, so the first k rows of a design are exactly
the design a budget of k would have drawn. Re-estimating on growing prefixes
therefore shows what a smaller budget would have reported, and whether the
values (and the ranking of contributors) have settled.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .coalitions import min_budget
from .estimators import (
    BootstrapWarning,
    IdentificationError,
    Method,
    check_design,
    estimate,
    get_method,
    is_paired,
)


def efficiency_gap(values_df: pd.DataFrame, v_empty: float, v_full: float) -> float:
    """sum(values) - (v_full - v_empty): zero (to float tolerance) for Shapley values."""
    return float(values_df["value"].sum() - (v_full - v_empty))


def convergence(
    masks,
    values,
    v_empty: float,
    v_full: float,
    method: str,
    n_points: int = 10,
    seed: int = 0,
    *,
    n_boot: int = 200,
    shrink: bool = False,
) -> pd.DataFrame:
    """Values re-estimated on growing prefixes of the design.

    Prefix lengths are spread evenly from the method's minimum budget to the
    whole design (even lengths for paired designs, so no pair is cut; the whole
    design is always included). The minimum is that of the scheme the method
    takes a design like this (paired or not) to come from (`Method.scheme_for`).
    A prefix that does not identify the values is skipped, and intervals come
    from the resamples that do (see `estimators.estimate`). The deterministic
    methods (``loo``, ``exact``) have a single point: the whole design. A method
    with a costly fit (``tree``) takes at most its `convergence_boot` resamples
    per prefix, so its intervals there are rougher than the estimate's.

    Returns:
        Long DataFrame with columns ``prefix``, ``player``, ``value``,
        ``ci_low``, ``ci_high`` and ``ci_width``.
    """
    record = get_method(method)
    masks, values, v_empty, v_full = check_design(masks, values, v_empty, v_full)
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 1:
        raise ValueError(f"n_points must be a positive integer, got {n_points!r}")
    m, n = masks.shape
    paired = is_paired(masks)
    prefixes = _prefix_lengths(m, n, record, paired, n_points)
    if record.convergence_boot is not None:
        n_boot = min(n_boot, record.convergence_boot)

    frames = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BootstrapWarning)
        for prefix in prefixes:
            try:
                result = estimate(masks[:prefix], values[:prefix], v_empty, v_full, method,
                                  seed=seed, n_boot=n_boot, paired=paired, shrink=shrink)
            except IdentificationError:
                continue
            frames.append(result.reset_index().assign(prefix=prefix))
    if not frames:
        raise IdentificationError(f"no prefix of the {m}-row design identifies the values")
    out = pd.concat(frames, ignore_index=True)
    out["ci_width"] = out["ci_high"] - out["ci_low"]
    return out[["prefix", "player", "value", "ci_low", "ci_high", "ci_width"]]


def _prefix_lengths(m: int, n: int, record: Method, paired: bool, n_points: int) -> list[int]:
    if record.deterministic:
        return [m]
    lowest = min_budget(record.scheme_for(paired), record.name, n)
    if lowest > m:
        raise ValueError(f"the design has {m} rows but method {record.name!r} needs at least {lowest}")
    lengths = np.linspace(lowest, m, n_points).round().astype(int)
    if paired:
        lengths = 2 * (lengths // 2)
    return sorted(set(lengths[lengths >= lowest].tolist()) | {m})


def rank_stability(conv_df: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """Agreement of each prefix's ranking with the ranking of the largest prefix.

    Returns:
        DataFrame with one row per prefix: ``prefix``, the Jaccard overlap of
        the top-k (``top_jaccard``) and of the bottom-k (``bottom_jaccard``)
        contributors (1 = the same set), and the Spearman correlation of all
        values (``spearman``), each against the largest prefix. Ties are broken
        by player id.
    """
    wide = conv_df.pivot(index="prefix", columns="player", values="value").sort_index()
    n = wide.shape[1]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer between 1 and the {n} players, got {k!r}")
    final = wide.iloc[-1].to_numpy()
    final_top, final_bottom = _extremes(final, k)
    rows = []
    for prefix, row in wide.iterrows():
        current = row.to_numpy()
        top, bottom = _extremes(current, k)
        with warnings.catch_warnings():
            # Constant values have no ranking: the correlation is NaN.
            warnings.simplefilter("ignore")
            rho = spearmanr(current, final).statistic
        rows.append((prefix, _jaccard(top, final_top), _jaccard(bottom, final_bottom), float(rho)))
    return pd.DataFrame(rows, columns=["prefix", "top_jaccard", "bottom_jaccard", "spearman"])


def _extremes(values: np.ndarray, k: int) -> tuple[set, set]:
    players = np.arange(len(values))
    ascending = np.lexsort((players, values))  # by value, then player id
    descending = np.lexsort((players, -values))
    return set(descending[:k].tolist()), set(ascending[:k].tolist())


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


LABELLED = 20  # contributors a convergence plot can tell apart by colour and legend


def labelled_players(conv_df: pd.DataFrame) -> list:
    """The players a convergence plot names: all, up to LABELLED; beyond, the
    LABELLED // 4 with the highest final values (highest first), then as many lowest."""
    players = sorted(conv_df["player"].unique())
    if len(players) <= LABELLED:
        return players
    last = conv_df[conv_df["prefix"] == conv_df["prefix"].max()].set_index("player")["value"]
    order = last.reindex(players).sort_values(kind="stable").index.tolist()
    k = LABELLED // 4
    return order[-k:][::-1] + order[:k]


def plot_convergence(
    conv_df: pd.DataFrame,
    path,
    names: Sequence[str] | Mapping[int, str] | None = None,
    title: str | None = None,
) -> Path:
    """Write a PNG of each contributor's value against the prefix length.

    One line per contributor, with its 95% interval shaded where available;
    beyond LABELLED contributors, the five highest and five lowest final
    values in colour and named, the rest thin and grey.
    `names` maps player ids to labels (a sequence indexed by player, or a
    mapping); players default to "contributor i".
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    players = sorted(conv_df["player"].unique())
    if names is not None and not isinstance(names, Mapping) and len(names) != len(players):
        raise ValueError(f"names has {len(names)} entries for {len(players)} players")

    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    named = labelled_players(conv_df)
    if len(named) < len(players):
        for player in players:
            rows = conv_df[conv_df["player"] == player].sort_values("prefix")
            ax.plot(rows["prefix"], rows["value"], color="0.75", lw=0.6, zorder=1)
        title = f"{title or ''} ({len(named) // 2} highest and lowest of {len(players)}; the rest grey)".strip()
    for player in named:
        rows = conv_df[conv_df["player"] == player].sort_values("prefix")
        label = names[player] if names is not None else f"contributor {player}"
        (line,) = ax.plot(rows["prefix"], rows["value"], marker="o", markersize=3, label=label, zorder=2)
        if {"ci_low", "ci_high"} <= set(rows.columns) and rows["ci_low"].notna().any():
            ax.fill_between(rows["prefix"], rows["ci_low"], rows["ci_high"],
                            color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("coalitions evaluated")
    ax.set_ylabel("value")
    if title:
        ax.set_title(title)
    if len(named) <= LABELLED:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=150)
    return path
