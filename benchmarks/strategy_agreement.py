"""How two strategies' Shapley values agree on one design: per property, the Pearson
and Spearman correlation of the real contributors' credits, their spreads and the
largest difference; and what each strategy's coalition models cost (the seconds their
training.json records: fine-tuning for sft, loading and saving for proxy).

    python benchmarks/strategy_agreement.py results-cond [--a sft --b proxy] [--out PATH]

Writes PATH.csv and PATH.txt (default benchmarks/results/strategy_agreement_<run>).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from scipy.stats import pearsonr, spearmanr

# Where each strategy's coalition models live under the results folder.
MODEL_FOLDERS = {"sft": "coalitions/*/model", "ft": "coalitions/*/model", "ga": "coalitions/*/model",
                 "proxy": "coalitions/*/conditioned"}


def agreement(values: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    if "canary" in values:
        values = values[values["canary"].isna()]
    rows = []
    for prop, group in values.groupby("property"):
        wide = group.pivot_table(index="contributor", columns="strategy", values="credit")
        if a not in wide or b not in wide:
            continue
        x, y = wide[a], wide[b]
        rows.append({"property": prop, "pearson": pearsonr(x, y).statistic, "spearman": spearmanr(x, y).statistic,
                     f"sd_{a}": x.std(), f"sd_{b}": y.std(), "max_abs_difference": (x - y).abs().max(),
                     "contributors": len(wide)})
    return pd.DataFrame(rows)


def model_seconds(results: Path, strategy: str) -> tuple[int, float]:
    files = sorted(results.glob(f"{MODEL_FOLDERS[strategy]}/training.json"))
    return len(files), sum(json.loads(f.read_text())["seconds"] for f in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--a", default="sft")
    parser.add_argument("--b", default="proxy")
    parser.add_argument("--out")
    args = parser.parse_args()
    out = Path(args.out or f"benchmarks/results/strategy_agreement_{args.results.name}")
    table = agreement(pd.read_csv(args.results / "values.csv"), args.a, args.b)
    table.to_csv(out.with_suffix(".csv"), index=False)
    text = [f"{args.a} against {args.b} on {args.results} (credits of the real contributors)", "",
            table.to_string(index=False, float_format=lambda v: f"{v:.4g}"), "", "coalition models:"]
    for strategy in (args.a, args.b):
        count, seconds = model_seconds(args.results, strategy)
        text.append(f"  {strategy}: {count} models, {seconds:.1f} s in all ({seconds / max(count, 1):.2f} s each)")
    out.with_suffix(".txt").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
