"""``loo``: leave-one-out, v(full) - v(N \\ {i})."""

from __future__ import annotations

import numpy as np

from .base import IdentificationError, Method


class LeaveOneOut(Method):
    name = "loo"
    schemes = ("loo",)
    default_scheme = "loo"
    bootstrap = None

    def point(self, masks, values, v_empty, v_full):
        m, n = masks.shape
        left_out = np.argmin(masks, axis=1)
        if m != n or (masks.sum(axis=1) != n - 1).any() or len(np.unique(left_out)) != n:
            raise IdentificationError(
                f"method 'loo' needs exactly the {n} leave-one-out coalitions, each once; "
                "use scheme 'loo'"
            )
        value = np.empty(n)
        value[left_out] = v_full - values
        return value

    def min_budget(self, scheme, n):
        """The n leave-one-out coalitions."""
        return n
