"""``kernelshap``: constrained least squares of Covert & Lee (2021).

Shapley values minimise the kernel-weighted squared error of an additive fit to
v(S) - v(empty) subject to sum(phi) = v(full) - v(empty). When coalitions are
drawn from the kernel itself the weights become uniform over rows.
"""

from __future__ import annotations

import numpy as np

from .common import ConstrainedRegression


class KernelSHAP(ConstrainedRegression):
    name = "kernelshap"
    schemes = ("kernel", "kernel_paired")
    default_scheme = "kernel_paired"

    def weights(self, masks):
        return np.ones(len(masks))

    def min_budget(self, scheme, n):
        """n - 1 free parameters once efficiency is imposed; a complementary pair
        adds a single equation, so paired designs need n - 1 pairs."""
        return n - 1 if scheme == "kernel" else 2 * (n - 1)

    def scheme_for(self, paired):
        return "kernel_paired" if paired else "kernel"
