"""Accuracy of the value estimators on games with known values.

For n in {10, 20, 50} players and budgets m in {2n, 5n, 10n, 20n}, every
compatible scheme/method pair estimates the values of several games over many
seeds; the error is the relative L2 error ||estimate - truth|| / ||truth||.
The truth is the exact Shapley value (the exact Banzhaf value for the banzhaf
estimator), from closed forms, so n = 50 is covered:

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

Random designs are prefix-stable, so each seed draws one design at the largest
budget and the smaller budgets use its prefixes.

Run from the repository root (under a minute on two cores):

    PYTHONPATH=src python benchmarks/estimators.py

It prints the tables and writes benchmarks/results/estimators.{csv,md}.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from diffcredit.coalitions import sample_design
from diffcredit.estimators import IdentificationError, estimate

PLAYERS = (10, 20, 50)
BUDGET_FACTORS = (2, 5, 10, 20)
REFERENCE = ("kernel", "kernelshap")
PAIRS = (REFERENCE, ("kernel_paired", "kernelshap"), ("leverage", "leverage"), ("banzhaf", "banzhaf"))
SHAPLEY_PAIRS = (("kernel_paired", "kernelshap"), ("leverage", "leverage"))
# Not a scheme of the package: the first coalition of each leverage pair, i.e.
# leverage sampling without pairing. Measured to see what pairing costs on
# games where v(S) + v(N \ S) barely varies; not counted in the ratios.
UNPAIRED_LEVERAGE = ("leverage_unpaired", "leverage")
GOAL_FACTOR = 5
GOAL_RATIO = 0.5
RESULTS = Path(__file__).parent / "results"


@dataclass
class Game:
    name: str
    n: int
    value: Callable[[np.ndarray], np.ndarray]  # v(S) for each row of a mask array
    shapley: np.ndarray
    banzhaf: np.ndarray

    @property
    def v_empty(self) -> float:
        return float(self.value(np.zeros((1, self.n), dtype=bool))[0])

    @property
    def v_full(self) -> float:
        return float(self.value(np.ones((1, self.n), dtype=bool))[0])


def interactions_game(n: int, seed: int, noise: float = 0.0) -> Game:
    """Additive + pairwise + three-way terms; `noise` in units of the RMS Shapley value."""
    rng = np.random.default_rng([seed, n])
    additive = rng.normal(1.0, 1.0, n)
    pairwise = np.triu(rng.normal(0.0, 1.0 / math.sqrt(n), (n, n)), 1)
    pairwise += pairwise.T
    triples = np.array([rng.choice(n, 3, replace=False) for _ in range(n)])
    triple_weights = rng.normal(0.0, 1.0, n)

    shapley = additive + pairwise.sum(axis=1) / 2
    banzhaf = shapley.copy()  # identical up to order 2
    for members, weight in zip(triples, triple_weights):
        shapley[members] += weight / 3
        banzhaf[members] += weight / 4
    sigma = noise * float(np.sqrt(np.mean(shapley**2)))

    def value(masks: np.ndarray) -> np.ndarray:
        z = masks.astype(float)
        v = z @ additive + 0.5 * np.einsum("ri,ij,rj->r", z, pairwise, z)
        v += z[:, triples].prod(axis=2) @ triple_weights
        if sigma:
            v += sigma * hashed_normal(masks, salt=seed)
        return v

    name = "noisy" if noise else "interactions"
    return Game(name, n, value, shapley, banzhaf)


def airport_game(n: int, seed: int) -> Game:
    """v(S) = the largest cost among S: the cost of a runway long enough for all of S."""
    rng = np.random.default_rng([seed, n, 1])
    cost = rng.uniform(0.0, 1.0, n)
    order = np.argsort(cost)
    sorted_cost = cost[order]
    # Shapley: the k-th increment of the runway is shared by the n - k players who need it.
    increments = np.diff(sorted_cost, prepend=0.0)
    shapley = np.empty(n)
    shapley[order] = np.cumsum(increments / (n - np.arange(n)))
    # Banzhaf: i gains c_i - max(S) over the subsets S of cheaper players (2^j of
    # them have the j-th cheapest as maximum), averaged over all 2^(n-1) subsets.
    banzhaf = np.empty(n)
    for k in range(n):
        below = sorted_cost[:k]
        gain = sorted_cost[k] + np.sum(2.0 ** np.arange(k) * (sorted_cost[k] - below))
        banzhaf[order[k]] = gain / 2.0 ** (n - 1)

    def value(masks: np.ndarray) -> np.ndarray:
        return np.where(masks, cost, 0.0).max(axis=1)

    return Game("airport", n, value, shapley, banzhaf)


def voting_game(n: int, seed: int) -> Game:
    """Weighted majority: v(S) = 1 if the weight of S reaches the quota."""
    rng = np.random.default_rng([seed, n, 2])
    weight = rng.integers(1, 11, n)
    quota = weight.sum() // 2 + 1
    shapley = np.empty(n)
    banzhaf = np.empty(n)
    order_weight = 1.0 / (n * np.array([math.comb(n - 1, s) for s in range(n)]))
    for i in range(n):
        others = np.delete(weight, i)
        # counts[s, w]: subsets of the other players with s members and weight w.
        counts = np.zeros((n, weight.sum() + 1))
        counts[0, 0] = 1.0
        for w in others:
            counts[1:, w:] += counts[:-1, : counts.shape[1] - w].copy()
        swings = counts[:, quota - weight[i] : quota].sum(axis=1)  # i turns S into a winner
        shapley[i] = swings @ order_weight
        banzhaf[i] = swings.sum() / 2.0 ** (n - 1)

    def value(masks: np.ndarray) -> np.ndarray:
        return (masks @ weight >= quota).astype(float)

    return Game("voting", n, value, shapley, banzhaf)


def hashed_normal(masks: np.ndarray, salt: int) -> np.ndarray:
    """A standard normal draw that is a fixed function of the coalition (n <= 64)."""
    bits = np.uint64(1) << np.arange(masks.shape[1], dtype=np.uint64)
    code = masks.astype(np.uint64) @ bits
    key = code ^ _splitmix64(np.full_like(code, salt))
    first, second = _splitmix64(key), _splitmix64(key ^ np.uint64(0x5851F42D4C957F2D))
    u1 = ((first >> np.uint64(11)).astype(float) + 1.0) / 2.0**53  # in (0, 1]
    u2 = (second >> np.uint64(11)).astype(float) / 2.0**53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def make_games(n: int, seed: int = 0) -> list[Game]:
    return [
        interactions_game(n, seed),
        airport_game(n, seed),
        voting_game(n, seed),
        interactions_game(n, seed, noise=1.0),
    ]


def check_closed_forms(n: int = 10) -> None:
    """The closed forms must match exact enumeration where it is affordable."""
    masks = sample_design(n, 2**n - 2, "exact", 0)
    for game in make_games(n):
        if game.name == "noisy":
            continue
        values = game.value(masks)
        exact = estimate(masks, values, game.v_empty, game.v_full, "exact")["value"]
        banzhaf = estimate(masks, values, game.v_empty, game.v_full, "banzhaf", n_boot=0)["value"]
        if not (np.allclose(exact, game.shapley) and np.allclose(banzhaf, game.banzhaf)):
            raise RuntimeError(f"closed-form values of the {game.name} game are wrong")


def relative_error(estimate_: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(estimate_ - truth) / np.linalg.norm(truth))


def run(n_seeds: int) -> pd.DataFrame:
    records = []
    for n in PLAYERS:
        games = make_games(n)
        budgets = [f * n for f in BUDGET_FACTORS]
        for seed in range(n_seeds):
            designs = {s: sample_design(n, max(budgets), s, seed) for s, _ in PAIRS}
            designs[UNPAIRED_LEVERAGE[0]] = sample_design(n, 2 * max(budgets), "leverage", seed)[0::2]
            for game in games:
                evaluated = {s: game.value(d) for s, d in designs.items()}
                for scheme, method in (*PAIRS, UNPAIRED_LEVERAGE):
                    truth = game.banzhaf if method == "banzhaf" else game.shapley
                    for m in budgets:
                        try:
                            result = estimate(designs[scheme][:m], evaluated[scheme][:m],
                                              game.v_empty, game.v_full, method, n_boot=0)
                            error = relative_error(result["value"].to_numpy(), truth)
                        except IdentificationError:
                            error = np.nan
                        records.append((game.name, n, m, m // n, scheme, method, seed, error))
        for game in games:  # leave-one-out: deterministic, budget n
            masks = sample_design(n, n, "loo", 0)
            result = estimate(masks, game.value(masks), game.v_empty, game.v_full, "loo")
            error = relative_error(result["value"].to_numpy(), game.shapley)
            records.append((game.name, n, n, 1, "loo", "loo", 0, error))
    return pd.DataFrame.from_records(
        records, columns=["game", "n", "m", "factor", "scheme", "method", "seed", "error"]
    )


def summarise(raw: pd.DataFrame) -> pd.DataFrame:
    grouped = raw.groupby(["game", "n", "m", "factor", "scheme", "method"], sort=False)["error"]
    return grouped.agg(
        mean_error="mean", median_error="median", sd_error="std", seeds="size",
        failed=lambda e: int(e.isna().sum()),
    ).reset_index()


def ratios(summary: pd.DataFrame) -> pd.DataFrame:
    at_goal = summary[summary["factor"] == GOAL_FACTOR].set_index(["game", "n", "scheme", "method"])
    rows = []
    for (game, n), _ in at_goal.groupby(level=["game", "n"], sort=False):
        reference = at_goal.loc[(game, n, *REFERENCE), "mean_error"]
        candidates = {f"{s}+{m}": at_goal.loc[(game, n, s, m), "mean_error"] for s, m in SHAPLEY_PAIRS}
        best = min(candidates, key=candidates.get)
        ratio = candidates[best] / reference
        unpaired = at_goal.loc[(game, n, *UNPAIRED_LEVERAGE), "mean_error"] / reference
        rows.append((game, n, reference, best, candidates[best], ratio, ratio <= GOAL_RATIO, unpaired))
    return pd.DataFrame(rows, columns=["game", "n", "reference_error", "best", "best_error", "ratio",
                                       "goal_met", "unpaired_leverage_ratio"])


def error_table(summary: pd.DataFrame) -> pd.DataFrame:
    sampled = summary[summary["method"] != "loo"].copy()
    sampled["estimator"] = sampled["scheme"] + "+" + sampled["method"]
    table = sampled.pivot_table(index=["game", "n", "estimator"], columns="factor",
                                values="mean_error", sort=False)
    table.columns = [f"m={f}n" for f in table.columns]
    return table


def write_markdown(
    summary: pd.DataFrame, ratio_table: pd.DataFrame, n_seeds: int, seconds: float
) -> str:
    loo = summary[summary["method"] == "loo"]
    lines = [
        "# Estimator benchmark",
        "",
        f"Mean relative L2 error over {n_seeds} seeds (`benchmarks/estimators.py`, "
        f"{seconds:.0f} s). Reference: `kernel` + `kernelshap`. The banzhaf row is "
        "measured against exact Banzhaf values.",
        "",
        error_table(summary).reset_index().to_markdown(index=False, floatfmt=".4f"),
        "",
        f"## Best Shapley estimator vs reference at m = {GOAL_FACTOR}n (goal: ratio <= {GOAL_RATIO})",
        "",
        "The best of kernel_paired+kernelshap and leverage+leverage; the last column is "
        "leverage sampling without pairing, for comparison only.",
        "",
        ratio_table.to_markdown(index=False, floatfmt=".3f"),
        "",
        "## Leave-one-out (m = n) against the Shapley values",
        "",
        loo[["game", "n", "mean_error"]].to_markdown(index=False, floatfmt=".3f"),
        "",
    ]
    failed = summary[summary["failed"] > 0]
    if len(failed):
        lines += [
            "## Designs that did not identify the values (excluded from the means)",
            "",
            failed[["game", "n", "m", "scheme", "method", "failed", "seeds"]].to_markdown(index=False),
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
    ratio_table = ratios(summary)
    markdown = write_markdown(summary, ratio_table, args.seeds, seconds)
    print(markdown)
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary.to_csv(RESULTS / "estimators.csv", index=False)
    (RESULTS / "estimators.md").write_text(markdown)


if __name__ == "__main__":
    main()
