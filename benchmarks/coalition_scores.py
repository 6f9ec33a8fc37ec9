"""Every coalition of a run's estimates with its members and its properties' values, for
reading what drove the credits (the singletons, say):

    python benchmarks/coalition_scores.py CONFIG [CONFIG ...] [--max-size K] [--out PATH.csv]

CONFIGs are the run's config files, in the order given to snakemake. Only coalitions
whose scores exist are listed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffcredit.status import load_plan  # noqa: E402
from diffcredit.values import read_scores  # noqa: E402


def coalition_scores(plan, max_size: int | None = None) -> pd.DataFrame:
    rows = []
    for est in plan.estimators:
        for i, (mask, key) in enumerate(zip(est.masks, plan.nodes[est.key].parents["rows"])):
            members = [n for n, m in zip(plan.names, mask) if m]
            path = plan.nodes[key].path
            if (max_size is not None and len(members) > max_size) or not os.path.isfile(path):
                continue
            rows.append({"estimate": est.label, "row": i, "size": len(members), "members": " ".join(members),
                         **{p: v["value"] for p, v in read_scores(path).items()}})
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
