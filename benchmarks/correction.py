"""Corrected estimates against the exact retrained Shapley values, on a run that
evaluated every coalition under a cheap strategy and under retrain.

    snakemake --cores all --configfile configs/exact6.yaml     # every coalition, both games
    python benchmarks/correction.py --workdir . --configfile configs/exact6.yaml \\
        --out benchmarks/results/correction_exact6.csv

The truth is the exact Shapley value of the retrained game (all 2^n - 2 coalitions and
the anchors, each one retrain). For each of `--designs` design seeds, a stratified
design of `--budget` coalitions is drawn and three arms are estimated from the run's
scores (no training here):

* cheap: the configured method on the cheap strategy's scores of the design;
* retrain: the same method on retrained scores of the design's first k rows, where
  they identify the values, and at the compute of the corrected arm;
* corrected: the cheap design plus its first k rows retrained (`retrains: k`);
* difference: the cheap values plus the same method on r - c over the first k rows
  (slope 1, no prior; where the k rows identify the values): the plain control variate,
  its interval the two half-widths added in quadrature.

Per arm, property and k: value Pearson and relative error to the truth, the share of
contributors whose true value lies inside the 95% interval, the mean interval
half-width over the standard deviation of the true values, and the compute (CPU
seconds of the training records) over the truth's, means over the design seeds.
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


def load_game(plan, strategy: str, prop: str):
    """{coalition code: (value, image replicates)} for every coalition and both anchors,
    and {code: training CPU seconds} for the coalitions."""
    from diffcredit.artifacts import read_json
    from diffcredit.evaluation.fidelity import compute_seconds

    n, values, seconds = plan.n, {}, {}
    for code in range(2**n):
        members = tuple(name for i, name in enumerate(plan.names) if code >> i & 1)
        model = plan.model_key(members, strategy)
        score = read_json(Path(plan.nodes[plan.score_key(model)].path))["properties"][prop]
        values[code] = (float(score["value"]), np.asarray(score.get("replicates", []), dtype=float))
        if 0 < code < 2**n - 1:
            seconds[code] = compute_seconds(read_json(Path(plan.nodes[model].path) / "training.json"))
    return values, seconds


def run_plan(workdir: Path, configfiles, **override):
    """The Plan of the embedded default and `configfiles` (then `override`), its results
    under `workdir`: the run whose artifacts a benchmark reads."""
    from diffcredit.config import deep_update, load_yaml
    from diffcredit.plan import Plan

    cfg = load_yaml(REPO / "config.yaml")
    for f in configfiles:
        cfg = deep_update(cfg, load_yaml(f))
    cfg = deep_update(cfg, override)
    cfg["results"] = str(workdir / cfg["results"])
    return Plan(cfg, REPO / "workflow" / "schemas" / "config.schema.yaml")


def setup_seconds(plan, strategy: str) -> float:
    """The pruned model's recovery fine-tune, which sft and ga coalitions start from."""
    from diffcredit.artifacts import read_json
    from diffcredit.evaluation.fidelity import compute_seconds

    if strategy not in ("sft", "ga"):
        return 0.0
    return compute_seconds(read_json(Path(plan.nodes[plan.pruned_key].path) / "training.json"))


def exact_values(n: int, table: dict) -> np.ndarray:
    from diffcredit.estimators import estimate

    codes = np.arange(1, 2**n - 1)
    masks = ((codes[:, None] >> np.arange(n)) & 1).astype(bool)
    return estimate(masks, [table[c][0] for c in codes], table[0][0], table[2**n - 1][0], "exact")["value"].to_numpy()


def metrics(df: pd.DataFrame, truth: np.ndarray) -> dict:
    value, low, high = (df[c].to_numpy() for c in ("value", "ci_low", "ci_high"))
    spread = np.std(truth)
    return {"pearson": float(np.corrcoef(value, truth)[0, 1]) if np.std(value) > 0 else np.nan,
            "rel_error": float(np.linalg.norm(value - truth) / np.linalg.norm(truth)),
            "coverage": float(np.mean((low <= truth) & (truth <= high))),
            "half_width": float(np.mean(high - low) / 2 / spread)}


def arms(masks, codes, cheap, retrain, seconds_c, seconds_r, setup, method, ks, seed, n_boot):
    """(arm, k, DataFrame, compute seconds) for one design."""
    from diffcredit.coalitions import sample_design
    from diffcredit.estimators import IdentificationError, estimate
    from diffcredit.estimators.correction import check_paired_rows, corrected_estimate

    n_all = len(codes)
    full = 2 ** masks.shape[1] - 1
    cv = np.array([cheap[c][0] for c in codes])
    noise = _noise(cheap, codes, full)
    anchors_c, anchors_r = (cheap[0][0], cheap[full][0]), (retrain[0][0], retrain[full][0])
    cost_c = setup + sum(seconds_c[c] for c in codes)
    out = [("cheap", 0, estimate(masks, cv, *anchors_c, method, seed=seed, n_boot=n_boot, noise=noise), cost_c)]
    mean_r = np.mean(list(seconds_r.values()))
    for k in ks:
        if k > n_all:
            continue
        rv = np.array([retrain[c][0] for c in codes[:k]])
        cost = cost_c + sum(seconds_r[c] for c in codes[:k])
        try:
            check_paired_rows(masks, np.arange(k))
        except ValueError:
            continue
        df, _ = corrected_estimate(masks, cv, *anchors_c, method, np.arange(k), rv, *anchors_r, seed=seed,
                                   n_boot=n_boot, noise=noise)
        out.append(("corrected", k, df, cost))
        try:  # the plain difference: cheap values plus the method on r - c over the k rows
            diff = estimate(masks[:k], rv - cv[:k], anchors_r[0] - anchors_c[0], anchors_r[1] - anchors_c[1],
                            method, seed=seed + 1, n_boot=n_boot, noise=_difference_noise(cheap, retrain, codes[:k], full))
            base, value = out[0][2], out[0][2]["value"] + diff["value"]
            half = np.hypot((base["ci_high"] - base["ci_low"]) / 2, (diff["ci_high"] - diff["ci_low"]) / 2)
            out.append(("difference", k, pd.DataFrame({"value": value, "ci_low": value - half,
                                                       "ci_high": value + half}), cost))
        except IdentificationError:
            pass
        # Retraining alone at the corrected arm's compute: the stratified design (same seed,
        # prefix-stable, so it starts with the same rows) cut at as many rows as that buys.
        n = masks.shape[1]
        kr = min(2**n - 2, int(cost // mean_r))
        if kr < 1:
            continue
        design = sample_design(n, kr, "stratified", seed)
        own = design.astype(np.int64) @ (1 << np.arange(n))
        try:
            df = estimate(design, [retrain[c][0] for c in own], *anchors_r, method, seed=seed, n_boot=n_boot,
                          noise=_noise(retrain, own, full))
        except IdentificationError:
            continue
        out.append(("retrain", k, df, sum(seconds_r[c] for c in own)))
    return out


def _difference_noise(cheap, retrain, codes, full):
    a, b = _noise(cheap, codes, full), _noise(retrain, codes, full)
    return None if a is None or b is None else tuple(y - x for x, y in zip(a, b))


def _noise(game, codes, full):
    """The image replicates of `codes` and both anchors, as `estimate` takes them, or None."""
    if not all(len(game[c][1]) for c in list(codes) + [0, full]):
        return None
    return np.stack([game[c][1] for c in codes]), game[0][1], game[full][1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("."))
    ap.add_argument("--configfile", nargs="*", default=[])
    ap.add_argument("--strategy", default="sft")
    ap.add_argument("--method", default="stratified")
    ap.add_argument("--budget", type=int, default=20)
    ap.add_argument("--retrains", type=int, nargs="*", default=[5, 6, 8, 10, 12, 16, 20])
    ap.add_argument("--designs", type=int, default=50)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from diffcredit.coalitions import sample_design

    plan = run_plan(args.workdir, args.configfile)
    n = plan.n
    setup = setup_seconds(plan, args.strategy)
    rows = []
    for prop in plan.properties:
        cheap, seconds_c = load_game(plan, args.strategy, prop)
        retrain, seconds_r = load_game(plan, "retrain", prop)
        truth = exact_values(n, retrain)
        truth_cost = sum(seconds_r.values())
        print(f"{prop}: exact retrained values {np.round(truth, 4).tolist()}", flush=True)
        alone = [1 << i for i in range(n)]
        print(f"  one-contributor coalitions, {args.strategy}: {[round(cheap[c][0], 3) for c in alone]}; "
              f"retrain: {[round(retrain[c][0], 3) for c in alone]}", flush=True)
        for seed in range(args.designs):
            masks = sample_design(n, args.budget, "stratified", seed)
            codes = masks.astype(np.int64) @ (1 << np.arange(n))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for arm, k, df, cost in arms(masks, codes, cheap, retrain, seconds_c, seconds_r,
                                             setup,
                                             args.method, args.retrains, seed, args.n_boot):
                    rows.append({"property": prop, "arm": arm, "k": k, "design_seed": seed,
                                 **metrics(df, truth), "compute": cost / truth_cost})
    table = pd.DataFrame(rows)
    summary = table.groupby(["property", "arm", "k"], sort=False).mean(numeric_only=True).drop(columns="design_seed")
    summary["designs"] = table.groupby(["property", "arm", "k"], sort=False).size()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary.reset_index().to_csv(args.out, index=False)
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
