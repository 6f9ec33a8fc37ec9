"""The regularised kernel of the gradient methods: with training features Phi (n, d),
K = Phi^T Phi + lambda I and tau(x, i) = phi_x^T K^-1 phi_i.

Solved in the dual (n x n, through K^-1 Phi^T = Phi^T (Phi Phi^T + lambda I)^-1) when
there are fewer items than feature dimensions, in the primal (d x d) otherwise; in
float64, through an eigendecomposition, so lambda = 0 is a pseudo-inverse. `lam` is
relative to the mean squared feature norm trace(Phi^T Phi) / n, so one value means the
same with or without a projection and for any loss scale.
"""

from __future__ import annotations

import numpy as np


class Kernel:
    def __init__(self, phi: np.ndarray, lam: float):
        phi = np.asarray(phi, dtype=np.float64)
        n, d = phi.shape
        scale = float((phi ** 2).sum() / max(n, 1))
        self.lam = lam * scale if scale > 0 else lam
        self.phi, self.dual = phi, n <= d
        gram = phi @ phi.T if self.dual else phi.T @ phi
        w, v = np.linalg.eigh(gram)
        w = np.clip(w, 0.0, None) + self.lam
        tol = w.max(initial=0.0) * max(gram.shape) * np.finfo(np.float64).eps
        inv = np.where(w > tol, 1.0 / np.where(w > tol, w, 1.0), 0.0)
        self.inv = (v * inv) @ v.T  # (G + lam I)^-1 (dual) or K^-1 (primal)
        self.gram = gram

    def scores(self, targets: np.ndarray) -> np.ndarray:
        """(m, n) tau(x, i) of targets (m, d) and every training item."""
        t = np.asarray(targets, dtype=np.float64)
        if self.dual:
            return (t @ self.phi.T) @ self.inv
        return t @ (self.inv @ self.phi.T)

    def inverse_norms(self) -> np.ndarray:
        """(n,) ||K^-1 phi_i|| (relative influence)."""
        if self.dual:
            return np.sqrt(np.clip(np.einsum("ij,jk,ki->i", self.inv, self.gram, self.inv), 0.0, None))
        return np.linalg.norm(self.inv @ self.phi.T, axis=0)

    def leverage(self) -> np.ndarray:
        """(n,) h_ii = phi_i^T K^-1 phi_i (in [0, 1) when lambda > 0)."""
        if self.dual:
            return np.einsum("ij,ji->i", self.gram, self.inv)
        return np.einsum("ij,jk,ik->i", self.phi, self.inv, self.phi)
