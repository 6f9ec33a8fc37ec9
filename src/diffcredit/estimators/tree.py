"""``tree``: exact Shapley values of a gradient-boosted tree surrogate of the game
(the tree surrogate of SurrogateSHAP, Lu et al., 2026).

Regression trees (LightGBM) are boosted on (coalition mask, v(S)), the two
anchors included as rows, with SurrogateSHAP's settings (900 trees of depth
at most 5, learning rate 0.05, 80% of the rows per tree, L2 penalty 1). The
values are the exact Shapley values of the fitted function g as a game,
S -> g(1_S): interventional TreeSHAP with the empty coalition as the only
background point. They are computed leaf by leaf in closed form. A leaf of
value w is reached by 1_S exactly when the players A its path needs in are in S
and the players B it needs out are not, so it adds the game w 1[A in S, B out of
S], whose Shapley values are w (a-1)! b! / (a+b)! for i in A and
-w a! (b-1)! / (a+b)! for j in B (a = |A|, b = |B|: i must come after the rest
of A and before all of B in a random order). Its pairwise Shapley interaction
index (Grabisch & Roubens, 1999) is, from the game's Moebius transform,
w (a-2)! b! / (a+b-1)! for a pair in A, -w (a-1)! (b-1)! / (a+b-1)! for one in
A and one in B, and w a! (b-2)! / (a+b-1)! for a pair in B.

Anchoring: g need not pass through the measured anchors, and its values sum to
g(N) - g(0), not v(N) - v(0). The surrogate used is g plus an affine function
of the coalition's size, g'(S) = g(S) + (v(0) - g(0)) + d |S| / n with
d = (v(N) - v(0)) - (g(N) - g(0)), which equals v at both anchors; its values
are g's plus d / n each, so they sum to v(N) - v(0), and its interactions are
g's (the correction is additive).

``stratified_tree``: the same trees on what the ``stratified`` regression leaves
over. The stratified values beta are fitted first; the residuals
v(S) - v(0) - beta . 1_S, centred within each coalition size (the part that
depends on size alone moves every value by the same amount, which efficiency
fixes), are what the trees fit, anchors at 0; the values are beta plus the
trees' anchored values. The regression keeps its additive part, which trees
alone learn poorly from a few coalitions per player, and the trees add what
interactions the design shows (benchmarks/tree.py). Its intervals come from the
stratified fit's wild bootstrap (the design kept, the signs of that fit's residuals
flipped per pair) with the whole method refitted on every replicate: resampling rows
would leave the stratified fit whole sizes short.

Every design can be fitted; how well the trees approximate the game is the
whole error, and nothing in the fit says how large it is: the bootstrap over
coalitions measures the fit's variance, not its bias (benchmarks/tree.py
measures both against known values). Each player must be in some coalition and
out of another, or the trees cannot split on it.
"""

from __future__ import annotations

from math import factorial

import numpy as np

from .base import IdentificationError, Method

# SurrogateSHAP's settings (XGBoost there: depth 5, 900 trees, lr 0.05,
# subsample 0.8, reg_lambda 1 and min_child_weight 1 by default).
PARAMS = {
    "objective": "regression",
    "max_depth": 5,
    "num_leaves": 32,
    "learning_rate": 0.05,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "min_data_in_leaf": 1,
    "min_sum_hessian_in_leaf": 0.0,
    "min_data_in_bin": 1,
    "num_threads": 1,  # a few hundred rows: threads cost more than they save
    "deterministic": True,
    "force_col_wise": True,
    "seed": 0,
    "verbose": -1,
}
N_TREES = 900


def fit(masks: np.ndarray, values: np.ndarray, v_empty: float, v_full: float, varied: bool = True):
    """The booster of g (a LightGBM Booster), fitted on the design's rows and the
    two anchors.

    Raises:
        IdentificationError: with `varied`, a player is in every coalition or in none.
    """
    import lightgbm

    masks = np.asarray(masks, dtype=bool)
    n = masks.shape[1]
    inside = masks.sum(axis=0)
    fixed = np.flatnonzero((inside == 0) | (inside == len(masks)))
    if varied and fixed.size:
        raise IdentificationError(
            f"players {fixed[:10].tolist()} are in every or in no coalition of the design, so no tree "
            "can tell what they add; evaluate more coalitions"
        )
    x = np.vstack([masks, np.zeros(n, bool), np.ones(n, bool)]).astype(np.float64)
    y = np.concatenate([np.asarray(values, dtype=float), [v_empty, v_full]])
    data = lightgbm.Dataset(x, y, params={"feature_pre_filter": False, "min_data_in_bin": 1}, free_raw_data=False)
    return lightgbm.train(PARAMS, data, num_boost_round=N_TREES)


class Leaves:
    """Every leaf of a booster's trees that some coalition reaches, as rules on
    binary inputs: its value w, the players its path needs in (`need_in`, a
    (leaves, n) bool array) and those it needs out (`need_out`)."""

    def __init__(self, booster, n: int):
        trees = _parse(booster.model_to_string())
        # Walk all trees at once, a level per step; a frontier entry is a node of
        # some tree with the rules of the path to it.
        node = np.array([t[0] for t in trees], dtype=np.int64)  # global index; ~leaf for leaves
        need_in = np.zeros((len(trees), n), bool)
        need_out = np.zeros((len(trees), n), bool)
        feature, threshold, left, right, leaf_value = (np.concatenate([t[k] for t in trees]) for k in range(1, 6))
        done_w, done_in, done_out = [], [], []
        while len(node):
            leaf = node < 0
            done_w.append(leaf_value[~node[leaf]])
            done_in.append(need_in[leaf])
            done_out.append(need_out[leaf])
            node, need_in, need_out = node[~leaf], need_in[~leaf], need_out[~leaf]
            f, t = feature[node], threshold[node]
            rows = np.arange(len(node))
            nodes, ins, outs = [], [], []
            # x <= t goes left; x is 0 (out) or 1 (in).
            for child, out_ok, in_ok in ((left[node], 0 <= t, 1 <= t), (right[node], 0 > t, 1 > t)):
                keep = (out_ok | in_ok) & ~(in_ok & ~out_ok & need_out[rows, f]) & ~(out_ok & ~in_ok & need_in[rows, f])
                a, b = need_in[keep].copy(), need_out[keep].copy()
                a[np.arange(keep.sum()), f[keep]] |= (in_ok & ~out_ok)[keep]
                b[np.arange(keep.sum()), f[keep]] |= (out_ok & ~in_ok)[keep]
                nodes.append(child[keep]), ins.append(a), outs.append(b)
            node, need_in, need_out = np.concatenate(nodes), np.concatenate(ins), np.concatenate(outs)
        self.w = np.concatenate(done_w)
        self.need_in = np.concatenate(done_in)
        self.need_out = np.concatenate(done_out)

    def predict(self, masks: np.ndarray) -> np.ndarray:
        """g at each row of `masks` (the trees' sum), from the leaves' rules."""
        z = np.asarray(masks, dtype=float)
        hit = (z @ self.need_in.T == self.need_in.sum(axis=1)) & (z @ self.need_out.T == 0)
        return hit @ self.w

    def shapley(self) -> tuple[np.ndarray, float, float]:
        """The Shapley values of g as a game, and g(empty), g(full)."""
        a, b = self.need_in.sum(axis=1), self.need_out.sum(axis=1)
        fact = _factorials(int((a + b).max(initial=0)) + 1)
        total = fact[a + b]
        gain = np.where(a > 0, self.w * fact[np.maximum(a - 1, 0)] * fact[b] / total, 0.0)
        loss = np.where(b > 0, self.w * fact[a] * fact[np.maximum(b - 1, 0)] / total, 0.0)
        phi = gain @ self.need_in - loss @ self.need_out
        return phi, float(self.w[a == 0].sum()), float(self.w[b == 0].sum())

    def interactions(self) -> np.ndarray:
        """(n, n) pairwise Shapley interaction index of g (zero diagonal)."""
        a, b = self.need_in.sum(axis=1), self.need_out.sum(axis=1)
        fact = _factorials(int((a + b).max(initial=0)) + 1)
        pairs = a + b >= 2
        scale = np.where(pairs, self.w / fact[np.maximum(a + b - 1, 0)], 0.0)
        both_in = np.where(a >= 2, scale * fact[np.maximum(a - 2, 0)] * fact[b], 0.0)
        cross = np.where((a > 0) & (b > 0), scale * fact[np.maximum(a - 1, 0)] * fact[np.maximum(b - 1, 0)], 0.0)
        both_out = np.where(b >= 2, scale * fact[a] * fact[np.maximum(b - 2, 0)], 0.0)
        zi, zo = self.need_in.astype(float), self.need_out.astype(float)
        out = (zi.T * both_in) @ zi + (zo.T * both_out) @ zo - (zi.T * cross) @ zo - (zo.T * cross) @ zi
        np.fill_diagonal(out, 0.0)
        return out


def _factorials(k: int) -> np.ndarray:
    return np.array([float(factorial(i)) for i in range(k + 1)])


def _parse(model: str) -> list[tuple]:
    """Each tree of a LightGBM model string as (root, split feature, threshold, left
    child, right child, leaf value), node and leaf indices global across trees: a
    child >= 0 is an internal node, ~child a leaf."""
    trees, nodes, leaves = [], 0, 0
    for block in model.split("\nTree=")[1:]:
        fields = dict(line.split("=", 1) for line in block.split("\n")[1:] if "=" in line)
        values = np.array(fields["leaf_value"].split(), dtype=float)
        if int(fields["num_leaves"]) == 1:
            empty = np.zeros(0)
            trees.append((~leaves, empty.astype(np.int64), empty, empty.astype(np.int64), empty.astype(np.int64),
                          values))
            leaves += 1
            continue
        kinds = np.array(fields["decision_type"].split(), dtype=np.int64)
        if (kinds & 1).any():
            raise ValueError("unexpected categorical split in a LightGBM tree of coalition masks")
        children = [np.array(fields[k].split(), dtype=np.int64) for k in ("left_child", "right_child")]
        left, right = (np.where(c >= 0, c + nodes, ~(~c + leaves)) for c in children)
        trees.append((nodes, np.array(fields["split_feature"].split(), dtype=np.int64),
                      np.array(fields["threshold"].split(), dtype=float), left, right, values))
        nodes += len(left)
        leaves += len(values)
    return trees


def anchored_values(masks, values, v_empty, v_full, varied: bool = True) -> np.ndarray:
    """The Shapley values of the anchored surrogate g' (module docstring); `varied`
    as for `fit`."""
    n = np.asarray(masks).shape[1]
    phi, g_empty, g_full = Leaves(fit(masks, values, v_empty, v_full, varied), n).shapley()
    return phi + ((v_full - v_empty) - (g_full - g_empty)) / n


def residual_values(masks, values, v_empty, v_full) -> np.ndarray:
    """The values of ``stratified_tree`` (module docstring)."""
    from .stratified import Stratified

    masks = np.asarray(masks, dtype=bool)
    beta = Stratified().point(masks, values, v_empty, v_full)
    residual = np.asarray(values, dtype=float) - v_empty - masks @ beta
    sizes = masks.sum(axis=1)
    for size in np.unique(sizes):
        rows = sizes == size
        residual[rows] -= residual[rows].mean()
    # A player the design never varies has its value from the fit's efficiency alone;
    # the trees cannot split on it and give it nothing.
    return beta + anchored_values(masks, residual, 0.0, 0.0, varied=False)


class TreeSurrogate(Method):
    name = "tree"
    schemes = ("kernel", "kernel_paired", "leverage", "stratified")
    default_scheme = "kernel"
    efficient = True
    convergence_boot = 25  # a fit takes about 0.3 s at 30 coalitions

    def point(self, masks, values, v_empty, v_full):
        return anchored_values(masks, values, v_empty, v_full)

    def min_budget(self, scheme, n):
        """Each player in and out of some coalition: a complementary pair, or two rows."""
        return 2


class StratifiedTree(Method):
    name = "stratified_tree"
    schemes = ("stratified", "kernel", "kernel_paired", "leverage")  # the stratified fit's
    default_scheme = "stratified"
    efficient = True
    convergence_boot = 25
    bootstrap = "wild_refit"  # the stratified fit's wild bootstrap, the trees refitted on each replicate
    base = "stratified"

    def point(self, masks, values, v_empty, v_full):
        return residual_values(masks, values, v_empty, v_full)

    def min_budget(self, scheme, n):
        """The stratified fit's."""
        from .stratified import Stratified

        return Stratified().min_budget(scheme, n)
