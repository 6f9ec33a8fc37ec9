"""Accuracy of the value estimators on games with known values.

For n in {10, 20, 50} players and budgets m in {2n, 3n, 5n, 10n, 20n}, every
compatible scheme/method pair estimates the values of several games over many
seeds; the error is the relative L2 error ||estimate - truth|| / ||truth||.
The truth is the exact Shapley value (the exact Banzhaf value for the banzhaf
estimator), from closed forms (games.py), so n = 50 is covered:

* ``interactions``: additive values plus dense pairwise and sparse three-way
  interactions; an interaction among the players of T gives each of them
  weight / |T| (Shapley) or weight / 2^(|T|-1) (Banzhaf).
* ``airport``: v(S) = max cost in S (Littlechild & Owen's closed form).
* ``voting``: a weighted majority game, values by dynamic programming over
  (coalition size, coalition weight).
* ``noisy``: ``interactions`` plus Gaussian noise whose standard deviation is
  the root mean square of the true Shapley values. The noise is a hash of the
  coalition, so a coalition drawn twice gets the same value, as when each
  coalition is retrained once. The anchors are noisy too; the truth is the
  noiseless game's values.
* ``noisy_low``: the same with a tenth of that noise. Added after the first
  results, as a second noise level: fine-tuning noise is usually small
  compared with the spread of the contributors' values.

An estimator named ``method/shrunk`` is the method with ``shrink=True``
(empirical-Bayes shrinkage toward the equal split). The reference with
shrinkage is measured too, to show how much of a gain is the shrinkage's.

Random designs are prefix-stable, so each seed draws one design at the largest
budget and the smaller budgets use its prefixes. Every unshrunk Shapley
estimator here is linear in the measured values for a given design, so on the
noisy games the error splits exactly into the error on ``interactions`` (same
design) plus the error of the noise alone; the latter is reported too, next to
the lower bound that any unbiased linear estimator pays for the noise. (For a
shrunk estimator the same difference is reported, but it is not an exact
split, and the bound does not apply to it: shrinkage is biased.)

Run from the repository root (about a minute on two free cores, several with
other jobs running):

    PYTHONPATH=src python benchmarks/estimators.py

It prints the tables and writes benchmarks/results/estimators.{csv,md}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from games import Game, airport_game, interactions_game, relative_error, voting_game

from diffcredit.coalitions import sample_design
from diffcredit.estimators import IdentificationError, estimate

PLAYERS = (10, 20, 50)
BUDGET_FACTORS = (2, 3, 5, 10, 20)
REFERENCE = ("kernel", "kernelshap")
SHAPLEY_PAIRS = (
    ("kernel_paired", "kernelshap"),
    ("leverage", "leverage"),
    ("stratified", "stratified"),
    ("stratified", "leverage"),
    ("kernel", "stratified"),
    ("kernel_paired", "stratified"),
    ("leverage", "stratified"),
)
SHRUNK = "/shrunk"  # suffix of a method run with shrink=True
SHAPLEY_PAIRS += tuple(
    (scheme, method + SHRUNK)
    for scheme, method in (("kernel_paired", "kernelshap"), ("leverage", "leverage"),
                           ("stratified", "stratified"), ("kernel", "stratified"))
)
REFERENCE_SHRUNK = (REFERENCE[0], REFERENCE[1] + SHRUNK)  # not counted as a candidate
PAIRS = (REFERENCE, REFERENCE_SHRUNK, *SHAPLEY_PAIRS, ("banzhaf", "banzhaf"))
# Not a scheme of the package: the first coalition of each leverage pair, i.e.
# leverage sampling without pairing. Measured to see what pairing costs on
# games where v(S) + v(N \ S) barely varies; not counted in the ratios.
UNPAIRED_LEVERAGE = "leverage_unpaired"
COMPARISON_PAIRS = ((UNPAIRED_LEVERAGE, "leverage"), (UNPAIRED_LEVERAGE, "stratified"))
NOISY_GAMES = ("noisy", "noisy_low")
GOAL_FACTOR = 5
GOAL_RATIO = 0.5
RESULTS = Path(__file__).parent / "results"


def make_games(n: int, seed: int = 0) -> list[Game]:
    """The games; ``interactions`` comes first (the noisy games' noise parts need it)."""
    return [
        interactions_game(n, seed),
        airport_game(n, seed),
        voting_game(n, seed),
        interactions_game(n, seed, noise=1.0),
        interactions_game(n, seed, noise=0.1, name="noisy_low"),
    ]


def noise_floor(game: Game, clean: Game, m: int) -> float:
    """Lower bound on the relative error that noise alone costs an efficient
    estimator that is linear in the measurements and unbiased on additive games.

    Such an estimator must split the measured v(full) - v(empty) exactly, so
    it inherits the anchors' noise, (e_full - e_empty) / n on every value.
    The other n - 1 directions are estimated from m measurements with noise
    sd sigma; the Cramer-Rao bound of the linear model, with the covariance of
    a 0/1 coalition vector having trace at most n/4, gives a total variance
    of at least 4 sigma^2 (n - 1)^2 / (n m). Returned as the root of the sum,
    over ||truth||: a bound on the root mean square error, which the mean
    error reported here can undercut only slightly.
    """
    n = game.n
    anchors = (game.v_full - clean.v_full) - (game.v_empty - clean.v_empty)
    squared = 4 * game.noise_sd**2 * (n - 1) ** 2 / (n * m) + anchors**2 / n
    return float(np.sqrt(squared) / np.linalg.norm(game.shapley))


def check_closed_forms(n: int = 10) -> None:
    """The closed forms must match exact enumeration where it is affordable."""
    masks = sample_design(n, 2**n - 2, "exact", 0)
    for game in make_games(n):
        if game.name in NOISY_GAMES:
            continue
        values = game.value(masks)
        exact = estimate(masks, values, game.v_empty, game.v_full, "exact")["value"]
        banzhaf = estimate(masks, values, game.v_empty, game.v_full, "banzhaf", n_boot=0)["value"]
        if not (np.allclose(exact, game.shapley) and np.allclose(banzhaf, game.banzhaf)):
            raise RuntimeError(f"closed-form values of the {game.name} game are wrong")


def run(n_seeds: int) -> pd.DataFrame:
    records = []
    columns = ["game", "n", "m", "factor", "scheme", "method", "seed", "error", "noise_error"]
    for n in PLAYERS:
        games = make_games(n)
        budgets = [f * n for f in BUDGET_FACTORS]
        schemes = {s for s, _ in PAIRS}
        for seed in range(n_seeds):
            designs = {s: sample_design(n, max(budgets), s, seed) for s in schemes}
            designs[UNPAIRED_LEVERAGE] = sample_design(n, 2 * max(budgets), "leverage", seed)[0::2]
            clean = {}  # the interactions game's estimates, for the noise parts
            for game in games:
                evaluated = {s: game.value(d) for s, d in designs.items()}
                for scheme, method in (*PAIRS, *COMPARISON_PAIRS):
                    truth = game.banzhaf if method == "banzhaf" else game.shapley
                    base = method.removesuffix(SHRUNK)
                    for m in budgets:
                        try:
                            result = estimate(designs[scheme][:m], evaluated[scheme][:m],
                                              game.v_empty, game.v_full, base, n_boot=0,
                                              shrink=base != method)
                            value = result["value"].to_numpy()
                        except IdentificationError:
                            value = np.full(n, np.nan)
                        noise_error = np.nan
                        if game.name == "interactions":
                            clean[scheme, method, m] = value
                        elif game.name in NOISY_GAMES:
                            noise = value - clean[scheme, method, m]
                            noise_error = float(np.linalg.norm(noise) / np.linalg.norm(truth))
                        records.append((game.name, n, m, m // n, scheme, method, seed,
                                        relative_error(value, truth), noise_error))
        for game in games:  # leave-one-out: deterministic, budget n
            masks = sample_design(n, n, "loo", 0)
            result = estimate(masks, game.value(masks), game.v_empty, game.v_full, "loo")
            error = relative_error(result["value"].to_numpy(), game.shapley)
            records.append((game.name, n, n, 1, "loo", "loo", 0, error, np.nan))
    return pd.DataFrame.from_records(records, columns=columns)


def summarise(raw: pd.DataFrame) -> pd.DataFrame:
    grouped = raw.groupby(["game", "n", "m", "factor", "scheme", "method"], sort=False)
    return grouped.agg(
        mean_error=("error", "mean"), median_error=("error", "median"), sd_error=("error", "std"),
        seeds=("error", "size"), failed=("error", lambda e: int(e.isna().sum())),
        mean_noise_error=("noise_error", "mean"),
    ).reset_index()


def label(scheme: str, method: str) -> str:
    return f"{scheme}+{method}"


def ratios(summary: pd.DataFrame, factor: int = GOAL_FACTOR) -> pd.DataFrame:
    """Per game and n: the reference's error, the best Shapley pair's, their ratio."""
    at = summary[summary["factor"] == factor].set_index(["game", "n", "scheme", "method"])
    rows = []
    for (game, n), _ in at.groupby(level=["game", "n"], sort=False):
        reference = at.loc[(game, n, *REFERENCE), "mean_error"]
        candidates = {label(s, m): at.loc[(game, n, s, m), "mean_error"] for s, m in SHAPLEY_PAIRS}
        candidates = {k: v for k, v in candidates.items() if np.isfinite(v)}
        best = min(candidates, key=candidates.get)
        ratio = candidates[best] / reference
        unpaired = {m: at.loc[(game, n, UNPAIRED_LEVERAGE, m), "mean_error"] / reference
                    for _, m in COMPARISON_PAIRS}
        shrunk_reference = at.loc[(game, n, *REFERENCE_SHRUNK), "mean_error"] / reference
        rows.append((game, n, reference, best, candidates[best], ratio, ratio <= GOAL_RATIO,
                     shrunk_reference, unpaired["leverage"], unpaired["stratified"]))
    return pd.DataFrame(rows, columns=["game", "n", "reference_error", "best", "best_error", "ratio",
                                       "goal_met", "shrunk_reference_ratio", "unpaired_leverage_ratio",
                                       "unpaired_leverage_stratified_ratio"])


def overall_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One estimator for every game: per pair, n and budget, the geometric mean and
    the largest of its error ratios to the reference over the games."""
    shapley = summary[summary["method"].isin({m for _, m in (REFERENCE, *SHAPLEY_PAIRS)})
                      & summary["scheme"].isin({s for s, _ in (REFERENCE, *SHAPLEY_PAIRS)})]
    index = ["game", "n", "factor"]
    reference = shapley[(shapley["scheme"] == REFERENCE[0]) & (shapley["method"] == REFERENCE[1])]
    merged = shapley.merge(reference[[*index, "mean_error"]], on=index, suffixes=("", "_reference"))
    merged["ratio"] = merged["mean_error"] / merged["mean_error_reference"]
    merged["estimator"] = merged["scheme"] + "+" + merged["method"]
    merged = merged[merged["estimator"] != label(*REFERENCE)]
    grouped = merged.groupby(["estimator", "n", "factor"], sort=False)["ratio"]
    table = grouped.agg(geometric_mean=lambda r: float(np.exp(np.log(r).mean())), worst="max")
    wide = table.unstack(["n", "factor"])
    wide.columns = [f"{stat} n={n} m={f}n" for stat, n, f in wide.columns]
    order = [f"{stat} n={n} m={f}n"
             for n in PLAYERS for f in (2, 3, 5, 10) for stat in ("geometric_mean", "worst")]
    return wide[[c for c in order if c in wide.columns]]


def noise_table(summary: pd.DataFrame, factor: int = GOAL_FACTOR) -> pd.DataFrame:
    """The noisy games at m = factor * n: total error and noise part, against the floor."""
    at = summary[(summary["factor"] == factor) & summary["game"].isin(NOISY_GAMES)]
    rows = []
    for (name, n), part in at.groupby(["game", "n"], sort=False):
        part = part.set_index(["scheme", "method"])
        clean = interactions_game(n, 0)
        game = interactions_game(n, 0, noise=1.0 if name == "noisy" else 0.1, name=name)
        floor = noise_floor(game, clean, factor * n)
        reference = part.loc[REFERENCE]
        shapley = part.loc[list(SHAPLEY_PAIRS)]
        best = shapley["mean_error"].idxmin()
        rows.append((name, n, reference["mean_error"], reference["mean_noise_error"], label(*best),
                     shapley.loc[best, "mean_error"], shapley.loc[best, "mean_noise_error"],
                     shapley["mean_noise_error"].min(), floor, GOAL_RATIO * reference["mean_error"]))
    return pd.DataFrame(rows, columns=["game", "n", "reference_error", "reference_noise_part", "best",
                                       "best_error", "best_noise_part", "lowest_noise_part",
                                       "noise_floor", "goal"])


def equal_split_errors() -> pd.DataFrame:
    """Relative error of giving everybody (v(full) - v(empty)) / n: a baseline that needs no coalitions."""
    rows = []
    for n in PLAYERS:
        for game in make_games(n):
            truth = game.shapley
            rows.append((game.name, n, relative_error(np.full(n, truth.mean()), truth)))
    return pd.DataFrame(rows, columns=["game", "n", "equal_split_error"])


def error_table(summary: pd.DataFrame) -> pd.DataFrame:
    sampled = summary[summary["method"] != "loo"].copy()
    sampled["estimator"] = sampled["scheme"] + "+" + sampled["method"]
    table = sampled.pivot_table(index=["game", "n", "estimator"], columns="factor",
                                values="mean_error", sort=False)
    table.columns = [f"m={f}n" for f in table.columns]
    return table


def write_markdown(summary: pd.DataFrame, n_seeds: int, seconds: float) -> str:
    loo = summary[summary["method"] == "loo"]
    lines = [
        "# Estimator benchmark",
        "",
        f"Mean relative L2 error over {n_seeds} seeds (`benchmarks/estimators.py`, "
        f"{seconds:.0f} s). Reference: `kernel` + `kernelshap`. The banzhaf row is "
        f"measured against exact Banzhaf values. `{UNPAIRED_LEVERAGE}` is not a scheme "
        "of the package: the first coalition of each leverage pair, for comparison.",
        "",
        error_table(summary).reset_index().to_markdown(index=False, floatfmt=".4f"),
        "",
    ]
    for factor in (GOAL_FACTOR, 2, 3, 10):
        title = "goal: ratio <= 0.5" if factor == GOAL_FACTOR else "for comparison"
        lines += [
            f"## Best Shapley estimator vs reference at m = {factor}n ({title})",
            "",
            "The best of the Shapley pairs other than the reference ("
            + ", ".join(label(*p) for p in SHAPLEY_PAIRS)
            + "). For comparison only: the reference with shrinkage, and leverage sampling "
            "without pairing (last two columns).",
            "",
            ratios(summary, factor).to_markdown(index=False, floatfmt=".3f"),
            "",
        ]
    overall = overall_table(summary)
    lines += [
        "## One estimator for all games",
        "",
        "Error ratio to the reference, over the five games: geometric mean and worst case "
        "(NaN: some designs did not identify the values).",
        "",
    ]
    for n in PLAYERS:
        columns = [c for c in overall.columns if f" n={n} " in c]
        part = overall[columns].rename(columns=lambda c: c.replace(f" n={n}", ""))
        lines += [f"n = {n}:", "", part.reset_index().to_markdown(index=False, floatfmt=".2f"), ""]
    lines += [
        f"## Noise at m = {GOAL_FACTOR}n",
        "",
        "Mean error of the noise alone (the estimate on the noisy game minus the estimate on "
        "`interactions` from the same design), and the lower bound on it for efficient "
        "estimators that are linear in the measurements and unbiased on additive games "
        "(a bound on the root mean square; see `noise_floor`). `goal` is half the "
        "reference's error.",
        "",
        noise_table(summary).to_markdown(index=False, floatfmt=".3f"),
        "",
        "## Baselines",
        "",
        "Leave-one-out (m = n) against the Shapley values, and the equal split "
        "(v(full) - v(empty)) / n, which needs no coalitions.",
        "",
        loo[["game", "n", "mean_error"]].merge(equal_split_errors(), on=["game", "n"])
        .rename(columns={"mean_error": "loo_error"}).to_markdown(index=False, floatfmt=".3f"),
        "",
    ]
    # Identification depends on the design only, so it is the same for every game.
    failed = summary[(summary["failed"] > 0) & (summary["game"] == "interactions")]
    if len(failed):
        lines += [
            "## Designs that did not identify the values (excluded from the means)",
            "",
            "The same designs fail for every game.",
            "",
            failed[["n", "m", "scheme", "method", "failed", "seeds"]].to_markdown(index=False),
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50, help="seeds per configuration (default 50)")
    args = parser.parse_args()

    check_closed_forms()
    start = time.perf_counter()
    raw = run(args.seeds)
    seconds = time.perf_counter() - start
    summary = summarise(raw)
    markdown = write_markdown(summary, args.seeds, seconds)
    print(markdown)
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary.to_csv(RESULTS / "estimators.csv", index=False)
    (RESULTS / "estimators.md").write_text(markdown)


if __name__ == "__main__":
    main()
