"""``stratified``: the Shapley regression solved within coalition-size strata.

v(S) and the features are centred on their mean over the design's rows of the
same size before the fit (a fixed effect per size). Subtracting any function
g(|S|) of the size alone changes the Shapley values only by (g(n) - g(0)) / n
for everybody, so this takes the part of v that depends on size alone, which is
large when v grows with the amount of data, out of the sampling error. Rows of
size s get weight K_s (N_s - 1) / (N_s (c_s - 1)) (K_s the kernel mass of the
size, N_s = C(n, s), c_s its rows), which makes each size's centred scatter
unbiased for its share of the regression, and is the exact kernel weight
K_s / N_s for a size that is fully enumerated. Exact for games that are
additive plus a function of |S|, for games with interactions of order at most 2
on designs of whole complementary pairs, and on the full enumeration;
consistent otherwise. Its intervals come from a wild bootstrap that keeps the
design.
"""

from __future__ import annotations

import math

import numpy as np

from .base import IdentificationError, Method
from .common import zero_sum_basis


class Stratified(Method):
    name = "stratified"
    # The designs whose rows of each size are a uniform sample of that size.
    schemes = ("stratified", "kernel", "kernel_paired", "leverage")
    default_scheme = "stratified"
    efficient = True
    shrinkable = True
    bootstrap = "wild"

    def point(self, masks, values, v_empty, v_full):
        total = v_full - v_empty
        theta = _within_size_fit(masks, values - v_empty)
        return total / masks.shape[1] + zero_sum_basis(masks.shape[1]) @ theta

    def parts(self, masks, values, v_empty, v_full):
        return _within_size_fit(masks, values - v_empty, with_parts=True)

    def min_budget(self, scheme, n):
        """Least squares needs n - 1 equations and each coalition size spends one
        more on its mean: ``kernel`` designs need n coalitions; in paired designs
        each pair class other than the middle one (both members of size n/2,
        whose mean is fixed by the pairing) costs a pair, so ``kernel_paired``
        needs n pairs (n - 1 for even n, if every pair is a middle one),
        ``stratified`` n pairs (the whole singleton stratum; one pair for n = 2)
        and ``leverage``, which uses every class from the start,
        n - 1 + floor((n - 1)/2) pairs."""
        if scheme == "kernel":
            return n
        if scheme == "leverage":
            return 2 * (n - 1 + (n - 1) // 2)
        if scheme == "kernel_paired":
            return 2 * (n - 1) if n % 2 == 0 else 2 * n
        return 2 if n == 2 else 2 * n

    def scheme_for(self, paired):
        return "stratified" if paired else "kernel"


def _within_size_fit(masks, y, with_parts=False):
    """Kernel-weighted least squares of y on the players, with a fixed effect per size.

    Writing the values as total/n + B theta (B an orthonormal basis of the
    vectors summing to zero) and centring y and the features z B on their
    means within each size, the fit is weighted least squares in theta, with
    the weights of `_within_size_weights`. A size with a single row centres
    it to zero: such a row tells nothing beyond its size's mean. With
    `with_parts`, also returns the residuals, each row's leverage (its size's
    mean included) and the linear map P with theta = P y.
    """
    m, n = masks.shape
    sizes = masks.sum(axis=1)
    counts = np.bincount(sizes, minlength=n + 1)
    weights = _within_size_weights(masks, sizes, counts)
    indicator = np.zeros((m, n + 1))
    indicator[np.arange(m), sizes] = 1.0
    per_size = np.maximum(counts, 1)
    features = masks.astype(float) @ zero_sum_basis(n)
    root = np.sqrt(weights)
    # Centring leaves rounding noise where it should leave zeros, so the rank
    # is judged against the scale of the uncentred features.
    scale = np.linalg.norm(features * root[:, None], 2)
    features = features - (indicator.T @ features / per_size[:, None])[sizes]
    y = y - (indicator.T @ y / per_size)[sizes]
    singular = np.linalg.svd(features * root[:, None], compute_uv=False)
    rank = int((singular > scale * max(m, n) * np.finfo(float).eps).sum())
    theta = np.linalg.lstsq(features * root[:, None], y * root, rcond=None)[0]
    if rank < n - 1:
        raise IdentificationError(
            f"the {m} coalitions identify only {rank} of the {n - 1} free parameters "
            "once each coalition size is centred on its mean; evaluate more (or more "
            "varied) coalitions, with several of each size"
        )
    if not with_parts:
        return theta
    weighted = features * weights[:, None]
    inverse = np.linalg.pinv(weighted.T @ features)
    leverage = 1.0 / counts[sizes] + np.einsum("ij,jk,ik->i", weighted, inverse, features)
    return theta, (y - features @ theta, leverage, inverse @ weighted.T)


def _within_size_weights(masks, sizes, counts):
    """Row weights that make each size's centred scatter estimate its kernel share.

    The Shapley regression needs, for each size s, K_s = (n-1)/(s(n-s)) times
    the covariance of the coalitions of that size (divisor N_s = C(n, s)). The
    scatter of c_s rows around their own mean falls short of c_s times that
    covariance by a factor (c_s - 1)/c_s for a sample with repeats, and
    (c_s - 1) N_s / (c_s (N_s - 1)) for one without (a uniform c_s-subset).
    So a row gets K_s / (c_s - 1) if its size repeats a coalition, and
    K_s (N_s - 1) / (N_s (c_s - 1)) otherwise: K_s / N_s, the exact kernel
    weight, for a size that is fully enumerated. Rows alone in their size
    are centred to zero and get weight 0.
    """
    n = masks.shape[1]
    codes = masks.astype(np.int64) @ (1 << np.arange(n, dtype=np.int64)) if n < 63 else None
    weights = np.zeros(len(masks))
    for size in np.flatnonzero(counts > 1):
        rows = sizes == size
        kernel = (n - 1) / (size * (n - size))
        if codes is not None:
            repeats = len(np.unique(codes[rows])) < counts[size]
        else:
            repeats = len(np.unique(masks[rows], axis=0)) < counts[size]
        shortfall = 1.0 if repeats else 1.0 - 1.0 / math.comb(n, int(size))
        weights[rows] = kernel * shortfall / (counts[size] - 1)
    return weights
