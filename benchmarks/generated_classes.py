"""How often the full model generates each contributor's classes, and how each method's
credits follow it.

For labelled data with a trained classifier (`properties` with a classifier, e.g. the
digits default): classifies the samples the attribution baselines target (the full
model's), gives each contributor the generated share of its classes (sum over classes
of its share of the class's training items times the class's share of the samples),
and prints the Spearman correlation with it of every method's credit in the results
folder (every values.parquet: estimates of other configs too).
A per-sample attribution averaged over generated samples credits the training items
that explain those samples, so it follows this share; a distribution property like a
Frechet distance need not.

    python benchmarks/generated_classes.py --repo . --config configs/digits-eval.yaml [--results results]
"""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from diffcredit import data as data_mod
from diffcredit.extractors.classifier_net import features_and_probs, load_classifier
from diffcredit.status import load_plan


def generated_share(train_labels: list[np.ndarray], sample_classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Per contributor: sum_c (its items of class c / all items of class c) x (samples of class c / samples)."""
    counts = np.stack([np.bincount(lab, minlength=n_classes) for lab in train_labels]).astype(float)
    per_class = counts.sum(0)
    gen = np.bincount(sample_classes, minlength=n_classes) / len(sample_classes)
    return (counts / np.where(per_class > 0, per_class, 1.0)) @ gen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", default=".")
    p.add_argument("--config", action="append", default=[], help="config files after the repo's config.yaml")
    p.add_argument("--results", help="default: the plan's results folder")
    args = p.parse_args()
    plan = load_plan(args.repo, [os.path.join(args.repo, "config.yaml"), *args.config])
    targets = {plan.nodes[k].parents["source"] for k in plan.keys("attribution_features")
               if plan.nodes[k].spec.get("role") == "target"}
    if len(targets) != 1:
        raise SystemExit(f"expected the attributions of one samples file, found {len(targets)}")
    classifier = plan.keys("train_classifier")
    if not classifier:
        raise SystemExit("no classifier in this config's properties")
    model, _ = load_classifier(Path(plan.nodes[classifier[0]].path))
    samples = np.load(plan.nodes[targets.pop()].path)["images"]
    _, probs = features_and_probs(model, samples)
    sample_classes = probs.argmax(1)
    labels = [data_mod.load_items(plan.cfg["data"], c)[1] for c in plan.contributors]
    n_classes = probs.shape[1]
    share = generated_share(labels, sample_classes, n_classes)
    train_share = np.array([len(lab) for lab in labels]) / sum(len(lab) for lab in labels)
    names = [c.name for c in plan.contributors]
    print(f"{len(samples)} samples of the full model, classified:")
    print(pd.DataFrame({"contributor": names, "generated_share": share, "training_share": train_share})
          .to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    results = args.results or str(plan.results)
    values = pd.concat([pd.read_parquet(f) for pattern in ("values/*/values.parquet", "attributions/*/values.parquet")
                        for f in glob.glob(os.path.join(results, pattern))])
    values = values[~values.shrink]
    values["label"] = [m if b == 0 else f"{m} ({b} {s} coalitions)"
                       for m, b, s in zip(values.method, values.budget, values.strategy)]
    rows = []
    for (label, prop), t in values.groupby(["label", "property"]):
        credit = t.drop_duplicates("contributor").set_index("contributor")["credit"].reindex(names)
        rows.append({"method": label, "property": prop, "spearman": stats.spearmanr(credit, share)[0]})
    table = pd.DataFrame(rows).pivot(index="method", columns="property", values="spearman")
    print("\nSpearman of each method's credit with the generated share:")
    print(table.to_string(float_format=lambda x: f"{x:+.2f}"))


if __name__ == "__main__":
    main()
