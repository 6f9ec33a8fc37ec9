"""The values format every estimate and attribution writes (values.parquet / values.csv,
one bar chart per property), and readers of scores and values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import read_json, verify_dir, verify_file


def read_scores(path: str) -> dict:
    """A score file's {property: {value, higher_is_better, replicates?}}."""
    return read_json(verify_file(path))["properties"]


def read_values(folder: str) -> pd.DataFrame:
    """The values table of an estimate's or attribution's folder."""
    return pd.read_parquet(verify_dir(folder) / "values.parquet")


def credit_table(df: pd.DataFrame, prop: str, higher: bool) -> pd.DataFrame:
    """One property's rows (contributor, value, ci_low, ci_high, ...) with the property,
    its direction, the credit (value signed so that positive helps) and the rank by credit."""
    df.insert(0, "property", prop)
    df["higher_is_better"] = higher
    df["credit"] = (1.0 if higher else -1.0) * df["value"]
    df["rank"] = df["credit"].rank(ascending=False, method="min").astype(int)
    return df


def values_table(tables: list[pd.DataFrame], strategy: str, shrink: bool, method: str, scheme: str,
                 budget: int, retrains: int = 0) -> pd.DataFrame:
    """Every property's credit table, with the columns that say what made them
    (`retrains`: how many of the design's coalitions were also retrained, 0 for none)."""
    table = pd.concat(tables, ignore_index=True)
    for col, val in (("retrains", retrains), ("strategy", strategy), ("shrink", shrink), ("method", method),
                     ("scheme", scheme), ("budget", budget)):
        table.insert(0, col, val)
    return table


def write_values(folder: Path, table: pd.DataFrame, titles: dict) -> None:
    """values.parquet, values.csv and `<property>.png` for each property in `titles`."""
    table.to_parquet(folder / "values.parquet", index=False)
    table.to_csv(folder / "values.csv", index=False)
    for prop, title in titles.items():
        plot_values(table[table["property"] == prop], folder / f"{prop}.png", title)


# Beyond this many contributors, the bar chart and the printout show the best and the
# worst SHOWN // 2 by credit, and say how many more are in values.csv.
SHOWN = 30


def ends(table: pd.DataFrame, shown: int = SHOWN) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """One property's rows by rank, split into the best and the worst `shown` // 2 when
    there are more than `shown` (the worst empty otherwise), and how many are left out."""
    t = table.sort_values(["rank", "contributor"], kind="stable")
    if len(t) <= shown:
        return t, t.iloc[:0], 0
    half = shown // 2
    return t.iloc[:half], t.iloc[-half:], len(t) - 2 * half


def plot_values(table: pd.DataFrame, path: Path, title: str) -> None:
    """Bar chart of each contributor's value with 95% CI whiskers, best credit on top
    (beyond SHOWN contributors: the best and the worst, the rest in values.csv)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best, worst, hidden = ends(table)
    t = pd.concat([best, worst]).iloc[::-1]  # barh draws the first row at the bottom
    err = np.nan_to_num(np.vstack([t["value"] - t["ci_low"], t["ci_high"] - t["value"]]).clip(min=0))
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(t) + 1.5 + 0.35 * bool(hidden)))
    colors = np.where(t["credit"] >= 0, "tab:blue", "tab:red")
    rows = np.arange(len(t), dtype=float)
    if hidden:  # a gap between the worst and the best
        rows[len(worst):] += 1
        ax.text(0.5, len(worst), f"... {hidden} contributors between, in values.csv ...", ha="center",
                va="center", transform=ax.get_yaxis_transform(), fontsize=8, color="0.3")
    ax.barh(rows, t["value"], xerr=err, color=colors, capsize=3)
    ax.set_yticks(rows, t["contributor"])
    ax.axvline(0, color="black", lw=0.8)
    better = "higher" if bool(t["higher_is_better"].iloc[0]) else "lower"
    ax.set_xlabel(f"value (change in {t['property'].iloc[0]}; {better} is better; blue = helps)")
    shown = f" (best and worst {len(best)} of {len(table)})" if hidden else ""
    ax.set_title(title + shown, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
