"""Common random numbers: every coalition model generates from the same seeds. How much
does that lower the image noise of the Shapley values, and does the image bootstrap
see it? On a run that evaluated every coalition (configs/exact6.yaml), scored again
under other generation seeds:

    snakemake --cores all --configfile configs/exact6.yaml
    for s in 1 2 3 4 5 6 7; do
        snakemake --cores all --configfile configs/exact6.yaml --config "generate={seed: $s}"
    done
    python benchmarks/common_noise.py --workdir . --configfile configs/exact6.yaml \\
        --seeds 0 1 2 3 4 5 6 7 --out benchmarks/results/common_noise_exact6.csv

Models are the same in every run (generation is not in their keys); only samples,
features and scores are new. Per property and game (strategy), the standard deviation
of the exact Shapley values (root mean square over contributors) that the generated
images cause:

* common: over the generation seeds, every coalition sharing the seed, as the workflow
  runs (the truth for the workflow's values);
* independent: every coalition drawing its own seed from the same runs (Monte Carlo),
  as if each model had its own generation seeds;
* bootstrap_own: the image bootstrap as scored (each coalition resamples its images
  with its own draws), mean over the seeds' runs;
* bootstrap_shared: the image bootstrap with the same resampling draws for every
  coalition (image i of every model comes from the same initial noise).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from correction import run_plan


def exact_matrix(n: int) -> np.ndarray:
    """(2^n, n) weights: phi = values @ W for a game given on every coalition code."""
    from math import factorial

    w = np.zeros((2**n, n))
    for code in range(2**n):
        size = code.bit_count()
        for i in range(n):
            if code >> i & 1:
                w[code, i] += factorial(size - 1) * factorial(n - size) / factorial(n)
            else:
                w[code, i] -= factorial(size) * factorial(n - size - 1) / factorial(n)
    return w


def rms_sd(draws: np.ndarray) -> float:
    """Root mean square over contributors of the sd over draws (axis 0)."""
    return float(np.sqrt(np.mean(np.var(draws, axis=0, ddof=1))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("."))
    ap.add_argument("--configfile", nargs="*", default=[])
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("--strategies", nargs="+", default=["sft", "retrain"])
    ap.add_argument("--draws", type=int, default=2000, help="Monte Carlo draws of the independent arm")
    ap.add_argument("--n-boot", type=int, default=100)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from diffcredit.artifacts import read_json, read_npz
    from diffcredit.properties import image_replicates
    from diffcredit.stages.scoring import _grouped

    plans = {s: run_plan(args.workdir, args.configfile, generate={"seed": s}) for s in args.seeds}
    first = plans[args.seeds[0]]
    n, props = first.n, first.properties
    weights = exact_matrix(n)
    rng = np.random.default_rng(0)
    rows = []
    for strategy in args.strategies:
        # values[prop]: (seeds, 2^n); own / shared[prop]: (seeds, n_boot, 2^n)
        values = {p: np.zeros((len(args.seeds), 2**n)) for p in props}
        own = {p: np.zeros((len(args.seeds), args.n_boot, 2**n)) for p in props}
        shared = {p: np.zeros((len(args.seeds), args.n_boot, 2**n)) for p in props}
        for si, s in enumerate(args.seeds):
            plan = plans[s]
            for code in range(2**n):
                members = tuple(name for i, name in enumerate(plan.names) if code >> i & 1)
                score_node = plan.nodes[plan.score_key(plan.model_key(members, strategy))]
                scores = read_json(Path(score_node.path))["properties"]
                feats = _grouped(read_npz(plan.nodes[score_node.parents["features"]].path))
                refs = {role.removeprefix("reference_"): read_npz(plan.nodes[k].path)
                        for role, k in score_node.parents.items() if role.startswith("reference_")}
                common = image_replicates(props, feats, refs, plan.cfg["scores"], args.n_boot, seed=1000 + s)
                for p in props:
                    values[p][si, code] = scores[p]["value"]
                    own[p][si, :, code] = scores[p]["replicates"][:args.n_boot]
                    shared[p][si, :, code] = common[p]
            print(f"{strategy}, generation seed {s}: read", flush=True)
        for p in props:
            phi = values[p] @ weights  # (seeds, n)
            pick = rng.integers(0, len(args.seeds), (args.draws, 2**n))  # a seed per coalition
            indep = values[p][pick, np.arange(2**n)] @ weights
            boot_own = np.mean([rms_sd(own[p][si] @ weights) for si in range(len(args.seeds))])
            boot_shared = np.mean([rms_sd(shared[p][si] @ weights) for si in range(len(args.seeds))])
            rows.append({"property": p, "strategy": strategy, "seeds": len(args.seeds),
                         "values_sd": float(np.mean(np.std(phi, axis=1))), "common": rms_sd(phi),
                         "independent": rms_sd(indep), "bootstrap_own": boot_own, "bootstrap_shared": boot_shared})
    table = pd.DataFrame(rows)
    table["independent_over_common"] = table["independent"] / table["common"]
    table["own_over_common"] = table["bootstrap_own"] / table["common"]
    table["shared_over_common"] = table["bootstrap_shared"] / table["common"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
