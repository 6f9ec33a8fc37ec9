"""Every coalition of a run's estimates with its members and its properties' values, for
reading what drove the credits (the singletons, say):

    python benchmarks/coalition_scores.py CONFIG [CONFIG ...] [--max-size K] [--out PATH.csv]

CONFIGs are the run's config files, in the order given to snakemake. Only coalitions
whose scores exist are listed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffcredit.status import load_plan  # noqa: E402


def coalition_scores(plan, max_size: int | None = None) -> pd.DataFrame:
    rows = []
    for est in plan.estimators:
        for i, mask in enumerate(est.masks):
            members = [n for n, m in zip(plan.names, mask) if m]
            if max_size is not None and len(members) > max_size:
                continue
            path = plan.nodes[plan.score_key(plan.model_key(plan._members(mask), est.strategy))].path
            if not os.path.isfile(path):
                continue
            props = json.load(open(path))["properties"]
            rows.append({"estimate": est.label, "row": i, "size": len(members), "members": " ".join(members),
                         **{p: v["value"] for p, v in props.items()}})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="+")
    ap.add_argument("--max-size", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    table = coalition_scores(load_plan(".", args.configs), args.max_size)
    pd.set_option("display.width", 200)
    print(table.round(3).to_string(index=False))
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
