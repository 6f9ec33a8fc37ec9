"""Coalition designs: which subsets of contributors to retrain on.

A design is a boolean array of shape (rows, n_players); row r is the coalition
S_r (True = contributor included). The empty and the full coalition are never
rows: they are the anchors v(empty) and v(full) that every estimator needs, and
the workflow evaluates them separately.

Random designs are prefix-stable: the first k rows do not depend on the budget,
so raising the budget only appends coalitions and every model already trained
stays part of the design. Rows are generated in fixed chunks, each drawn from
its own stream `np.random.default_rng([seed, chunk])`; the leverage and
stratified schemes, which sample without replacement, are each one seeded
sequential stream truncated at the budget.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

# COMPATIBLE_SCHEMES (method -> the schemes it can estimate from) comes from
# the methods' records, as does everything else that depends on the method.
from .estimators import COMPATIBLE_SCHEMES, get_method
from .estimators.exact import MAX_PLAYERS as EXACT_MAX_PLAYERS
from .estimators.exact import check_players as _check_exact_size

SCHEMES = ("kernel", "kernel_paired", "leverage", "stratified", "banzhaf", "loo", "exact")

# Schemes that sample without replacement, so the budget cannot exceed 2^n - 2.
_WITHOUT_REPLACEMENT = ("leverage", "stratified")

# Largest design planned: one training job per coalition makes more unrealistic,
# and planning it (at Snakemake's parse time) slow.
MAX_BUDGET = 100_000

# Rows per independent random stream for the i.i.d. schemes (even, so that a
# chunk of the paired scheme holds whole pairs).
_CHUNK = 64
# Second entry of the stratified scheme's seed sequence, so that its stream
# differs from the leverage scheme's for the same seed.
_STRATIFIED_STREAM = 1


def sample_design(n_players: int, budget: int, scheme: str, seed: int) -> np.ndarray:
    """Draw a coalition design.

    Args:
        n_players: number of contributors n (at least 2).
        budget: number of coalitions to evaluate, anchors not counted.
        scheme: one of `SCHEMES`:

            * ``kernel``: i.i.d. coalitions from the Shapley kernel: size s in
              1..n-1 with probability proportional to (n-1)/(s(n-s)), then a
              uniform subset of that size (Covert & Lee, 2021).
            * ``kernel_paired``: the same, each coalition followed by its
              complement; an odd budget cuts the last pair to its first row.
            * ``leverage``: Leverage SHAP sampling (Musco & Witter, 2025):
              coalition pairs (S, complement) without replacement, sizes in
              proportion to their leverage scores, which give every size
              1..n-1 the same share. Pairs are assigned to size classes in a
              fixed order that keeps every prefix as close to that share as
              possible (classes that run out of coalitions drop out); within
              a class the coalitions are uniform without replacement. An odd
              budget cuts the last pair.
            * ``stratified``: complementary pairs without replacement,
              stratified by size. First the whole singleton stratum: every
              {i} with its complement N \\ {i}, players in a seeded random
              order (2n rows; 2 for n = 2). Then the pair classes
              min(|S|, n - |S|) = 2..n/2, in proportion to the square root of
              their Shapley kernel mass, 1/sqrt(s(n-s)) per size (the Neyman
              allocation when every size has the same residual variance),
              assigned in the leverage scheme's fixed order. Within a class,
              coalitions come from blocks of random permutations, so each
              player is in about the same number of them, without repeats.
              The order of the two members of a pair is random; an odd budget
              cuts the last pair.
            * ``banzhaf``: each contributor included with probability 1/2;
              rows that come out empty or full are redrawn (Wang & Jia, 2023).
            * ``loo``: the n leave-one-out coalitions N \\ {i}, in player
              order.
            * ``exact``: all 2^n - 2 coalitions; row r is the coalition whose
              bit i of the integer r + 1 says whether player i is in it.

        seed: non-negative integer seed.

    Returns:
        Boolean array of shape (budget, n_players) for the random schemes.
        The deterministic schemes (``loo``, ``exact``) have a fixed design:
        they require a budget of at least its size (n and 2^n - 2) and return
        exactly that design, whatever the budget beyond it.

    Raises:
        ValueError: unknown scheme, fewer than 2 players, budget below 1 (or
            below the fixed design size, or above 2^n - 2 for ``leverage``
            and ``stratified``), negative seed, or ``exact`` with more than
            `EXACT_MAX_PLAYERS`.
    """
    n = _as_int("n_players", n_players)
    budget = _as_int("budget", budget)
    seed = _as_int("seed", seed)
    _check_scheme(scheme)
    _check_players(n)
    if budget < 1:
        raise ValueError(f"budget must be at least 1, got {budget}")
    if scheme == "exact":
        _check_exact_size(n)
    _check_budget_limit(budget)
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")

    if scheme == "loo":
        if budget < n:
            raise ValueError(
                f"scheme 'loo' evaluates the {n} leave-one-out coalitions; "
                f"budget {budget} is too small, set it to {n}"
            )
        return ~np.eye(n, dtype=bool)
    if scheme == "exact":
        _check_exact_size(n)
        size = 2**n - 2
        if budget < size:
            raise ValueError(
                f"scheme 'exact' evaluates all {size} coalitions of {n} players; "
                f"budget {budget} is too small, set it to {size}"
            )
        codes = np.arange(1, size + 1, dtype=np.int64)
        masks = np.empty((size, n), dtype=bool)
        for player in range(n):
            masks[:, player] = (codes >> player) & 1
        return masks
    if scheme in _WITHOUT_REPLACEMENT:
        if budget > 2**n - 2:
            raise ValueError(
                f"scheme {scheme!r} samples without replacement, so budget {budget} "
                f"cannot exceed the {2**n - 2} coalitions of {n} players"
            )
        if scheme == "leverage":
            return _leverage_design(n, budget, seed)
        return _stratified_design(n, budget, seed)
    make_chunk = {
        "kernel": _kernel_chunk,
        "kernel_paired": _kernel_paired_chunk,
        "banzhaf": _banzhaf_chunk,
    }[scheme]
    n_chunks = -(-budget // _CHUNK)
    chunks = [make_chunk(np.random.default_rng([seed, c]), n) for c in range(n_chunks)]
    return np.concatenate(chunks)[:budget]


def min_budget(scheme: str, method: str, n_players: int) -> int:
    """Smallest budget with which `method` can produce values on a `scheme` design.

    The bound is necessary, not sufficient: a random design of this size may
    still fail to identify the values (the estimator then raises). Each
    method's record gives it and says why (`Method.min_budget` in the
    method's module of diffcredit.estimators).
    """
    _check_pair(scheme, method)
    n = _as_int("n_players", n_players)
    _check_players(n)
    return get_method(method).min_budget(scheme, n)


def _check_budget_limit(budget: int) -> None:
    if budget > MAX_BUDGET:
        raise ValueError(
            f"budget {budget} is above the limit of {MAX_BUDGET:,}: each coalition is a model to "
            "fine-tune and score, and a design that size cannot be planned in useful time; "
            "estimates converge long before (docs/estimators.md)"
        )


def validate(n_players: int, budget: int, scheme: str, method: str) -> None:
    """Check a design configuration before anything runs.

    Raises:
        ValueError: with a message naming the offending value and the fix.
    """
    _check_pair(scheme, method)
    n = _as_int("n_players", n_players)
    budget = _as_int("budget", budget)
    _check_players(n)
    needed = min_budget(scheme, method, n)
    _check_budget_limit(budget)
    if budget < needed:
        raise ValueError(
            f"budget {budget} is too small for scheme {scheme!r} with method "
            f"{method!r} and {n} players: it needs at least {needed} coalitions"
        )
    if scheme in _WITHOUT_REPLACEMENT and budget > 2**n - 2:
        raise ValueError(
            f"budget {budget} exceeds the {2**n - 2} coalitions of {n} players; "
            f"scheme {scheme!r} samples without replacement, lower the budget "
            "or use scheme 'exact'"
        )


def _kernel_size_probabilities(n_players: int) -> np.ndarray:
    """P(|S| = s) for s = 1..n-1 under the Shapley kernel, proportional to 1/(s(n-s))."""
    sizes = np.arange(1, n_players)
    mass = 1.0 / (sizes * (n_players - sizes))
    return mass / mass.sum()


def _kernel_chunk(rng: np.random.Generator, n: int) -> np.ndarray:
    sizes = rng.choice(np.arange(1, n), size=_CHUNK, p=_kernel_size_probabilities(n))
    return _uniform_subsets(rng, n, sizes)


def _kernel_paired_chunk(rng: np.random.Generator, n: int) -> np.ndarray:
    half = _CHUNK // 2
    sizes = rng.choice(np.arange(1, n), size=half, p=_kernel_size_probabilities(n))
    first = _uniform_subsets(rng, n, sizes)
    rows = np.empty((_CHUNK, n), dtype=bool)
    rows[0::2] = first
    rows[1::2] = ~first
    return rows


def _banzhaf_chunk(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.random((_CHUNK, n)) < 0.5
    while True:
        counts = rows.sum(axis=1)
        bad = (counts == 0) | (counts == n)
        if not bad.any():
            return rows
        rows[bad] = rng.random((int(bad.sum()), n)) < 0.5


def _uniform_subsets(rng: np.random.Generator, n: int, sizes: np.ndarray) -> np.ndarray:
    """One uniform subset of each requested size: the players with the lowest random ranks."""
    ranks = rng.random((len(sizes), n)).argsort(axis=1).argsort(axis=1)
    return ranks < np.asarray(sizes)[:, None]


def _leverage_design(n: int, budget: int, seed: int) -> np.ndarray:
    """Leverage-score pairs without replacement, from one sequential stream."""
    rng = np.random.default_rng(seed)
    classes = [_LeveragePairClass(n, s) for s in range(1, n // 2 + 1)]
    rows = []
    for _ in range(-(-budget // 2)):
        open_classes = [c for c in classes if not c.exhausted]
        # The class furthest below its leverage share takes the next pair.
        chosen = min(open_classes, key=lambda c: (c.taken + 1) / c.mass)
        members = chosen.draw(rng)
        coalition = np.zeros(n, dtype=bool)
        coalition[list(members)] = True
        if rng.random() < 0.5:
            coalition = ~coalition
        rows.extend((coalition, ~coalition))
    return np.array(rows[:budget])


class _PairClass:
    """Coalition pairs {S, N \\ S} with min(|S|, n - |S|) = size, drawn without replacement.

    A pair is represented by its member of size `size`; when both members have
    that size (size = n/2) by the one that contains player 0. Candidates come
    from `_candidate` while at least half the class is left (few repeats to
    skip); after that the rest of the class is listed once and shuffled.
    """

    def __init__(self, n: int, size: int):
        self.n = n
        self.size = size
        self.middle = 2 * size == n
        self.capacity = math.comb(n, size) // 2 if self.middle else math.comb(n, size)
        self.taken = 0
        self._drawn = set()
        self._rest = None  # shuffled undrawn pairs, once half the class is used

    @property
    def exhausted(self) -> bool:
        return self.taken == self.capacity

    def draw(self, rng: np.random.Generator) -> tuple:
        """The next pair's representative, uniform over the pairs not yet drawn."""
        if self._rest is None and 2 * self.taken >= self.capacity:
            rest = [p for p in self._all() if p not in self._drawn]
            self._rest = [rest[i] for i in rng.permutation(len(rest))]
        if self._rest is not None:
            pick = self._rest.pop()
        else:
            while True:
                pick = self._canonical(self._candidate(rng))
                if pick not in self._drawn:
                    break
        self._drawn.add(pick)
        self.taken += 1
        return pick

    def _candidate(self, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def _canonical(self, members) -> tuple:
        members = np.sort(members)
        if self.middle and members[0] != 0:
            members = np.setdiff1d(np.arange(self.n), members)
        return tuple(members.tolist())

    def _all(self):
        if self.middle:
            return ((0, *rest) for rest in itertools.combinations(range(1, self.n), self.size - 1))
        return itertools.combinations(range(self.n), self.size)


class _LeveragePairClass(_PairClass):
    """Uniform random candidates. Leverage scores give each coalition size the
    same total mass, and a class holds two sizes except the middle one."""

    def __init__(self, n: int, size: int):
        super().__init__(n, size)
        self.mass = 1 if self.middle else 2

    def _candidate(self, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self.n, self.size, replace=False)


class _BlockPairClass(_PairClass):
    """Candidates cut from random permutations of the players, `size` at a time,
    so that within a run of draws every player is in about the same number of
    coalitions, and each draw is still a uniform pair of the class. `mass` is the
    class's share under the Neyman allocation: 1/sqrt(s(n-s)) for each of its
    two sizes (pairs of the middle class hold two coalitions of the same size,
    so half that).
    """

    def __init__(self, n: int, size: int):
        super().__init__(n, size)
        root = 1.0 / math.sqrt(size * (n - size))
        self.mass = root / 2 if self.middle else root
        self._queue = []  # unused blocks of the current permutation

    def _candidate(self, rng: np.random.Generator) -> np.ndarray:
        if not self._queue:
            order = rng.permutation(self.n)
            starts = range(0, self.n - self.size + 1, self.size)
            self._queue = [order[k : k + self.size] for k in starts][::-1]
        return self._queue.pop()


def _stratified_design(n: int, budget: int, seed: int) -> np.ndarray:
    """The singleton stratum in a seeded order, then Neyman-allocated pair classes."""
    rng = np.random.default_rng([seed, _STRATIFIED_STREAM])
    singles = [0] if n == 2 else rng.permutation(n).tolist()
    rows = []
    for player in singles:
        coalition = np.zeros(n, dtype=bool)
        coalition[player] = True
        if rng.random() < 0.5:
            coalition = ~coalition
        rows.extend((coalition, ~coalition))
    classes = [_BlockPairClass(n, size) for size in range(2, n // 2 + 1)]
    while len(rows) < budget:
        open_classes = [c for c in classes if not c.exhausted]
        chosen = min(open_classes, key=lambda c: (c.taken + 1) / c.mass)
        coalition = np.zeros(n, dtype=bool)
        coalition[list(chosen.draw(rng))] = True
        if rng.random() < 0.5:
            coalition = ~coalition
        rows.extend((coalition, ~coalition))
    return np.array(rows[:budget])


def _as_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")


def _check_pair(scheme: str, method: str) -> None:
    record = get_method(method)
    _check_scheme(scheme)
    allowed = record.schemes
    if scheme not in allowed:
        raise ValueError(
            f"method {method!r} cannot be used with scheme {scheme!r}; "
            f"use scheme {' or '.join(repr(s) for s in allowed)}"
        )


def _check_players(n: int) -> None:
    if n < 2:
        raise ValueError(f"n_players must be at least 2, got {n}")
