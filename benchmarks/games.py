"""Games with known values for the estimator benchmarks (estimators.py,
estimators_large.py): v(S) for any array of coalitions, and the exact Shapley
and Banzhaf values from closed forms, so that large n is covered.

* ``interactions_game``: additive values plus dense pairwise and sparse
  three-way interactions; an interaction among the players of T gives each of
  them weight / |T| (Shapley) or weight / 2^(|T|-1) (Banzhaf). With ``noise``,
  Gaussian noise that is a fixed function of the coalition is added.
* ``harmful_game``: the same kind of game, in which 5% of the players lower v:
  their values are clearly negative, everyone else's positive.
* ``airport_game``: v(S) = max cost in S (Littlechild & Owen's closed form).
* ``voting_game``: a weighted majority game, values by dynamic programming
  over (coalition size, coalition weight).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Game:
    name: str
    n: int
    value: Callable[[np.ndarray], np.ndarray]  # v(S) for each row of a mask array
    shapley: np.ndarray
    banzhaf: np.ndarray
    noise_sd: float = 0.0  # of the evaluations, anchors included

    @property
    def v_empty(self) -> float:
        return float(self.value(np.zeros((1, self.n), dtype=bool))[0])

    @property
    def v_full(self) -> float:
        return float(self.value(np.ones((1, self.n), dtype=bool))[0])


def interactions_game(n: int, seed: int, noise: float = 0.0, name: str | None = None) -> Game:
    """Additive + pairwise + three-way terms; `noise` in units of the RMS Shapley value."""
    rng = np.random.default_rng([seed, n])
    additive = rng.normal(1.0, 1.0, n)
    pairwise = np.triu(rng.normal(0.0, 1.0 / math.sqrt(n), (n, n)), 1)
    pairwise += pairwise.T
    triples = np.array([rng.choice(n, 3, replace=False) for _ in range(n)])
    triple_weights = rng.normal(0.0, 1.0, n)
    name = name or ("noisy" if noise else "interactions")
    return _polynomial_game(name, n, seed, additive, pairwise, triples, triple_weights, noise)


def harmful_game(n: int, seed: int, share: float = 0.05) -> Game:
    """Additive + pairwise + three-way terms where a `share` of the players (at
    least one) lower v: additive parts -U(2, 4) for them, U(1, 2) for the
    others, interactions a quarter as strong as in `interactions_game`, so that
    the harmful players' Shapley values are clearly negative and the others'
    positive (checked in estimators_large.py)."""
    rng = np.random.default_rng([seed, n, 3])
    harmful = rng.choice(n, max(1, round(share * n)), replace=False)
    additive = rng.uniform(1.0, 2.0, n)
    additive[harmful] = -rng.uniform(2.0, 4.0, len(harmful))
    pairwise = np.triu(rng.normal(0.0, 0.25 / math.sqrt(n), (n, n)), 1)
    pairwise += pairwise.T
    triples = np.array([rng.choice(n, 3, replace=False) for _ in range(n)])
    triple_weights = rng.normal(0.0, 0.25, n)
    return _polynomial_game("harmful", n, seed, additive, pairwise, triples, triple_weights)


def _polynomial_game(name, n, seed, additive, pairwise, triples, triple_weights, noise=0.0) -> Game:
    """v(S) = sum of additive_i + pairwise_ij / 2 over i, j in S + the weight of
    each triple inside S (+ hashed noise, `noise` times the RMS Shapley value)."""
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

    return Game(name, n, value, shapley, banzhaf, sigma)


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
    # In floating point: n C(n - 1, s) overflows 64-bit integers from n = 64 on.
    order_weight = 1.0 / (n * np.array([float(math.comb(n - 1, s)) for s in range(n)]))
    done = {}  # players of the same weight have the same values
    for i in range(n):
        if weight[i] not in done:
            others = np.delete(weight, i)
            # counts[s, w]: subsets of the other players with s members and weight w.
            counts = np.zeros((n, weight.sum() + 1))
            counts[0, 0] = 1.0
            for w in others:
                counts[1:, w:] += counts[:-1, : counts.shape[1] - w].copy()
            swings = counts[:, quota - weight[i] : quota].sum(axis=1)  # i turns S into a winner
            done[weight[i]] = (swings @ order_weight, swings.sum() / 2.0 ** (n - 1))
        shapley[i], banzhaf[i] = done[weight[i]]

    def value(masks: np.ndarray) -> np.ndarray:
        return (masks @ weight >= quota).astype(float)

    return Game("voting", n, value, shapley, banzhaf)


def hashed_normal(masks: np.ndarray, salt: int) -> np.ndarray:
    """A standard normal draw that is a fixed function of the coalition.

    The coalition is read as 64-bit words; each further word (n > 64) is mixed
    into the hash of the ones before it.
    """
    key = None
    for start in range(0, masks.shape[1], 64):
        word = masks[:, start : start + 64]
        bits = np.uint64(1) << np.arange(word.shape[1], dtype=np.uint64)
        code = word.astype(np.uint64) @ bits
        key = code ^ _splitmix64(np.full_like(code, salt) if key is None else key)
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


def relative_error(estimate_: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(estimate_ - truth) / np.linalg.norm(truth))
