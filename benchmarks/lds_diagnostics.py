"""How much an LDS can say: the spread of the retrained property across the LDS subsets
against its noise, and how additive the property is at that subset size.

Run from a workflow folder whose config has `evaluations.lds` (e.g. configs/digits-eval.yaml)
after the LDS retrains exist; prints, per property and alpha:
- the standard deviation of the retrained property across the subsets, beside the mean
  standard deviation over its image resamples (`scores.image_bootstrap`);
- the in-sample R^2 of an additive model (intercept + one weight per contributor)
  fitted to the subsets, and its leave-one-subset-out LDS (a pessimistic estimate of
  what additive credits can reach on these subsets: its weights are fitted to few
  noisy subsets), with the subset bootstrap interval;
- with `--replicates CONFIG`, a config with `fidelity.retrain_replicates: 2`: the
  seed-to-seed standard deviation of a coalition's retrained property, over the design
  coalitions retrained with both seeds so far.

    python benchmarks/lds_diagnostics.py --repo . --config configs/digits-eval.yaml [--replicates rep.yaml]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from scipy import stats

from diffcredit import evaluation as ev
from diffcredit.values import read_scores
from diffcredit.status import load_plan


def additive_fit(masks: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """In-sample R^2 and leave-one-out predictions of y ~ intercept + masks @ w."""
    x = np.c_[np.ones(len(y)), masks.astype(float)]
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    r2 = 1 - np.sum((y - x @ coef) ** 2) / np.sum((y - y.mean()) ** 2)
    pred = np.empty_like(y)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        c, *_ = np.linalg.lstsq(x[keep], y[keep], rcond=None)
        pred[i] = x[i] @ c
    return float(r2), pred


def image_sd(scores: list[dict], prop: str) -> float:
    reps = [s[prop].get("replicates") for s in scores]
    return float(np.mean([np.std(r, ddof=1) for r in reps])) if all(r is not None for r in reps) else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", default=".")
    p.add_argument("--config", action="append", required=True, help="config files after the repo's config.yaml")
    p.add_argument("--replicates", help="a config whose fidelity evaluation has retrain_replicates: 2")
    args = p.parse_args()
    base = os.path.join(args.repo, "config.yaml")
    plan = load_plan(args.repo, [base, *args.config])
    node = plan.nodes[plan.evaluations["lds"]]
    paths = iter(plan.inputs(node.key)["scores"])
    seeds = node.spec["seeds"]
    for alpha in node.spec["alphas"]:
        masks = ev.sample_subsets(plan.n, alpha, node.spec["subsets"], node.spec["seed"])
        scores = [[read_scores(next(paths)) for _ in seeds] for _ in masks]
        for prop in node.spec["properties"]:
            y = np.array([np.mean([s[prop]["value"] for s in row]) for row in scores])
            r2, pred = additive_fit(masks, y)
            low, high = ev.subset_bootstrap(pred, y[:, None])
            noise = image_sd([r[0] for r in scores], prop)
            print(f"{prop}, alpha {alpha:g}, {len(y)} subsets x {len(seeds)} seeds: "
                  f"sd across subsets {y.std(ddof=1):.4g}, image-resampling sd {noise:.4g}; "
                  f"additive fit R^2 {r2:.2f} in sample (noise alone: ~{plan.n / (len(y) - 1):.2f}), "
                  f"held-out additive LDS {100 * stats.spearmanr(pred, y)[0]:.1f} [{low:.1f}, {high:.1f}]")
    if args.replicates:
        rep = load_plan(args.repo, [base, *args.config, args.replicates])
        e1 = next(e for e in rep.fidelity_estimators if e.strategy == "retrain" and e.replicate == 1)
        pairs = []
        for row in e1.masks:
            members = rep._members(row)
            p0, p1 = (rep.nodes[rep.score_key(rep.model_key(members, "retrain", s))].path for s in (0, 1))
            if os.path.exists(p0) and os.path.exists(p1):
                pairs.append((read_scores(p0), read_scores(p1)))
        for prop in rep.properties:
            d = np.array([a[prop]["value"] - b[prop]["value"] for a, b in pairs])
            if len(d) > 1:
                print(f"{prop}: seed-to-seed sd of a retrained coalition's property {d.std(ddof=1) / np.sqrt(2):.4g} "
                      f"over {len(d)} coalitions retrained twice")


if __name__ == "__main__":
    main()
