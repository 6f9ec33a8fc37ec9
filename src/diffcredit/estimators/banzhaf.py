"""``banzhaf``: maximum sample reuse (Wang & Jia, 2023).

Mean v(S) over rows containing i minus mean v(S) over rows without i, with the
anchors mixed in at their probability under uniform sampling, which keeps it
unbiased although the design leaves them out. The values are not efficient.
"""

from __future__ import annotations

import numpy as np

from .base import IdentificationError, Method


class Banzhaf(Method):
    name = "banzhaf"
    schemes = ("banzhaf",)
    default_scheme = "banzhaf"

    def point(self, masks, values, v_empty, v_full):
        """MSR estimate of E[v(S) | i in S] - E[v(S) | i not in S] for uniform S.

        The design excludes the anchors, so they enter with their exact weight:
        given i in S, a uniform subset is the full coalition with probability
        2^-(n-1), and otherwise a uniform non-full subset containing i, which is
        what the design's rows containing i are (likewise for the empty one).
        """
        m, n = masks.shape
        z = masks.astype(float)
        inside = z.sum(axis=0)
        outside = m - inside
        missing = np.flatnonzero((inside == 0) | (outside == 0))
        if missing.size:
            raise IdentificationError(
                f"players {missing[:10].tolist()} are in every or in no coalition of the "
                "design; evaluate more coalitions"
            )
        mean_in = values @ z / inside
        mean_out = values @ (1 - z) / outside
        anchor = 0.5 ** (n - 1)
        return (anchor * v_full + (1 - anchor) * mean_in) - (anchor * v_empty + (1 - anchor) * mean_out)

    def min_budget(self, scheme, n):
        """Each player in and out of some coalition: 2 rows."""
        return 2
