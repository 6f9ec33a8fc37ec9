"""``leverage``: Leverage SHAP (Musco & Witter, 2025).

The regression of ``kernelshap`` on a design drawn from the leverage-score
distribution, each row reweighted by kernel mass / sampling probability. With
coalitions drawn without replacement and uniformly within each size, the
probability of a size-s coalition given the design's size counts is
count_s / C(n, s), so a row of size s gets weight (n-1) / (s (n-s)) / count_s:
the size's total kernel mass shared among its rows. A size that is fully
enumerated thus gets exactly its kernel weights, and the full enumeration gives
the exact Shapley values. Efficiency is imposed, as in the paper, by solving in
the subspace orthogonal to the all ones vector and adding
(v(full) - v(empty)) / n to every value.
"""

from __future__ import annotations

import numpy as np

from .common import ConstrainedRegression


class Leverage(ConstrainedRegression):
    name = "leverage"
    schemes = ("leverage", "stratified")
    default_scheme = "leverage"

    def weights(self, masks):
        """Kernel mass of the row's size, shared among the design's rows of that size."""
        n = masks.shape[1]
        sizes = masks.sum(axis=1)
        counts = np.bincount(sizes, minlength=n)
        return (n - 1) / (sizes * (n - sizes)) / counts[sizes]

    def min_budget(self, scheme, n):
        """n - 1 free parameters; its designs are pairs, each one equation."""
        return 2 * (n - 1)
