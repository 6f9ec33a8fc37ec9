"""``exact``: exact Shapley values from all 2^n - 2 coalitions and the anchors."""

from __future__ import annotations

import math

import numpy as np

from .base import IdentificationError, Method

# Enumerating all 2^n - 2 coalitions beyond this is not a realistic design (and
# exceeds coalitions.MAX_BUDGET).
MAX_PLAYERS = 16


def check_players(n: int) -> None:
    """Refuse to enumerate the coalitions of more than `MAX_PLAYERS` players."""
    if n > MAX_PLAYERS:
        raise ValueError(
            f"scheme 'exact' enumerates 2^n - 2 coalitions and is limited to "
            f"{MAX_PLAYERS} players, got n_players={n}; use a sampling scheme"
        )


class Exact(Method):
    name = "exact"
    schemes = ("exact",)
    default_scheme = "exact"
    efficient = True
    bootstrap = None

    def point(self, masks, values, v_empty, v_full):
        """phi_i = sum over S containing i of w(|S|-1) v(S) - sum over S without i of w(|S|) v(S).

        w(s) = s! (n-1-s)! / n! is the probability that i joins exactly the s
        players before it in a uniform random order. Rearranged for memory:
        phi_i = sum over S containing i of (w(|S|-1) + w(|S|)) v(S) - sum over
        all S of w(|S|) v(S); the anchors add (v(full) - v(empty)) / n, since
        w(n-1) = w(0) = 1/n.
        """
        m, n = masks.shape
        if n > MAX_PLAYERS:
            raise ValueError(f"method 'exact' is limited to {MAX_PLAYERS} players, got {n}")
        codes = np.zeros(m, dtype=np.int64)
        for player in range(n):
            codes |= masks[:, player].astype(np.int64) << player
        distinct = len(np.unique(codes))
        if m != 2**n - 2 or distinct != m:
            raise IdentificationError(
                f"method 'exact' needs all {2**n - 2} coalitions of {n} players, each once; "
                f"got {m} rows ({distinct} distinct); use scheme 'exact'"
            )
        sizes = masks.sum(axis=1)
        w = 1.0 / (n * np.array([math.comb(n - 1, s) for s in range(n)]))
        joined = values * w[sizes - 1]  # v(S) weighted as S = T + i for a player i in S
        before = values * w[sizes]  # v(S) weighted as the coalition a player outside S joins
        inside = np.array([(joined + before)[masks[:, player]].sum() for player in range(n)])
        return inside - before.sum() + (v_full - v_empty) / n

    def min_budget(self, scheme, n):
        """All 2^n - 2 coalitions."""
        check_players(n)
        return 2**n - 2
