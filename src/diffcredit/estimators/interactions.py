"""Pairwise interaction indices from the coalitions an estimate already evaluated.

Each index is the pair coefficients of the game's best second-order approximation
v(S) ~ b0 + sum_{i in S} b_i + sum_{i<j in S} b_ij in a weighted least-squares sense
(faithful interaction indices, Tsai, Yeh & Ravikumar, JMLR 2023):

- ``fsii`` (Faith-Shapley): coalitions weighted by the Shapley kernel, the approximation
  exact at the empty and full coalitions; its first-order part sums to v(N) - v(0).
- ``fbii`` (Faith-Banzhaf): every coalition weighted alike, anchors included.
- ``tree``: the pairwise Shapley interaction index (SII) of the boosted-tree surrogate
  of method ``tree``, exact for the fitted trees (tree.py); what the trees miss of the
  game, they miss here too.

For a game of pairs (v a sum of singles and pairs) both equal the pair terms, and so
do the pairwise Shapley (SII) and Banzhaf (BII) interaction indices; with higher-order
terms they differ (a three-way term splits its weight differently). A negative value
says a pair is redundant (together worth less than apart: a duplicate), a positive one
that it is complementary.

A design of sampled coalitions stands for the whole game by size: each row of size t
carries the kernel's weight of its whole layer, mu(t) C(n, t), over the rows of that
size. With every coalition evaluated (the exact design) the indices are exact (tested
against shapiq's exact values). Otherwise the estimate is a ratio-type regression
estimate, consistent but not unbiased, and it needs the design to identify the n +
n(n - 1)/2 coefficients (at least as many coalitions, in varied sizes). Intervals:
95% percentile bootstrap, resampling rows within their size (the coalitions' sampling
only; the generated images' noise is not included).
"""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import pandas as pd

from .base import IdentificationError
from .estimation import CI_LEVEL

INDICES = ("fsii", "fbii", "tree")


def _features(masks: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    m = masks.astype(float)
    return np.hstack([m, np.stack([m[:, i] * m[:, j] for i, j in pairs], axis=1)]) if pairs else m


def _layer_weights(masks: np.ndarray, index: str) -> np.ndarray:
    """Each row's share of its size's layer of the weighting."""
    n = masks.shape[1]
    sizes = masks.sum(axis=1)
    counts = np.bincount(sizes, minlength=n + 1)
    t = sizes.astype(float)
    if index == "fsii":
        layer = (n - 1) / (t * (n - t))  # mu(t) C(n, t), the Shapley kernel's weight of size t
    else:
        layer = np.array([comb(n, int(s)) for s in sizes], dtype=float) / 2.0**n
    return layer / counts[sizes]


def interaction_fit(masks, values, v_empty: float, v_full: float, index: str = "fsii") -> np.ndarray:
    """(n, n) symmetric matrix of the pair coefficients (zero diagonal).

    `masks`, `values`: the design's coalitions (neither empty nor full) and their values.

    Raises:
        IdentificationError: the design does not identify every coefficient.
    """
    if index not in INDICES:
        raise ValueError(f"unknown interaction index {index!r}; choose one of {', '.join(INDICES)}")
    masks = np.asarray(masks, dtype=bool)
    y = np.asarray(values, dtype=float)
    n = masks.shape[1]
    if index == "tree":
        from . import tree

        return tree.Leaves(tree.fit(masks, y, v_empty, v_full), n).interactions()
    p = n + n * (n - 1) // 2
    if len(masks) + 1 < p:  # the constraint (fsii) or the two anchors (fbii, one more coefficient) add a row
        raise IdentificationError(_unidentified(len(masks), p))
    pairs = list(combinations(range(n), 2))
    x = _features(masks, pairs)
    w = _layer_weights(masks, index)
    if index == "fsii":
        # min sum w (y - v0 - x b)^2 subject to sum(b) = v(N) - v(0): the KKT system.
        sw = np.sqrt(w)[:, None]
        a, r = x * sw, (y - v_empty) * sw[:, 0]
        if np.linalg.matrix_rank(np.vstack([a, np.ones(p)])) < p:
            raise IdentificationError(_unidentified(len(masks), p))
        kkt = np.block([[a.T @ a, np.ones((p, 1))], [np.ones((1, p)), np.zeros((1, 1))]])
        rhs = np.concatenate([a.T @ r, [v_full - v_empty]])
        beta = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:p]
    else:
        anchors = np.vstack([np.zeros(n, bool), np.ones(n, bool)])
        x = np.hstack([np.ones((len(masks) + 2, 1)), _features(np.vstack([masks, anchors]), pairs)])
        w = np.concatenate([w, [1 / 2.0**n, 1 / 2.0**n]])
        y = np.concatenate([y, [v_empty, v_full]])
        if np.linalg.matrix_rank(x) < x.shape[1]:
            raise IdentificationError(_unidentified(len(masks), p + 1))
        sw = np.sqrt(w)
        beta = np.linalg.lstsq(x * sw[:, None], y * sw, rcond=None)[0][1:]
    out = np.zeros((n, n))
    for (i, j), b in zip(pairs, beta[n:]):
        out[i, j] = out[j, i] = b
    return out


def _unidentified(rows: int, p: int) -> str:
    return (f"the design's {rows} coalitions do not identify the {p} coefficients of a second-order "
            "approximation; interactions need a larger budget, in varied sizes")


def interactions(masks, values, v_empty: float, v_full: float, names: list[str], index: str = "fsii",
                 n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Rows (i, j, value, ci_low, ci_high) for every pair, most redundant first.

    Raises:
        IdentificationError: the design does not identify the interactions.
    """
    masks = np.asarray(masks, dtype=bool)
    values = np.asarray(values, dtype=float)
    point = interaction_fit(masks, values, v_empty, v_full, index)
    n = masks.shape[1]
    iu = np.triu_indices(n, 1)
    draws = []
    rng = np.random.default_rng(seed)
    sizes = masks.sum(axis=1)
    layers = [np.flatnonzero(sizes == s) for s in np.unique(sizes)]
    for _ in range(n_boot):
        rows = np.concatenate([rng.choice(layer, len(layer)) for layer in layers])
        try:
            draws.append(interaction_fit(masks[rows], values[rows], v_empty, v_full, index)[iu])
        except IdentificationError:
            continue
    low = high = np.full(len(iu[0]), np.nan)
    if len(draws) >= max(2, n_boot // 2):
        tail = 100 * (1 - CI_LEVEL) / 2
        low, high = np.percentile(np.stack(draws), [tail, 100 - tail], axis=0)
    table = pd.DataFrame({"index": index, "i": [names[a] for a in iu[0]], "j": [names[b] for b in iu[1]],
                          "value": point[iu], "ci_low": low, "ci_high": high})
    return table.sort_values("value", kind="stable").reset_index(drop=True)
