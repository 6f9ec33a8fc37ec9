"""The correction's calibration slope as the retrained rows grow, from a fidelity
evaluation's per-coalition table: for each cheap strategy and property, the slope of the
retrained game on the cheap one (within coalition sizes, as `corrected_estimate` fits it)
and its standard error on the design's first k rows; and, per property, the relative error
of the equal split against the retrained values (the answer that needs no model at all).

    python benchmarks/correction_fit.py DESIGN COALITIONS.csv VALUES.csv [--out PATH.csv]

DESIGN is the evaluated design (results/designs/<key>.parquet, or a CSV of it), COALITIONS and VALUES the
evaluation's coalitions.csv and values.csv.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffcredit.estimators.correction import MIN_DOF, correction_dof, corrected_estimate  # noqa: E402


def slopes(masks: np.ndarray, coalitions: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    rows = []
    cheap = [s for s in coalitions["strategy"].unique() if "+" not in s]
    for (strategy, prop), t in coalitions[coalitions["strategy"].isin(cheap)].groupby(["strategy", "property"]):
        t = t.sort_values("row")
        v = values[(values["strategy"] == strategy) & (values["property"] == prop)]
        c, r = t["value"].to_numpy(float), t["retrain"].to_numpy(float)
        # Each game's values sum to its full-minus-empty difference; the slope does not use the anchors.
        c_span, r_span = float(v["value"].sum()), float(v["value_retrain"].sum())
        for k in range(1, len(t) + 1):
            if correction_dof(masks[:k]) < MIN_DOF or (k % 6 and k != len(t)):
                continue
            _, info = corrected_estimate(masks, c, 0.0, c_span, "stratified", np.arange(k), r[:k], 0.0, r_span,
                                         n_boot=0)
            rows.append({"strategy": strategy, "property": prop, "retrained_rows": k, "dof": info["dof"],
                         "slope": info["slope"], "slope_se": info["slope_se"]})
    return pd.DataFrame(rows)


def equal_split(values: pd.DataFrame) -> pd.DataFrame:
    rows = []
    first = values["strategy"].iloc[0]
    for prop, v in values[values["strategy"] == first].groupby("property"):
        r = v["value_retrain"].to_numpy(float)
        half = (v["ci_high_retrain"] - v["ci_low_retrain"]).to_numpy(float) / 2
        rows.append({"property": prop, "equal_split_rel_error": float(np.linalg.norm(r - r.mean()) / np.linalg.norm(r)),
                     "retrained_value_sd": float(r.std(ddof=1)), "retrained_mean_ci_half_width": float(half.mean())})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("design")
    ap.add_argument("coalitions")
    ap.add_argument("values")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    design = pd.read_csv(args.design) if args.design.endswith(".csv") else pd.read_parquet(args.design)
    masks = design.drop(columns="row", errors="ignore").to_numpy(bool)
    coalitions, values = pd.read_csv(args.coalitions), pd.read_csv(args.values)
    fit, split = slopes(masks, coalitions, values), equal_split(values)
    pd.set_option("display.width", 200)
    print(fit.round(3).to_string(index=False))
    print()
    print(split.round(4).to_string(index=False))
    if args.out:
        out = Path(args.out)
        fit.to_csv(out, index=False)
        split.to_csv(out.with_name(out.stem + "_equal_split.csv"), index=False)


if __name__ == "__main__":
    main()
