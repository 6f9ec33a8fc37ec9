"""Checks and linear algebra shared by the estimators."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .base import IdentificationError, Method


def is_paired(masks: np.ndarray) -> bool:
    """Whether row 2k+1 is the complement of row 2k for every complete pair.

    An odd final row (a pair cut by the budget) is allowed.
    """
    masks = np.asarray(masks, dtype=bool)
    end = 2 * (len(masks) // 2)
    return end > 0 and bool(np.array_equal(masks[1:end:2], ~masks[0:end:2]))


def check_design(masks, values, v_empty, v_full, n_players=None):
    """Validate an evaluated design; return (bool masks, float values, v_empty, v_full).

    Raises:
        ValueError: naming the first problem found.
    """
    masks = np.asarray(masks)
    if masks.ndim != 2:
        raise ValueError(f"masks must be 2-D (coalitions x players), got shape {masks.shape}")
    if masks.shape[0] == 0:
        raise ValueError("the design is empty: masks has no rows")
    if masks.dtype != bool:
        if not np.issubdtype(masks.dtype, np.number) or not np.isin(masks, (0, 1)).all():
            raise ValueError("masks must be boolean or contain only 0 and 1")
        masks = masks.astype(bool)
    m, n = masks.shape
    if n < 2:
        raise ValueError(f"masks must have at least 2 players (columns), got {n}")
    if n_players is not None and n != n_players:
        raise ValueError(f"masks has {n} columns but n_players is {n_players}")
    try:
        values = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"values must be numeric: {err}") from None
    if values.ndim != 1 or len(values) != m:
        raise ValueError(
            f"masks has {m} rows but values has shape {values.shape}; give one value per row"
        )
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"values must be finite; rows {bad[:10].tolist()} are NaN or infinite")
    anchors = []
    for name, anchor in (("v_empty", v_empty), ("v_full", v_full)):
        try:
            anchor = float(anchor)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {anchor!r}") from None
        if not math.isfinite(anchor):
            raise ValueError(f"{name} must be finite, got {anchor}")
        anchors.append(anchor)
    sizes = masks.sum(axis=1)
    anchor_rows = np.flatnonzero((sizes == 0) | (sizes == n))
    if anchor_rows.size:
        raise ValueError(
            f"rows {anchor_rows[:10].tolist()} are the empty or the full coalition; "
            "pass those as v_empty and v_full instead"
        )
    return masks, values, anchors[0], anchors[1]


def constrained_wls(masks, y, total, weights, with_parts=False):
    """argmin sum_r w_r (y_r - z_r . phi)^2 subject to sum(phi) = total.

    Writing phi = total/n + B theta with B an orthonormal basis of the vectors
    summing to zero turns the problem into ordinary weighted least squares in
    theta, so efficiency holds exactly. With `with_parts`, returns theta and
    (residuals, leverages, P) instead, P the linear map with theta = P t.
    """
    n = masks.shape[1]
    z = masks.astype(float)
    basis = zero_sum_basis(n)
    root = np.sqrt(weights)
    features = z @ basis
    target = y - z.sum(axis=1) * total / n
    design = features * root[:, None]
    theta, _, rank, _ = np.linalg.lstsq(design, target * root, rcond=None)
    if rank < n - 1:
        raise IdentificationError(
            f"the {len(masks)} coalitions identify only {rank} of the {n - 1} free "
            "parameters; evaluate more (or more varied) coalitions"
        )
    if not with_parts:
        return total / n + basis @ theta
    projector = np.linalg.pinv(design) * root[None, :]
    leverage = np.einsum("ij,ji->i", features, projector)
    return theta, (target - features @ theta, leverage, projector)


@lru_cache(maxsize=None)
def zero_sum_basis(n: int) -> np.ndarray:
    """An orthonormal basis (n, n - 1) of the vectors summing to zero."""
    from scipy.linalg import null_space  # here: drawing a design needs no scipy

    basis = null_space(np.ones((1, n)))
    basis.setflags(write=False)
    return basis


class ConstrainedRegression(Method):
    """A method that is `constrained_wls` with per-row weights (`weights`)."""

    efficient = True
    shrinkable = True

    def weights(self, masks) -> np.ndarray:
        raise NotImplementedError

    def point(self, masks, values, v_empty, v_full):
        return constrained_wls(masks, values - v_empty, v_full - v_empty, self.weights(masks))

    def parts(self, masks, values, v_empty, v_full):
        return constrained_wls(masks, values - v_empty, v_full - v_empty, self.weights(masks), True)
