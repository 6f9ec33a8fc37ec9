"""How each estimate and attribution baseline agrees with the answers planted in
configs/known.yaml's world, where they are known by construction.

The world: six stratified groups of the digits (every group holds every class), group0
twice the size of groups 1-4 and group5 a quarter; canaries made from the data: a copy
of group1, blurred images (sigma 0.5, 1, 2 pixels) and uniform noise. Planted orders
of the credits for a property that judges quality (classifier_fd), 28 pairs:

* size: group0 above group5 (1 pair);
* every real group above every blur canary and the uniform noise (6 x 4 = 24 pairs);
* the blur ladder: sigma 0.5 above 1 above 2 (3 pairs).

For every property: the copy's credit equals group1's. Reported per method and
property: the share of planted pairs in the planted order (`concordance`; 0.5 is a
coin, for quality properties only) and the copy's distance from its original over the
spread (sd) of the six real groups' credits (`copy_gap`; 0 for an exact duplicate).

    python benchmarks/planted_agreement.py results-known [--out benchmarks/results/planted_agreement_known]
"""

from __future__ import annotations

import argparse
import glob
import os
from itertools import product

import pandas as pd

GROUPS = [f"group{i}" for i in range(6)]
BLURS = ["blur-0.5", "blur-1.0", "blur-2.0"]
UNIFORM = "canary-uniform"
COPY, ORIGINAL = "canary-duplicate-group1", "group1"
QUALITY = ("classifier_fd",)


def planted_pairs() -> list[tuple[str, str]]:
    """(above, below) pairs whose order the world plants, for a quality property."""
    pairs = [("group0", "group5")]
    pairs += list(product(GROUPS, BLURS + [UNIFORM]))
    pairs += [("blur-0.5", "blur-1.0"), ("blur-1.0", "blur-2.0"), ("blur-0.5", "blur-2.0")]
    return pairs


def agreement(credit: pd.Series, prop: str) -> dict:
    """Concordance with the planted pairs (quality properties) and the copy's gap."""
    spread = credit.reindex(GROUPS).std(ddof=1)
    out = {"copy_gap": abs(credit[COPY] - credit[ORIGINAL]) / spread if spread > 0 else float("nan")}
    if prop in QUALITY:
        pairs = planted_pairs()
        right = [credit[a] > credit[b] for a, b in pairs]
        out.update(concordance=sum(right) / len(pairs), pairs=len(pairs),
                   size_right=bool(right[0]), wrong=" ".join(f"{a}<{b}" for (a, b), r in zip(pairs, right) if not r))
    return out


def label(t: pd.DataFrame) -> str:
    row = t.iloc[0]
    if row.get("scheme") == "attribution":
        return f"{row['method']} (attribution)"
    return f"{row['method']} ({row['budget']} {row['strategy']} coalitions)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results")
    p.add_argument("--out", help="write <out>.csv and <out>.txt")
    args = p.parse_args()
    files = glob.glob(os.path.join(args.results, "values", "*", "values.parquet"))
    files += glob.glob(os.path.join(args.results, "attributions", "*", "values.parquet"))
    if not files:
        raise SystemExit(f"no values under {args.results}")
    rows = []
    for f in files:
        table = pd.read_parquet(f)
        keys = [c for c in ("method", "budget", "strategy", "shrink") if c in table]
        for _, t in table.groupby(keys, dropna=False):
            for prop, tp in t.groupby("property"):
                credit = tp.drop_duplicates("contributor").set_index("contributor")["credit"]
                missing = set(GROUPS + BLURS + [UNIFORM, COPY]) - set(credit.index)
                if missing:
                    raise SystemExit(f"{f}: not the known world (no {sorted(missing)})")
                rows.append({"method": label(t), "property": prop, **agreement(credit, prop)})
    table = pd.DataFrame(rows).sort_values(["property", "method"]).reset_index(drop=True)
    shown = table.drop(columns="wrong").astype({"pairs": "Int64"})
    text = shown.to_string(index=False, float_format=lambda x: f"{x:.2f}", na_rep="")
    print(text)
    if args.out:
        table.to_csv(f"{args.out}.csv", index=False)
        with open(f"{args.out}.txt", "w") as fh:
            fh.write(f"# python benchmarks/planted_agreement.py {args.results} --out {args.out}\n{text}\n")


if __name__ == "__main__":
    main()
