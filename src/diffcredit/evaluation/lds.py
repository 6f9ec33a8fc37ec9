"""LDS (linear datamodeling score) against retrained random subsets of contributors."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .stats import (labelled_values, percentile_interval, pyplot, read_all_scores, sample_subsets, spearman,
                    subset_draws, t_interval)


def lds(values: pd.DataFrame, masks: np.ndarray, actual: np.ndarray, players: list[str],
        n_boot: int = 2000, seed: int = 0) -> dict:
    """LDS of one method on one property.

    values: rows (contributor, value) of the method; masks: (S, n) subsets over `players`;
    actual: (S, n_seeds) the retrained property. The prediction of a subset is the sum
    of its members' values (the additive model; v(empty) shifts every prediction alike).
    ci_low/ci_high: t interval over seeds (retraining noise); subset_ci_low/high: percentile
    bootstrap over the subsets (which subsets were drawn), seeds averaged in each resample.
    """
    v = values.set_index("contributor")["value"].reindex(players).to_numpy(dtype=float)
    if np.isnan(v).any():
        raise ValueError("values do not cover every contributor")
    predicted = masks.astype(float) @ v
    per_seed = np.array([100 * spearman(predicted, actual[:, j]) for j in range(actual.shape[1])])
    mean, low, high = t_interval(per_seed)
    draws = subset_draws(predicted, actual, n_boot, seed)
    boot = percentile_interval(draws, n_boot)
    return {"lds": mean, "ci_low": low, "ci_high": high, "per_seed": per_seed.tolist(), "predicted": predicted,
            "subset_ci_low": boot[0], "subset_ci_high": boot[1], "subset_draws": draws}


def _against_best(rows: list[dict], draws: dict) -> list[dict]:
    """Each method's LDS minus the best method's (same property and alpha), with a paired
    bootstrap interval over the subsets (every method's `subset_draws` resample the same
    subsets): `best`, `vs_best`, `vs_best_ci_low/high`."""
    scored = [r for r in rows if np.isfinite(r["lds"])]
    if not scored:
        return rows
    best = max(scored, key=lambda r: r["lds"])
    for r in rows:
        low, high = percentile_interval(draws[r["method"]] - draws[best["method"]])
        r.update({"best": best["method"], "vs_best": r["lds"] - best["lds"], "vs_best_ci_low": low,
                  "vs_best_ci_high": high})
    return rows


def plot_lds(pred: pd.DataFrame, path, title: str) -> None:
    """Predicted (sum of values) vs retrained property, one panel per method, seeds as colours."""
    plt = pyplot()
    methods = list(dict.fromkeys(pred["method"]))
    cols = min(len(methods), 4)
    rows = -(-len(methods) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(methods):]:
        ax.axis("off")
    for ax, method in zip(axes.flat, methods):
        t = pred[pred["method"] == method]
        for seed, ts in t.groupby("seed"):
            ax.scatter(ts["predicted"], ts["actual"], s=12, alpha=0.7, label=f"seed {seed}")
        ax.set_title(method, fontsize=8)
        ax.set_xlabel("sum of the subset's values", fontsize=7)
        ax.set_ylabel("retrained property", fontsize=7)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def lds_job(job: dict, progress: bool = True) -> None:
    """lds.csv (method, property, alpha, lds, ci_low, ci_high, subset_ci_low, subset_ci_high,
    n_subsets, n_seeds, per_seed, best, vs_best, vs_best_ci_low, vs_best_ci_high), the
    per-subset predictions and one plot per property."""
    from ..artifacts import atomic_dir

    spec, inputs = job["spec"], job["inputs"]
    players, seeds = spec["players"], spec["seeds"]
    values = labelled_values(inputs["values"], job["labels"])
    scores = iter(read_all_scores(inputs["scores"]))
    rows, preds = [], []
    for alpha in spec["alphas"]:
        masks = sample_subsets(len(players), alpha, spec["subsets"], spec["seed"])
        block = [[next(scores) for _ in seeds] for _ in masks]
        for prop in spec["properties"]:
            actual = np.array([[s[prop]["value"] for s in row] for row in block], dtype=float)
            block_rows, draws = [], {}
            for method in job["labels"]:
                r = lds(values[(values["method"] == method) & (values["property"] == prop)], masks, actual, players)
                draws[method] = r["subset_draws"]
                block_rows.append({"method": method, "property": prop, "alpha": alpha, "lds": r["lds"],
                                   "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                                   "subset_ci_low": r["subset_ci_low"], "subset_ci_high": r["subset_ci_high"],
                                   "n_subsets": len(masks), "n_seeds": len(seeds),
                                   "per_seed": " ".join(f"{x:.2f}" for x in r["per_seed"])})
                for j, seed in enumerate(seeds):
                    preds.append(pd.DataFrame({"method": method, "property": prop, "alpha": alpha, "seed": seed,
                                               "subset": np.arange(len(masks)), "predicted": r["predicted"],
                                               "actual": actual[:, j]}))
            rows += _against_best(block_rows, draws)
    table, pred = pd.DataFrame(rows), pd.concat(preds, ignore_index=True)
    with atomic_dir(job["out"]) as tmp:
        table.to_csv(tmp / "lds.csv", index=False)
        pred.to_parquet(tmp / "predictions.parquet", index=False)
        for (prop, alpha), t in pred.groupby(["property", "alpha"], sort=False):
            plot_lds(t, tmp / f"lds_{prop}_{alpha:g}.png", f"LDS, {prop}, alpha {alpha:g}: predicted vs retrained")
