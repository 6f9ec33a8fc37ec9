"""The tree surrogate against the regression estimators, on games with known values.

For n in {20, 100, 258} players and budgets m in {2n, 5n} coalitions (plus the
two anchors), each on the same designs:

* ``tree``: exact Shapley values of boosted trees fitted to the design (tree.py),
  on the ``kernel`` design (SurrogateSHAP's: sizes drawn from the Shapley
  kernel) and on the ``stratified`` one;
* ``stratified_tree``: the trees fitted to the ``stratified`` regression's
  residuals, on the ``stratified`` design;
* ``kernelshap`` on the ``kernel`` design, ``stratified`` on the ``stratified``
  design (the workflow's default, unshrunk and shrunk).

Games (games.py): ``interactions`` (additive, pairwise and three-way terms),
``airport``, ``voting``, ``harmful`` (5% of the players negative), and
``noisy`` / ``noisy_low`` (``interactions`` plus noise of 1 and 0.1 times the
RMS Shapley value, a fixed function of the coalition). Error: relative L2 error
||estimate - truth|| / ||truth||, averaged over seeds; the table gives each
estimator's error over the best regression estimator's, per game, n and m (a
ratio above 1: the trees are worse). Spearman correlation with the truth too,
as SurrogateSHAP reports it.

Run from the repository root, alone (the fits use one thread):

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/tree.py

It writes benchmarks/results/tree.{csv,md} (about 20 minutes on one core).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from estimators import make_games
from games import harmful_game, relative_error
from scipy.stats import spearmanr

from diffcredit.coalitions import sample_design
from diffcredit.estimators import estimate

# (label, method, scheme, shrink)
ESTIMATORS = (
    ("tree/kernel", "tree", "kernel", False),
    ("tree/stratified", "tree", "stratified", False),
    ("stratified_tree/stratified", "stratified_tree", "stratified", False),
    ("kernelshap/kernel", "kernelshap", "kernel", False),
    ("stratified/stratified", "stratified", "stratified", False),
    ("stratified/stratified/shrunk", "stratified", "stratified", True),
)
TREES = ("tree/kernel", "tree/stratified", "stratified_tree/stratified")
REGRESSION = ("kernelshap/kernel", "stratified/stratified", "stratified/stratified/shrunk")


def run(players, factors, seeds) -> pd.DataFrame:
    rows = []
    for n in players:
        for seed in range(seeds):
            games = make_games(n, seed) + [harmful_game(n, seed)]
            for factor in factors:
                m = factor * n
                designs = {s: sample_design(n, m, s, seed) for s in ("kernel", "stratified")}
                for game in games:
                    for label, method, scheme, shrink in ESTIMATORS:
                        masks = designs[scheme]
                        start = time.perf_counter()
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            table = estimate(masks, game.value(masks), game.v_empty, game.v_full, method,
                                             n_boot=0, shrink=shrink)
                        seconds = time.perf_counter() - start
                        value = table["value"].to_numpy()
                        rows.append({"n": n, "budget": m, "seed": seed, "game": game.name, "estimator": label,
                                     "error": relative_error(value, game.shapley),
                                     "spearman": spearmanr(value, game.shapley).statistic, "seconds": seconds})
                    print(f"n={n} seed={seed} m={m} {game.name}: done", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def summarise(frame: pd.DataFrame) -> str:
    mean = frame.groupby(["n", "budget", "game", "estimator"])[["error", "spearman", "seconds"]].mean()
    errors = mean["error"].unstack("estimator")
    best = errors[list(REGRESSION)].min(axis=1)
    lines = ["## Relative L2 error (mean over seeds), and each tree method's error over the best regression estimator's",
             "", "| n | m | game | " + " | ".join(e for e, *_ in ESTIMATORS) + " | " + " | ".join(f"{t} ratio" for t in TREES) + " |",
             "|---|---|---|" + "---|" * (len(ESTIMATORS) + len(TREES))]
    for (n, m, game), row in errors.iterrows():
        cells = " | ".join(f"{row[e]:.3f}" for e, *_ in ESTIMATORS)
        b = best[(n, m, game)]
        ratios = " | ".join(f"{row[t] / b:.2f}" for t in TREES)
        lines.append(f"| {n} | {m} | {game} | {cells} | {ratios} |")
    spear = mean["spearman"].unstack("estimator")
    lines += ["", "## Spearman correlation with the true values (mean over seeds)", "",
              "| n | m | game | " + " | ".join(e for e, *_ in ESTIMATORS) + " |", "|---|---|---|" + "---|" * len(ESTIMATORS)]
    for (n, m, game), row in spear.iterrows():
        lines.append(f"| {n} | {m} | {game} | " + " | ".join(f"{row[e]:.3f}" for e, *_ in ESTIMATORS) + " |")
    seconds = frame.groupby(["n", "budget", "estimator"])["seconds"].mean().unstack("estimator")
    lines += ["", "## Seconds per estimate (point only, mean)", "",
              "| n | m | " + " | ".join(e for e, *_ in ESTIMATORS) + " |", "|---|---|" + "---|" * len(ESTIMATORS)]
    for (n, m), row in seconds.iterrows():
        lines.append(f"| {n} | {m} | " + " | ".join(f"{row[e]:.2f}" for e, *_ in ESTIMATORS) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--players", type=int, nargs="+", default=[20, 100, 258])
    parser.add_argument("--factors", type=int, nargs="+", default=[2, 5])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/tree")
    args = parser.parse_args()
    frame = run(args.players, args.factors, args.seeds)
    frame.to_csv(f"{args.out}.csv", index=False)
    text = summarise(frame)
    Path(f"{args.out}.md").write_text(
        f"# {__doc__.splitlines()[0]}\n\n`{' '.join(sys.argv)}`\n\n{text}")
    print(text)


if __name__ == "__main__":
    main()
