"""Fidelity: one design's coalitions under cheap strategies against retraining."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..values import read_values
from .stats import pearson, pearson_within_size, pyplot, read_all_scores, spearman


def compare_values(strategy: pd.DataFrame, retrain: pd.DataFrame) -> dict:
    """Shapley values of a strategy against retrain's, one property (rows per contributor)."""
    m = strategy.merge(retrain, on="contributor", suffixes=("", "_retrain"))
    s, r = m["value"].to_numpy(float), m["value_retrain"].to_numpy(float)
    inside = (m["ci_low"] <= m["value_retrain"]) & (m["value_retrain"] <= m["ci_high"])
    norm = np.linalg.norm(r)
    return {
        "value_pearson": pearson(s, r),
        "value_spearman": spearman(s, r),
        "value_rel_error": float(np.linalg.norm(s - r) / norm) if norm > 0 else float("nan"),
        "coverage": float(inside.mean()),
        "interval_scale": interval_scale(m["value"], m["ci_low"], m["ci_high"], m["value_retrain"]),
        "n_contributors": int(len(m)),
    }


def interval_scale(value, low, high, truth, level: float = 0.95) -> float:
    """By how much the intervals must be widened (about each value, side by side) for a
    `level` share of them to contain the truth: 1 or less means honest intervals."""
    value, low, high, truth = (np.asarray(x, dtype=float) for x in (value, low, high, truth))
    half = np.where(truth >= value, high - value, value - low)
    need = np.abs(truth - value) / np.where(half > 0, half, np.nan)
    need = np.where(np.isnan(need), np.where(truth == value, 0.0, np.inf), need)
    return float(np.quantile(need, level, method="inverted_cdf"))


def model_seconds(folder) -> float:
    """`compute_seconds` of a model folder's training record (checked against its sidecar)."""
    from ..artifacts import read_json, verify_dir

    return compute_seconds(read_json(verify_dir(folder) / "training.json"))


def compute_seconds(training: dict) -> float:
    """A training job's compute time: CPU seconds on the CPU (robust to a busy machine),
    wall seconds on a GPU."""
    if training.get("device", "cpu") == "cpu" and training.get("cpu_seconds") is not None:
        return float(training["cpu_seconds"])
    return float(training["seconds"])


def plot_fidelity(scores: pd.DataFrame, values: pd.DataFrame, path, title: str) -> None:
    """Left: each coalition's property under each strategy vs retrain. Right: each
    contributor's value under each strategy (with its interval) vs retrain's."""
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.6))
    for strat, t in scores.groupby("strategy", sort=False):
        a.scatter(t["retrain"], t["value"], s=12, alpha=0.7, label=strat)
    for strat, t in values.groupby("strategy", sort=False):
        err = np.vstack([t["value"] - t["ci_low"], t["ci_high"] - t["value"]]).clip(min=0)
        b.errorbar(t["value_retrain"], t["value"], yerr=err, fmt="o", ms=3, capsize=2, alpha=0.8, label=strat)
    for ax, what in ((a, "coalition's property"), (b, "contributor's value")):
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
        ax.set_xlabel(f"{what}, retrained")
        ax.set_ylabel(f"{what}, strategy")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fidelity_job(job: dict, progress: bool = True) -> None:
    """fidelity.csv (one row per strategy and property, against retrain replicate 0),
    values.csv (every contributor's value under each), coalitions.csv and plots."""
    from ..artifacts import atomic_dir, read_json, verify_dir

    inputs, layout, props = job["inputs"], job["layout"], job["spec"]["properties"]
    scores = iter(read_all_scores(inputs["rows"]))
    models = iter(inputs["models"])
    blocks = {}
    for part, vpath in zip(layout, inputs["values"]):
        sc = [next(scores) for _ in range(part["rows"])]
        secs = [model_seconds(next(models)) for _ in range(part.get("models", part["rows"]))]
        blocks[part["label"]] = {**part, "scores": sc, "seconds": secs, "values": read_values(vpath)}
    setup = {}
    for path in inputs.get("setup", []):
        setup = read_json(verify_dir(path) / "training.json")
    truth = next(b for b in blocks.values() if b["strategy"] == "retrain" and b["replicate"] == 0)
    sizes = truth.get("sizes")  # absent from a job planned before sizes were recorded
    rows, per_value, per_coalition = [], [], []
    for label, b in blocks.items():
        if b is truth:
            continue
        name = b["strategy"] if b["strategy"] != "retrain" else f"retrain seed+{b['replicate']}"
        if b.get("retrains"):
            name = f"{name}+retrain{b['retrains']}"
        for prop in props:
            s = np.array([x[prop]["value"] for x in b["scores"]])
            r = np.array([x[prop]["value"] for x in truth["scores"]])
            vs = b["values"][b["values"]["property"] == prop]
            vr = truth["values"][truth["values"]["property"] == prop]
            cmp = compare_values(vs[["contributor", "value", "ci_low", "ci_high"]], vr[["contributor", "value"]])
            rows.append({"strategy": name, "property": prop, "pearson": pearson(s, r), "spearman": spearman(s, r),
                         "pearson_within_size": pearson_within_size(s, r, sizes) if sizes else float("nan"),
                         **cmp, "cost_ratio": float(np.sum(b["seconds"]) / np.sum(truth["seconds"])),
                         "seconds_per_coalition": float(np.sum(b["seconds"]) / b["rows"]),
                         "retrain_seconds_per_coalition": float(np.mean(truth["seconds"])),
                         "setup_seconds": compute_seconds(setup) if b["setup"] and setup else 0.0, "n": len(s)})
            m = vs.merge(vr[["contributor", "value", "ci_low", "ci_high"]], on="contributor", suffixes=("", "_retrain"))
            per_value.append(m[["property", "contributor", "value", "ci_low", "ci_high", "value_retrain",
                                "ci_low_retrain", "ci_high_retrain"]].assign(strategy=name))
            per_coalition.append(pd.DataFrame({"strategy": name, "property": prop, "row": np.arange(len(s)),
                                               "size": sizes or np.nan, "value": s, "retrain": r}))
    table = pd.DataFrame(rows)
    values, coalitions = pd.concat(per_value, ignore_index=True), pd.concat(per_coalition, ignore_index=True)
    with atomic_dir(job["out"]) as tmp:
        table.to_csv(tmp / "fidelity.csv", index=False)
        values.to_csv(tmp / "values.csv", index=False)
        coalitions.to_csv(tmp / "coalitions.csv", index=False)
        for prop in props:
            plot_fidelity(coalitions[coalitions["property"] == prop], values[values["property"] == prop],
                          tmp / f"fidelity_{prop}.png", f"fidelity, {prop}: strategies vs retraining")
