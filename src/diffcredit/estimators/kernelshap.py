"""``kernelshap``: constrained least squares of Covert & Lee (2021).

Shapley values minimise the kernel-weighted squared error of an additive fit to
v(S) - v(empty) subject to sum(phi) = v(full) - v(empty). When coalitions are
drawn from the kernel itself the weights become uniform over rows.
"""

from __future__ import annotations

import numpy as np

from .base import Method
from .common import constrained_wls


class KernelSHAP(Method):
    name = "kernelshap"
    schemes = ("kernel", "kernel_paired")
    default_scheme = "kernel_paired"
    efficient = True
    shrinkable = True

    def point(self, masks, values, v_empty, v_full):
        return constrained_wls(masks, values - v_empty, v_full - v_empty, np.ones(len(masks)))

    def parts(self, masks, values, v_empty, v_full):
        return constrained_wls(masks, values - v_empty, v_full - v_empty, np.ones(len(masks)), True)

    def min_budget(self, scheme, n):
        """n - 1 free parameters once efficiency is imposed; a complementary pair
        adds a single equation, so paired designs need n - 1 pairs."""
        return n - 1 if scheme == "kernel" else 2 * (n - 1)

    def scheme_for(self, paired):
        return "kernel_paired" if paired else "kernel"
