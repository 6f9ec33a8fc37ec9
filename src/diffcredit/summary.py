"""After a successful run: one table of every estimate of the current config."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .io import atomic_path


def collect(plan) -> pd.DataFrame:
    tables = []
    for est in plan.estimators:
        path = Path(plan.values_dir(est)) / "values.parquet"
        if path.is_file():
            tables.append(pd.read_parquet(path))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def write_summary(plan, stream=None) -> pd.DataFrame:
    """Write `<results>/values.csv` and print the values, best credit first."""
    import sys

    stream = stream or sys.stdout
    table = collect(plan)
    if table.empty:
        return table
    out = plan.results / "values.csv"
    with atomic_path(out, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)
    cols = ["contributor", "value", "ci_low", "ci_high", "rank"]
    groups = ["method", "shrink", "scheme", "budget", "strategy", "property"]
    for (method, shrink, scheme, budget, strategy, prop), t in table.groupby(groups, sort=False):
        better = "higher" if bool(t["higher_is_better"].iloc[0]) else "lower"
        shrunk = ", shrunk toward the equal split" if shrink else ""
        print(f"\n{prop} ({better} is better), {method} on {budget} {scheme} coalitions ({strategy}){shrunk}:",
              file=stream)
        print(t.sort_values("rank")[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"), file=stream)
    for est in plan.estimators:
        print(f"plots: {plan.values_dir(est)}/", file=stream)
    print(f"table: {out}", file=stream)
    return table
