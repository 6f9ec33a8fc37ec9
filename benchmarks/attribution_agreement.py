"""How each attribution baseline's credits (and each sFT estimate) agree with the Shapley
values of retrained coalitions, per property, over the contributors.

Reads a results folder in which an estimator with `strategy: retrain` ran (e.g.
configs/digits-eval.yaml's fidelity evaluation: its retrain design) beside
`attributions:`; prints Spearman and Pearson of every method's values against the
retrained estimate's (`--truth-method`, `--truth-budget` pick it).

    python benchmarks/attribution_agreement.py results [--truth-method stratified] [--truth-budget 30]
"""

from __future__ import annotations

import argparse
import glob
import os

import pandas as pd
from scipy import stats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results")
    p.add_argument("--truth-method", default="stratified")
    p.add_argument("--truth-budget", type=int, default=30)
    args = p.parse_args()
    est = pd.concat([pd.read_parquet(f) for f in glob.glob(os.path.join(args.results, "values/*/values.parquet"))])
    truth = est[(est.strategy == "retrain") & (est.method == args.truth_method) & (est.budget == args.truth_budget)
                & ~est.shrink].drop_duplicates(["property", "contributor"])
    if truth.empty:
        raise SystemExit(f"no retrained {args.truth_method} estimate of budget {args.truth_budget} in {args.results}")
    tables = [pd.read_parquet(f) for f in glob.glob(os.path.join(args.results, "attributions/*/values.parquet"))]
    sft = est[est.strategy == "sft"]
    tables += [t.assign(method=f"{m} ({b} sft coalitions)") for (m, b), t in sft.groupby(["method", "budget"])]
    rows = []
    for t in tables:
        for prop, tp in t.groupby("property"):
            tr = truth[truth.property == prop].set_index("contributor")["value"]
            v = tp.drop_duplicates("contributor").set_index("contributor")["value"].reindex(tr.index)
            rows.append({"method": tp["method"].iloc[0], "property": prop, "spearman": stats.spearmanr(v, tr)[0],
                         "pearson": stats.pearsonr(v, tr)[0]})
    table = pd.DataFrame(rows).sort_values(["property", "method"])
    print(f"against the retrained {args.truth_method} estimate ({args.truth_budget} coalitions), "
          f"{len(truth.contributor.unique())} contributors:")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))


if __name__ == "__main__":
    main()
