"""Is the credit right? Evaluations against retraining from scratch.

- LDS (linear datamodeling score): random alpha-fraction subsets of contributors are
  retrained; per retrain seed, the Spearman correlation (x 100) between the sum of a
  subset's values and the retrained property; the mean over seeds with a t interval, and a
  bootstrap interval over the subsets.
- Fidelity: one design's coalitions under a cheap strategy (sft, ft, ga) and under
  retrain: agreement of the property and of the Shapley values, the share of retrain
  values inside the strategy's reported intervals, and the cost ratio.
- Counterfactual: retrain without each method's top (and bottom) fraction of
  contributors; the property's change from the full model, per seed.

Plain numpy/pandas on tables; the `*_job` functions at the end are the stages' jobs.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd

from .values import read_scores, read_values

# ---------------------------------------------------------------- subsets


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


# ---------------------------------------------------------------- statistics


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


# ---------------------------------------------------------------- LDS


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
    boot = subset_bootstrap(predicted, actual, n_boot, seed)
    return {"lds": mean, "ci_low": low, "ci_high": high, "per_seed": per_seed.tolist(), "predicted": predicted,
            "subset_ci_low": boot[0], "subset_ci_high": boot[1]}


def subset_bootstrap(predicted: np.ndarray, actual: np.ndarray, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the seed-mean Spearman x 100 over subsets resampled with
    replacement (resamples where a side is constant are dropped)."""
    from scipy import stats

    s = len(predicted)
    if s < 3 or n_boot < 1:
        return float("nan"), float("nan")
    idx = np.random.default_rng([seed, s]).integers(0, s, size=(n_boot, s))

    def rho(a, b):  # row-wise Pearson of (B, S) rank arrays
        a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
        den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, (a * b).sum(1) / den, np.nan)

    rp = stats.rankdata(predicted[idx], axis=1)
    draws = 100 * np.mean([rho(rp, stats.rankdata(actual[idx, j], axis=1)) for j in range(actual.shape[1])], axis=0)
    draws = draws[np.isfinite(draws)]
    if len(draws) < n_boot / 2:
        return float("nan"), float("nan")
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


# ---------------------------------------------------------------- fidelity


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


def compute_seconds(training: dict) -> float:
    """A training job's compute time: CPU seconds on the CPU (robust to a busy machine),
    wall seconds on a GPU."""
    if training.get("device", "cpu") == "cpu" and training.get("cpu_seconds") is not None:
        return float(training["cpu_seconds"])
    return float(training["seconds"])


# ---------------------------------------------------------------- counterfactual


def removal_sets(values: pd.DataFrame, fraction: float, players: list[str]) -> list[dict]:
    """Per (method, property): the top and bottom `fraction` of contributors by credit.

    `values` has columns method, property, contributor, credit. Ties are broken by
    contributor order, so the sets are deterministic.
    """
    k = subset_size(len(players), fraction)
    order = {p: i for i, p in enumerate(players)}
    out = []
    for (method, prop), t in values.groupby(["method", "property"], sort=False):
        t = t.assign(_pos=t["contributor"].map(order)).sort_values(["credit", "_pos"], ascending=[False, True])
        names = t["contributor"].tolist()
        out.append({"method": method, "property": prop, "direction": "top",
                    "removed": sorted(names[:k], key=order.get)})
        out.append({"method": method, "property": prop, "direction": "bottom",
                    "removed": sorted(names[-k:], key=order.get)})
    return out


# ---------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_lds(pred: pd.DataFrame, path, title: str) -> None:
    """Predicted (sum of values) vs retrained property, one panel per method, seeds as colours."""
    plt = _plt()
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


def plot_fidelity(scores: pd.DataFrame, values: pd.DataFrame, path, title: str) -> None:
    """Left: each coalition's property under each strategy vs retrain. Right: each
    contributor's value under each strategy (with its interval) vs retrain's."""
    plt = _plt()
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


def plot_counterfactual(table: pd.DataFrame, path, title: str) -> None:
    """The property's change after removing each method's top / bottom contributors: one
    row per method, its two bars side by side (intervals over seeds where there are two)."""
    plt = _plt()
    methods = list(dict.fromkeys(table["method"]))
    seeds = int(table["n_seeds"].max())
    fig, ax = plt.subplots(figsize=(6.4, 1.4 + 0.45 * len(methods)))
    for offset, direction, color in ((-0.2, "top", "tab:red"), (0.2, "bottom", "tab:blue")):
        t = table[table["direction"] == direction].set_index("method").reindex(methods)
        err = None  # one seed: no interval
        if seeds > 1:
            err = np.nan_to_num(np.vstack([t["change"] - t["ci_low"], t["ci_high"] - t["change"]]).clip(min=0))
        ax.barh(np.arange(len(methods)) + offset, t["change"], height=0.4, xerr=err, color=color, capsize=2,
                label=f"without its {direction} contributors")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(methods)), methods, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"retrained property - full model's ({seeds} seed{'s' if seeds > 1 else ''})")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    ax.set_title(title, fontsize=9, pad=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- jobs


def _read_all_scores(paths) -> list[dict]:
    return [read_scores(p) for p in paths]


def _labelled(paths, labels) -> pd.DataFrame:
    return pd.concat([read_values(p).assign(method=label) for p, label in zip(paths, labels)], ignore_index=True)


def lds_job(job: dict, progress: bool = True) -> None:
    """lds.csv (method, property, alpha, lds, ci_low, ci_high, subset_ci_low, subset_ci_high,
    n_subsets, n_seeds), the per-subset predictions and one plot per property."""
    from .artifacts import atomic_dir

    spec, inputs = job["spec"], job["inputs"]
    players, seeds = spec["players"], spec["seeds"]
    values = _labelled(inputs["values"], job["labels"])
    scores = iter(_read_all_scores(inputs["scores"]))
    rows, preds = [], []
    for alpha in spec["alphas"]:
        masks = sample_subsets(len(players), alpha, spec["subsets"], spec["seed"])
        block = [[next(scores) for _ in seeds] for _ in masks]
        for prop in spec["properties"]:
            actual = np.array([[s[prop]["value"] for s in row] for row in block], dtype=float)
            for method in job["labels"]:
                r = lds(values[(values["method"] == method) & (values["property"] == prop)], masks, actual, players)
                rows.append({"method": method, "property": prop, "alpha": alpha, "lds": r["lds"],
                             "ci_low": r["ci_low"], "ci_high": r["ci_high"], "subset_ci_low": r["subset_ci_low"],
                             "subset_ci_high": r["subset_ci_high"], "n_subsets": len(masks),
                             "n_seeds": len(seeds), "per_seed": " ".join(f"{x:.2f}" for x in r["per_seed"])})
                for j, seed in enumerate(seeds):
                    preds.append(pd.DataFrame({"method": method, "property": prop, "alpha": alpha, "seed": seed,
                                               "subset": np.arange(len(masks)), "predicted": r["predicted"],
                                               "actual": actual[:, j]}))
    table, pred = pd.DataFrame(rows), pd.concat(preds, ignore_index=True)
    with atomic_dir(job["out"]) as tmp:
        table.to_csv(tmp / "lds.csv", index=False)
        pred.to_parquet(tmp / "predictions.parquet", index=False)
        for (prop, alpha), t in pred.groupby(["property", "alpha"], sort=False):
            plot_lds(t, tmp / f"lds_{prop}_{alpha:g}.png", f"LDS, {prop}, alpha {alpha:g}: predicted vs retrained")


def fidelity_job(job: dict, progress: bool = True) -> None:
    """fidelity.csv (one row per strategy and property, against retrain replicate 0),
    values.csv (every contributor's value under each), coalitions.csv and plots."""
    from .artifacts import atomic_dir, read_json, verify_dir

    inputs, layout, props = job["inputs"], job["layout"], job["spec"]["properties"]
    scores = iter(_read_all_scores(inputs["rows"]))
    models = iter(inputs["models"])
    blocks = {}
    for part, vpath in zip(layout, inputs["values"]):
        sc = [next(scores) for _ in range(part["rows"])]
        secs = [compute_seconds(read_json(verify_dir(next(models)) / "training.json")) for _ in range(part["rows"])]
        blocks[part["label"]] = {**part, "scores": sc, "seconds": secs, "values": read_values(vpath)}
    setup = {}
    for path in inputs.get("setup", []):
        setup = read_json(verify_dir(path) / "training.json")
    truth = next(b for b in blocks.values() if b["strategy"] == "retrain" and b["replicate"] == 0)
    rows, per_value, per_coalition = [], [], []
    for label, b in blocks.items():
        if b is truth:
            continue
        name = b["strategy"] if b["strategy"] != "retrain" else f"retrain seed+{b['replicate']}"
        for prop in props:
            s = np.array([x[prop]["value"] for x in b["scores"]])
            r = np.array([x[prop]["value"] for x in truth["scores"]])
            vs = b["values"][b["values"]["property"] == prop]
            vr = truth["values"][truth["values"]["property"] == prop]
            cmp = compare_values(vs[["contributor", "value", "ci_low", "ci_high"]], vr[["contributor", "value"]])
            rows.append({"strategy": name, "property": prop, "pearson": pearson(s, r), "spearman": spearman(s, r),
                         **cmp, "cost_ratio": float(np.mean(b["seconds"]) / np.mean(truth["seconds"])),
                         "seconds_per_coalition": float(np.mean(b["seconds"])),
                         "retrain_seconds_per_coalition": float(np.mean(truth["seconds"])),
                         "setup_seconds": compute_seconds(setup) if b["setup"] and setup else 0.0, "n": len(s)})
            m = vs.merge(vr[["contributor", "value", "ci_low", "ci_high"]], on="contributor", suffixes=("", "_retrain"))
            per_value.append(m[["property", "contributor", "value", "ci_low", "ci_high", "value_retrain",
                                "ci_low_retrain", "ci_high_retrain"]].assign(strategy=name))
            per_coalition.append(pd.DataFrame({"strategy": name, "property": prop, "row": np.arange(len(s)),
                                               "value": s, "retrain": r}))
    table = pd.DataFrame(rows)
    values, coalitions = pd.concat(per_value, ignore_index=True), pd.concat(per_coalition, ignore_index=True)
    with atomic_dir(job["out"]) as tmp:
        table.to_csv(tmp / "fidelity.csv", index=False)
        values.to_csv(tmp / "values.csv", index=False)
        coalitions.to_csv(tmp / "coalitions.csv", index=False)
        for prop in props:
            plot_fidelity(coalitions[coalitions["property"] == prop], values[values["property"] == prop],
                          tmp / f"fidelity_{prop}.png", f"fidelity, {prop}: strategies vs retraining")


def removal_sets_job(job: dict, progress: bool = True) -> None:
    from .artifacts import write_json

    spec = job["spec"]
    values = _labelled(job["inputs"]["values"], job["labels"])
    values = values[values["property"].isin(spec["properties"])]
    write_json(job["out"], {"fraction": spec["fraction"],
                            "sets": removal_sets(values, spec["fraction"], spec["players"])}, seal=True)


def counterfactual_job(job: dict, progress: bool = True) -> None:
    """counterfactual.csv: per method, property and direction, the property of the model
    retrained without the removed contributors minus the full model's, mean over seeds
    with a t interval; credit_change is the change in the property's better direction.
    gap: credit_change without the top minus without the bottom, paired by seed (the
    full model's retrain cancels), with its t interval; negative when the method's top
    contributors matter more."""
    from .artifacts import atomic_dir, read_json, verify_file

    inputs, seeds = job["inputs"], job["spec"]["seeds"]
    sets = read_json(verify_file(inputs["removal"]))["sets"]
    scores = iter(_read_all_scores(inputs["scores"]))
    base = _read_all_scores(inputs["baseline"])
    rows, gaps = [], defaultdict(dict)
    for s in sets:
        after = [next(scores) for _ in seeds]
        prop = s["property"]
        change = np.array([a[prop]["value"] - b[prop]["value"] for a, b in zip(after, base)])
        mean, low, high = t_interval(change)
        sign = 1.0 if base[0][prop]["higher_is_better"] else -1.0
        rows.append({"method": s["method"], "property": prop, "direction": s["direction"],
                     "removed": " ".join(s["removed"]), "n_removed": len(s["removed"]), "change": mean,
                     "ci_low": low, "ci_high": high, "credit_change": sign * mean, "n_seeds": len(seeds),
                     "full": float(np.mean([b[prop]["value"] for b in base])),
                     "per_seed": " ".join(f"{x:.6g}" for x in change)})
        gaps[(s["method"], prop)][s["direction"]] = sign * change
    for row in rows:  # removal_sets gives every (method, property) both directions
        pair = gaps[(row["method"], row["property"])]
        row["gap"], row["gap_ci_low"], row["gap_ci_high"] = t_interval(pair["top"] - pair["bottom"])
    table = pd.DataFrame(rows)
    with atomic_dir(job["out"]) as tmp:
        table.to_csv(tmp / "counterfactual.csv", index=False)
        for prop, t in table.groupby("property", sort=False):
            plot_counterfactual(t, tmp / f"counterfactual_{prop}.png",
                                f"{prop}: does removing the top contributors hurt more?")
