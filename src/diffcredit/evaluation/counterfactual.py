"""Counterfactual: retrain without each method's top (and bottom) contributors."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from .stats import labelled_values, pyplot, read_all_scores, subset_size, t_interval


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


def plot_counterfactual(table: pd.DataFrame, path, title: str) -> None:
    """The property's change after removing each method's top / bottom contributors: one
    row per method, its two bars side by side (intervals over seeds where there are two)."""
    plt = pyplot()
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


def removal_sets_job(job: dict, progress: bool = True) -> None:
    from ..artifacts import write_json

    spec = job["spec"]
    values = labelled_values(job["inputs"]["values"], job["labels"])
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
    from ..artifacts import atomic_dir, read_json, verify_file

    inputs, seeds = job["inputs"], job["spec"]["seeds"]
    sets = read_json(verify_file(inputs["removal"]))["sets"]
    scores = iter(read_all_scores(inputs["scores"]))
    base = read_all_scores(inputs["baseline"])
    rows, gaps = [], defaultdict(dict)
    for s in sets:
        after = [next(scores) for _ in seeds]
        prop = s["property"]
        change = np.array([a[prop]["value"] - b[prop]["value"] for a, b in zip(after, base)])
        mean, low, high = t_interval(change)
        sign = 1.0 if base[0][prop]["higher_is_better"] else -1.0
        rows.append({"method": s["method"], "property": prop, "direction": s["direction"],
                     "removed": "; ".join(s["removed"]), "n_removed": len(s["removed"]), "change": mean,
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
