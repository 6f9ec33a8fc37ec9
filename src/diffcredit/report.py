"""The estimate stage: values, confidence intervals, diagnostics and plots."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import atomic_dir, read_json, verify_file

log = logging.getLogger(__name__)


def _scores(path: str) -> dict:
    return read_json(verify_file(path))["properties"]


def _image_noise(prop: str, rows: list, empty: dict, full: dict):
    """The property's resampled-image replicates of every row and both anchors, or
    None where a score has none (the property does not resample, or it is off)."""
    reps = [r[prop].get("replicates") for r in rows] + [empty[prop].get("replicates"), full[prop].get("replicates")]
    if any(r is None for r in reps) or len({len(r) for r in reps}) != 1:
        return None
    return np.asarray(reps[:-2], dtype=float), np.asarray(reps[-2], dtype=float), np.asarray(reps[-1], dtype=float)


def estimate_values(spec: dict, inputs: dict, out: str) -> pd.DataFrame:
    """Estimate every property's values from a design and its scores; write `out`/.

    `inputs`: the design table and the score files of the empty and full anchors and
    of every design row, in design order.
    """
    from .diagnostics import convergence, efficiency_gap, plot_convergence, rank_stability
    from .estimators import SHAPLEY_METHODS, estimate

    design = pd.read_parquet(verify_file(inputs["design"]))
    players = [c for c in design.columns if c != "row"]
    masks = design[players].to_numpy(dtype=bool)
    rows = [_scores(p) for p in inputs["rows"]]
    empty, full = _scores(inputs["empty"]), _scores(inputs["full"])
    tables, diagnostics, conv_tables = [], {}, []
    for prop in spec["properties"]:
        values = np.array([r[prop]["value"] for r in rows], dtype=float)
        v_empty, v_full = float(empty[prop]["value"]), float(full[prop]["value"])
        higher = bool(full[prop]["higher_is_better"])
        df = estimate(masks, values, v_empty, v_full, spec["method"], seed=spec["seed"], n_boot=spec["n_boot"],
                      shrink=spec["shrink"], noise=_image_noise(prop, rows, empty, full))
        df.insert(0, "contributor", [players[i] for i in df.index])
        df.insert(0, "property", prop)
        sign = 1.0 if higher else -1.0
        df["higher_is_better"] = higher
        df["credit"] = sign * df["value"]
        df["rank"] = df["credit"].rank(ascending=False, method="min").astype(int)
        tables.append(df)
        conv = convergence(masks, values, v_empty, v_full, spec["method"], seed=spec["seed"], shrink=spec["shrink"])
        conv.insert(0, "property", prop)
        conv_tables.append(conv)
        diagnostics[prop] = {
            "v_empty": v_empty,
            "v_full": v_full,
            "higher_is_better": higher,
            "efficiency_gap": efficiency_gap(df, v_empty, v_full) if spec["method"] in SHAPLEY_METHODS else None,
            "rank_stability": _jsonable(rank_stability(conv.drop(columns="property"))),
        }
    table = pd.concat(tables, ignore_index=True)
    for col, val in (("strategy", spec["strategy"]), ("shrink", spec["shrink"]), ("method", spec["method"]),
                     ("scheme", spec["scheme"]), ("budget", spec["budget"])):
        table.insert(0, col, val)
    conv_all = pd.concat(conv_tables, ignore_index=True)
    with atomic_dir(out) as tmp:
        table.to_parquet(tmp / "values.parquet", index=False)
        table.to_csv(tmp / "values.csv", index=False)
        conv_all.to_parquet(tmp / "convergence.parquet", index=False)
        pd.Series(diagnostics, dtype=object).to_json(tmp / "diagnostics.json", indent=2)
        for prop in spec["properties"]:
            shrunk = ", shrunk" if spec["shrink"] else ""
            label = f"{spec['method']} ({spec['scheme']}, {spec['budget']} {spec['strategy']} coalitions{shrunk})"
            plot_values(table[table["property"] == prop], tmp / f"{prop}.png", f"{prop}: {label}")
            plot_convergence(
                conv_all[conv_all["property"] == prop].drop(columns="property"),
                tmp / f"convergence_{prop}.png",
                names=players,
                title=f"{prop}: {label}",
            )
    return table


def _jsonable(obj):
    if isinstance(obj, pd.DataFrame):
        return obj.to_dict(orient="records")
    return obj


def plot_values(table: pd.DataFrame, path: Path, title: str) -> None:
    """Bar chart of each contributor's value with 95% CI whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table.sort_values("value")
    err = np.nan_to_num(np.vstack([t["value"] - t["ci_low"], t["ci_high"] - t["value"]]).clip(min=0))
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(t) + 1.5))
    colors = np.where(t["credit"] >= 0, "tab:blue", "tab:red")
    ax.barh(t["contributor"], t["value"], xerr=err, color=colors, capsize=3)
    ax.axvline(0, color="black", lw=0.8)
    better = "higher" if bool(t["higher_is_better"].iloc[0]) else "lower"
    ax.set_xlabel(f"value (change in {t['property'].iloc[0]}; {better} is better; blue = helps)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
