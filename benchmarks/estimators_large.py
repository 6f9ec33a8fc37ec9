"""The value estimators at large numbers of players, against shapiq's approximators.

For n in {64, 128, 258} players and budgets m in {2n, 5n, 10n} coalitions, the
package's Shapley estimators and shapiq's Shapley-value approximators estimate
the values of games whose exact values have closed forms (games.py): the five
games of estimators.py (interactions, airport, voting, noisy, noisy_low) and
``harmful``, in which 5% of the players have clearly negative values. The error
is the relative L2 error ||estimate - truth|| / ||truth||, averaged over seeds.

Budgets are counted as game evaluations. The package's estimators get m
coalitions plus the two anchors v(empty) and v(full); shapiq's approximators
get a budget of m + 2, which (as they count it) includes the empty and the
full coalition. Every call of the game by an approximator is counted, and a
run that evaluates more than m + 2 coalitions is an error.

"shapiq's best" is, per game, n and m, the approximator with the lowest mean
error; "our best" likewise among the package's estimators. Their ratio is the
headline; the ratio of the workflow's default (``stratified`` design and
method, shrunk) to shapiq's best is reported too.

The closed forms are checked against exact enumeration at n = 10 and, at
every n of the run, by efficiency and by a permutation-sampling estimate
whose error must be within what its own variance explains.

Run from the repository root, one thread per process:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
        PYTHONPATH=src .venv/bin/python benchmarks/estimators_large.py

It prints progress to stderr, and writes benchmarks/results/estimators_large.{csv,md}.
shapiq is a test dependency, used here only as the comparison.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from estimators import NOISY_GAMES, make_games
from games import Game, harmful_game, relative_error

from diffcredit.coalitions import min_budget, sample_design
from diffcredit.estimators import IdentificationError, estimate

PLAYERS = (64, 128, 258)
BUDGET_FACTORS = (2, 5, 10)
# Seeds per n: fewer where every estimate is slower.
SEEDS = {64: 20, 128: 15, 258: 8}
GOAL_RATIO = 0.5
SHRUNK = "/shrunk"
# The package's estimators (scheme, method[/shrunk]); the default comes first.
DEFAULT = ("stratified", "stratified" + SHRUNK)
OURS = (
    DEFAULT,
    ("stratified", "stratified"),
    ("leverage", "leverage"),
    ("leverage", "leverage" + SHRUNK),
    ("kernel_paired", "kernelshap"),
    ("kernel_paired", "kernelshap" + SHRUNK),
    ("kernel", "stratified" + SHRUNK),
    ("leverage", "stratified"),
    ("leverage", "stratified" + SHRUNK),
)
RESULTS = Path(__file__).parent / "results"


def shapiq_approximators(n: int) -> dict:
    """name -> (factory(seed), whether it runs at this n). Every approximator of
    shapiq 1.4 that returns order-1 Shapley values, with and without its pairing
    option where it has one. Order-2 ones are fitted at order 1, where they are
    the Shapley regression. kADDSHAP fits all pairs (n(n-1)/2 columns) and SVARM
    takes minutes per run at n = 258 (measured: 100 to 240 s), so they run at
    n = 64 only (where neither was the best on any game)."""
    import shapiq.approximator as approximators

    def make(cls, **options):
        return lambda seed: cls(n, random_state=seed, **options)

    return {
        "KernelSHAP": (make(approximators.KernelSHAP), True),
        "KernelSHAP paired": (make(approximators.KernelSHAP, pairing_trick=True), True),
        "UnbiasedKernelSHAP": (make(approximators.UnbiasedKernelSHAP), True),
        "UnbiasedKernelSHAP paired": (make(approximators.UnbiasedKernelSHAP, pairing_trick=True), True),
        "RegressionFSII order 1 paired": (make(approximators.RegressionFSII, max_order=1, pairing_trick=True), True),
        "KernelSHAPIQ SII order 1 paired": (
            make(approximators.KernelSHAPIQ, max_order=1, index="SII", pairing_trick=True), True),
        "PermutationSamplingSV": (make(approximators.PermutationSamplingSV), True),
        "OwenSamplingSV": (make(approximators.OwenSamplingSV), True),
        "StratifiedSamplingSV": (make(approximators.StratifiedSamplingSV), True),
        "SVARM": (make(approximators.SVARM), n <= 64),
        "kADDSHAP paired": (make(approximators.kADDSHAP, max_order=2, pairing_trick=True), n <= 64),
    }


def make_large_games(n: int) -> list[Game]:
    """The five games of estimators.py (interactions first) and ``harmful``."""
    return [*make_games(n), harmful_game(n, 0)]


class CountedGame:
    """A game as shapiq calls it (one coalition or an array of them), counting evaluations."""

    def __init__(self, game: Game):
        self.game = game
        self.evaluations = 0

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        coalitions = np.asarray(coalitions, dtype=bool)
        if coalitions.ndim == 1:
            coalitions = coalitions[None, :]
        self.evaluations += len(coalitions)
        return self.game.value(coalitions)


def run_shapiq(factory, game: Game, budget: int, seed: int) -> np.ndarray:
    """One approximator's order-1 values at `budget` evaluations (anchors included)."""
    counted = CountedGame(game)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = factory(seed).approximate(budget, counted)
    if counted.evaluations > budget:
        raise RuntimeError(f"{counted.evaluations} evaluations for a budget of {budget}")
    return np.array([values[(i,)] for i in range(game.n)])


def run_ours(scheme: str, method: str, masks: np.ndarray, values: np.ndarray, game: Game) -> np.ndarray:
    base = method.removesuffix(SHRUNK)
    if len(masks) < min_budget(scheme, base, game.n):
        return np.full(game.n, np.nan)  # refused: below the method's minimum budget
    try:
        result = estimate(masks, values, game.v_empty, game.v_full, base, n_boot=0, shrink=base != method)
    except IdentificationError:
        return np.full(game.n, np.nan)
    return result["value"].to_numpy()


def run(players, seeds: dict, factors, log) -> pd.DataFrame:
    records = []
    for n in players:
        start = time.perf_counter()
        games = make_large_games(n)
        approximators = {k: f for k, (f, active) in shapiq_approximators(n).items() if active}
        budgets = [f * n for f in factors]
        log(f"n = {n}: {len(games)} games ready in {time.perf_counter() - start:.0f} s; "
            f"{seeds[n]} seeds, budgets {budgets}")
        for seed in range(seeds[n]):
            designs = {s: sample_design(n, max(budgets), s, seed) for s in {s for s, _ in OURS}}
            for game in games:
                evaluated = {s: game.value(d) for s, d in designs.items()}
                for m in budgets:
                    for scheme, method in OURS:
                        value = run_ours(scheme, method, designs[scheme][:m], evaluated[scheme][:m], game)
                        records.append((game.name, n, m, m // n, "diffcredit", f"{scheme}+{method}", seed,
                                        relative_error(value, game.shapley)))
                    for name, factory in approximators.items():
                        try:
                            value = run_shapiq(factory, game, m + 2, seed)
                        except (ValueError, np.linalg.LinAlgError):
                            value = np.full(n, np.nan)
                        records.append((game.name, n, m, m // n, "shapiq", name, seed,
                                        relative_error(value, game.shapley)))
            log(f"n = {n}: seed {seed + 1}/{seeds[n]} done, {time.perf_counter() - start:.0f} s")
    return pd.DataFrame.from_records(records, columns=["game", "n", "m", "factor", "source", "estimator",
                                                       "seed", "error"])


def summarise(raw: pd.DataFrame) -> pd.DataFrame:
    grouped = raw.groupby(["game", "n", "m", "factor", "source", "estimator"], sort=False)["error"]
    return grouped.agg(mean_error="mean", sd_error="std", seeds="size",
                       failed=lambda e: int(e.isna().sum())).reset_index()


def ratios(summary: pd.DataFrame) -> pd.DataFrame:
    """Per game, n and m: shapiq's best, our best, the default, and the ratios.
    An estimator that failed on some seed is not a candidate there."""
    rows = []
    default = f"{DEFAULT[0]}+{DEFAULT[1]}"
    for (game, n, factor), part in summary.groupby(["game", "n", "factor"], sort=False):
        usable = part[(part["failed"] == 0) & np.isfinite(part["mean_error"])]
        theirs = usable[usable["source"] == "shapiq"].set_index("estimator")["mean_error"]
        ours = usable[usable["source"] == "diffcredit"].set_index("estimator")["mean_error"]
        default_error = ours.get(default, np.nan)
        rows.append((game, n, factor, theirs.idxmin(), theirs.min(), ours.idxmin(), ours.min(),
                     ours.min() / theirs.min(), default_error, default_error / theirs.min()))
    table = pd.DataFrame(rows, columns=["game", "n", "factor", "shapiq_best", "shapiq_error", "our_best",
                                        "our_error", "ratio", "default_error", "default_ratio"])
    table["goal_met"] = table["ratio"] <= GOAL_RATIO
    return table


def check_closed_forms(players, log) -> None:
    """The closed forms against exact enumeration at n = 10, and at each n of the
    run: efficiency, the harmful players' signs, and a permutation-sampling
    estimate whose squared error must be within 4 times its expectation
    (the sum of the per-player variances over the number of permutations)."""
    n = 10
    masks = sample_design(n, 2**n - 2, "exact", 0)
    for game in make_large_games(n):
        if game.name in NOISY_GAMES:
            continue
        exact = estimate(masks, game.value(masks), game.v_empty, game.v_full, "exact")["value"]
        if not np.allclose(exact, game.shapley):
            raise RuntimeError(f"closed-form Shapley values of the {game.name} game are wrong at n = {n}")
    for n in players:
        for game in make_large_games(n):
            if game.name in NOISY_GAMES:
                continue
            if not math.isclose(game.shapley.sum(), game.v_full - game.v_empty, rel_tol=1e-9, abs_tol=1e-9):
                raise RuntimeError(f"the {game.name} game's values do not add up at n = {n}")
            draws = permutation_draws(game, 200, seed=n)
            expected = draws.var(axis=0, ddof=1).sum() / len(draws)
            if np.sum((draws.mean(axis=0) - game.shapley) ** 2) > 4 * expected:
                raise RuntimeError(f"the {game.name} game's values disagree with permutation sampling at n = {n}")
            if game.name == "harmful" and (np.sum(game.shapley < 0) != max(1, round(0.05 * n))
                                           or np.sort(game.shapley)[np.sum(game.shapley < 0) - 1] > -1.0):
                raise RuntimeError(f"the harmful game at n = {n} does not have 5% clearly negative values")
        log(f"closed forms checked at n = {n}")


def permutation_draws(game: Game, n_permutations: int, seed: int) -> np.ndarray:
    """(permutations, n): each player's marginal contribution in random orders."""
    rng = np.random.default_rng(seed)
    n = game.n
    draws = np.empty((n_permutations, n))
    for p in range(n_permutations):
        order = rng.permutation(n)
        prefixes = np.zeros((n + 1, n), dtype=bool)
        for k, player in enumerate(order):
            prefixes[k + 1 :, player] = True
        values = game.value(prefixes)
        draws[p, order] = np.diff(values)
    return draws


def write_markdown(summary: pd.DataFrame, table: pd.DataFrame, players, seeds, factors, seconds) -> str:
    command = ("OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 "
               "PYTHONPATH=src .venv/bin/python benchmarks/estimators_large.py")
    ratio_wide = table.pivot_table(index=["game", "n"], columns="factor", values="ratio", sort=False)
    ratio_wide.columns = [f"m={f}n" for f in ratio_wide.columns]
    default_wide = table.pivot_table(index=["game", "n"], columns="factor", values="default_ratio", sort=False)
    default_wide.columns = [f"m={f}n" for f in default_wide.columns]
    errors = summary.pivot_table(index=["game", "n", "source", "estimator"], columns="factor",
                                 values="mean_error", sort=False)
    errors.columns = [f"m={f}n" for f in errors.columns]
    failed = summary[summary["failed"] > 0]
    seed_text = ", ".join(f"{seeds[n]} at n = {n}" for n in players)
    lines = [
        "# Estimators at large n, against shapiq",
        "",
        (f"Command: `{command}` ({seconds / 60:.1f} min on this machine, one thread). "
         f"Seeds: {seed_text}. Budgets: m = {', '.join(f'{f}n' for f in factors)} coalitions, plus the two "
         "anchors; shapiq's approximators get m + 2 evaluations, the anchors included. "
         "Error: mean relative L2 error against the closed-form Shapley values."),
        "",
        "## Our best / shapiq's best (goal: at most 0.5)",
        "",
        ratio_wide.reset_index().to_markdown(index=False, floatfmt=".2f"),
        "",
        f"## Default ({DEFAULT[0]}+{DEFAULT[1]}) / shapiq's best",
        "",
        default_wide.reset_index().to_markdown(index=False, floatfmt=".2f"),
        "",
        "## Best of each side",
        "",
        table.to_markdown(index=False, floatfmt=".3f"),
        "",
        "## Every estimator (mean relative error)",
        "",
        ("NaN: the estimator failed on some seed (below its minimum budget, or the design did not "
         "identify the values); see the last table."),
        "",
        errors.reset_index().to_markdown(index=False, floatfmt=".3f"),
        "",
    ]
    if len(failed):
        lines += [
            "## Failures",
            "",
            failed[["game", "n", "m", "source", "estimator", "failed", "seeds"]].to_markdown(index=False),
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, nargs="+", default=list(PLAYERS))
    parser.add_argument("--factors", type=int, nargs="+", default=list(BUDGET_FACTORS))
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds per n, one number per --players entry")
    parser.add_argument("--out", default="estimators_large", help="name of the result files")
    args = parser.parse_args()
    seeds = dict(zip(args.players, args.seeds)) if args.seeds else {n: SEEDS.get(n, 10) for n in args.players}

    def log(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    check_closed_forms(args.players, log)
    raw = run(args.players, seeds, args.factors, log)
    seconds = time.perf_counter() - start
    summary = summarise(raw)
    table = ratios(summary)
    markdown = write_markdown(summary, table, args.players, seeds, args.factors, seconds)
    print(markdown)
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary.to_csv(RESULTS / f"{args.out}.csv", index=False)
    (RESULTS / f"{args.out}.md").write_text(markdown)


if __name__ == "__main__":
    main()
