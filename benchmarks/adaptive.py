"""Adaptive budgets against the exact retrained Shapley values, on a run that evaluated
every coalition under a cheap strategy and under retrain (configs/exact6.yaml).

    snakemake --cores all --configfile configs/exact6.yaml     # every coalition, both games
    python benchmarks/adaptive.py --workdir . --configfile configs/exact6.yaml \\
        --out benchmarks/results/adaptive_exact6.csv

For each of `--designs` design seeds, the rounds of an adaptive entry (`budget`,
`retrains`, `max_budget`: diffcredit.estimators.adaptive.schedule) are estimated from
the run's scores as the workflow would (corrected estimates when retrains > 0; no
training here), and each round is checked against every target of `--relative` (the
widest interval's half-width over the sd of the estimated values, every property).
Rows, per property:

* fixed: every round, as if its budget had been the entry's fixed budget;
* adaptive: the round each target stops at (the first that meets it, else the last).

Columns: value Pearson and relative error to the truth, the share of contributors whose
true value lies inside the 95% interval, the mean half-width over the sd of the true
values, the compute (training CPU seconds of the coalitions, retrains and the pruned
model's recovery, over the exact game's retrains), the rounds run and the share of
seeds whose target was met; means over the design seeds.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from correction import _noise, exact_values, load_game, metrics, run_plan, setup_seconds


def round_values(masks, cheap, retrain, k, method, seed, n_boot):
    """One round's estimate, as the workflow's shapley_estimate makes it."""
    from diffcredit.estimators import estimate
    from diffcredit.estimators.correction import corrected_estimate

    n = masks.shape[1]
    full = 2**n - 1
    codes = masks.astype(np.int64) @ (1 << np.arange(n))
    cv = np.array([cheap[c][0] for c in codes])
    noise = _noise(cheap, codes, full)
    if not k:
        return estimate(masks, cv, cheap[0][0], cheap[full][0], method, seed=seed, n_boot=n_boot, noise=noise)
    rv = np.array([retrain[c][0] for c in codes[:k]])
    df, _ = corrected_estimate(masks, cv, cheap[0][0], cheap[full][0], method, np.arange(k), rv, retrain[0][0],
                               retrain[full][0], seed=seed, n_boot=n_boot, noise=noise)
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("."))
    ap.add_argument("--configfile", nargs="*", default=[])
    ap.add_argument("--strategy", default="sft")
    ap.add_argument("--method", default="stratified")
    ap.add_argument("--budget", type=int, default=12)
    ap.add_argument("--retrains", type=int, default=6)
    ap.add_argument("--max-budget", type=int, default=62)
    ap.add_argument("--relative", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    ap.add_argument("--designs", type=int, default=50)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from diffcredit.coalitions import sample_design
    from diffcredit.estimators.adaptive import round_record, schedule

    plan = run_plan(args.workdir, args.configfile)
    n = plan.n
    setup = setup_seconds(plan, args.strategy)
    rounds = schedule(args.budget, args.retrains, args.max_budget)
    print(f"rounds (coalitions, retrains): {rounds}", flush=True)
    games = {}
    for prop in plan.properties:
        cheap, seconds_c = load_game(plan, args.strategy, prop)
        retrain, seconds_r = load_game(plan, "retrain", prop)
        games[prop] = (cheap, retrain, exact_values(n, retrain), seconds_c, seconds_r)
        print(f"{prop}: exact retrained values {np.round(games[prop][2], 4).tolist()}", flush=True)
    truth_cost = sum(games[plan.properties[0]][4].values())
    rows = []
    for seed in range(args.designs):
        per_round = []  # per round: ({prop: metrics}, values table of every property, compute)
        for budget, k in rounds:
            masks = sample_design(n, budget, "stratified", seed)
            codes = masks.astype(np.int64) @ (1 << np.arange(n))
            _, _, _, seconds_c, seconds_r = games[plan.properties[0]]
            cost = setup + sum(seconds_c[c] for c in codes) + sum(seconds_r[c] for c in codes[:k])
            found, tables = {}, []
            for prop, (cheap, retrain, truth, _, _) in games.items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    df = round_values(masks, cheap, retrain, k, args.method, seed, args.n_boot)
                found[prop] = metrics(df, truth)
                tables.append(df.assign(property=prop, contributor=[plan.names[i] for i in df.index]))
            per_round.append((found, pd.concat(tables), cost / truth_cost))
        for r, (found, _, compute) in enumerate(per_round):
            for prop, m in found.items():
                rows.append({"arm": "fixed", "target": np.nan, "budget": rounds[r][0], "retrains": rounds[r][1],
                             "property": prop, "seed": seed, **m, "compute": compute, "rounds": r + 1, "met": np.nan})
        for rel in args.relative:
            met = [round_record(table, {"relative": rel})["met"] for _, table, _ in per_round]
            stop = met.index(True) if True in met else len(rounds) - 1
            found, _, compute = per_round[stop]
            for prop, m in found.items():
                rows.append({"arm": "adaptive", "target": rel, "budget": np.nan, "retrains": np.nan,
                             "property": prop, "seed": seed, **m, "compute": compute, "rounds": stop + 1,
                             "met": float(met[stop])})
    table = pd.DataFrame(rows)
    keys = ["arm", "target", "budget", "retrains", "property"]
    summary = table.groupby(keys, sort=False, dropna=False).mean(numeric_only=True).drop(columns="seed")
    summary["designs"] = table.groupby(keys, sort=False, dropna=False).size()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary.reset_index().to_csv(args.out, index=False)
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
