"""Do intervals with `training_noise` cover the randomness of training?

1. Synthetic games (exact values known): an additive game plus a function of size on
   11 players, every coalition measured with N(0, 1) noise (the anchors exact), k rows
   measured twice. Coverage of the true values and mean half-width with and without
   the training term, per design, over 200 games. No workflow run needed.

2. The known-answer world (configs/known.yaml), its whole design trained a second time
   with the recipe's seed + 1 (benchmarks/known_twice.yaml). Per property: the training
   sd from the shipped 6 pairs and from all 30; the credits of the two trainings; how
   far apart they are against the shipped intervals (a 95% interval of each run's
   credit should hold the other run's within sqrt(2) x its half-width), and the sd of
   the credits that the generated images cause (root mean square over players), from
   every row's and anchor's resampled images or from the anchors' alone. held_runs_1_2:
   the same check on the world's two earlier runs, whose training data came in
   different orders (benchmarks/results/known_digits_values_*.csv).

    snakemake --cores all --configfile configs/known.yaml benchmarks/known_twice.yaml
    python benchmarks/training_noise.py --workdir . --out benchmarks/results/training_noise_known.csv
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from correction import run_plan  # noqa: E402

from diffcredit.coalitions import sample_design  # noqa: E402
from diffcredit.estimators import BootstrapWarning, estimate, get_method  # noqa: E402
from diffcredit.estimators.estimation import _noise_draws  # noqa: E402
from diffcredit.estimators.training_noise import pooled_variance  # noqa: E402

DESIGNS = [("stratified", "stratified", 30), ("stratified", "stratified", 60), ("stratified", "stratified", 120),
           ("kernelshap", "kernel_paired", 60), ("kernelshap", "kernel_paired", 120)]


def synthetic(trials: int = 200, n: int = 11, k: int = 6, sigma: float = 1.0) -> pd.DataFrame:
    w = np.random.default_rng(0).normal(size=n)

    def game(m):
        return m @ w + 3 * np.sqrt(m.sum(axis=1))

    truth = w + 3 * np.sqrt(n) / n
    v_full = float(game(np.ones((1, n), bool))[0])
    rows = []
    for method, scheme, budget in DESIGNS:
        masks = sample_design(n, budget, scheme, 0)
        out = {"with": ([], []), "without": ([], [])}
        for t in range(trials):
            rng = np.random.default_rng(t + 1)
            v = game(masks) + rng.normal(0, sigma, len(masks))
            training = pooled_variance(v[:k], game(masks[:k]) + rng.normal(0, sigma, k))
            for name, arg in (("with", training), ("without", None)):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", BootstrapWarning)
                    d = estimate(masks, v, 0.0, v_full, method, seed=t, training=arg)
                out[name][0].append(np.mean((d["ci_low"] <= truth) & (truth <= d["ci_high"])))
                out[name][1].append(np.mean(d["ci_high"] - d["ci_low"]) / 2)
        rows.append({"part": "synthetic", "method": method, "scheme": scheme, "budget": budget, "trained_twice": k,
                     "coverage_without": np.mean(out["without"][0]), "coverage_with": np.mean(out["with"][0]),
                     "half_width_without": np.mean(out["without"][1]), "half_width_with": np.mean(out["with"][1])})
    return pd.DataFrame(rows)


def known(workdir: Path) -> pd.DataFrame:
    plan = run_plan(workdir, [REPO / "configs" / "known.yaml", REPO / "benchmarks" / "known_twice.yaml"])
    shipped, whole = plan.estimators
    node = plan.nodes[whole.key]

    def scores(keys):
        return [json.loads((workdir / plan.nodes[k].path).read_text())["properties"] for k in keys]

    first, again = scores(node.parents["rows"]), scores(node.parents["again"])
    empty, full = scores([node.parents["empty"], node.parents["full"]])
    table = pd.read_parquet(workdir / plan.values_dir(shipped) / "values.parquet")
    rows = []
    for prop in plan.properties:
        a = np.array([s[prop]["value"] for s in first])
        b = np.array([s[prop]["value"] for s in again])
        anchors = (empty[prop]["value"], full[prop]["value"])
        phi_a = estimate(whole.masks, a, *anchors, whole.method, n_boot=0)["value"].to_numpy()
        phi_b = estimate(whole.masks, b, *anchors, whole.method, n_boot=0)["value"].to_numpy()
        t = table[table["property"] == prop].set_index("contributor").loc[plan.names]
        np.testing.assert_allclose(t["value"].to_numpy(), phi_a, rtol=1e-9, atol=1e-9)
        half = (t["ci_high"] - t["ci_low"]).to_numpy() / 2
        diff = phi_a - phi_b
        # The images' share: every row's and anchor's resampled images, or the anchors' alone.
        reps = np.array([s[prop]["replicates"] for s in first])
        anchor_reps = (np.array(empty[prop]["replicates"]), np.array(full[prop]["replicates"]))
        point = get_method(whole.method).point
        images = _noise_draws(point, whole.masks, (reps, *anchor_reps))
        anchors_only = _noise_draws(point, whole.masks, (np.repeat(a[:, None], reps.shape[1], 1), *anchor_reps))
        rows.append({"part": "known", "property": prop, "players": len(plan.names),
                     "sd_6_pairs": np.sqrt(pooled_variance(a[:6], b[:6])[0]),
                     "sd_30_pairs": np.sqrt(pooled_variance(a, b)[0]),
                     "credit_diff_rms": float(np.sqrt(np.mean(diff**2))),
                     "credit_diff_max": float(np.abs(diff).max()),
                     "image_sd": float(np.sqrt(np.mean(images**2))),
                     "image_sd_anchors_only": float(np.sqrt(np.mean(anchors_only**2))),
                     "half_width_mean": float(half.mean()),
                     "implied_diff_sd": float(np.sqrt(np.mean((np.sqrt(2) * half / 1.96) ** 2))),
                     "held": int((np.abs(diff) <= np.sqrt(2) * half).sum()),
                     "held_runs_1_2": _runs_held(prop, t, half)})
    return pd.DataFrame(rows)


def _runs_held(prop: str, table: pd.DataFrame, half: np.ndarray) -> int:
    """How many players' credits in the two earlier runs of the world (their training
    data in two orders, no training_noise) are within sqrt(2) half-widths of each other."""
    runs = [pd.read_csv(REPO / "benchmarks" / "results" / f"known_digits_values_{c}.csv") for c in ("d4a66d6", "06955b8")]
    a, b = (r[r["property"] == prop].set_index("contributor")["value"].loc[table.index] for r in runs)
    return int((np.abs(a - b).to_numpy() <= np.sqrt(2) * half).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, help="a run of configs/known.yaml + benchmarks/known_twice.yaml")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    parts = [synthetic()]
    if args.workdir:
        parts.append(known(args.workdir.resolve()))
    result = pd.concat(parts, ignore_index=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(args.out, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        text = "\n\n".join(p.dropna(axis=1, how="all").to_string(index=False, float_format="{:.3f}".format)
                           for p in parts)
    args.out.with_suffix(".txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
