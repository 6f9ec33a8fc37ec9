"""TRAK, D-TRAK and the influence-function variants: one kernel over gradient features.

tau(x, i) = phi_x^T (Phi^T Phi + lambda I)^-1 phi_i, with phi the timestep-averaged
gradient of the output function (gradients.py): the diffusion loss for TRAK and the
influence-function variants, the squared norm of the prediction for D-TRAK (Zheng et
al., ICLR 2024). For a global property the target is the mean feature of the full
model's generated samples, so an item's score is its mean tau over them. With the loss
output, a positive tau means up-weighting the item lowers the loss of the generated
samples (it helps generate them); the same sign is kept for D-TRAK. Relative IF divides
by ||K^-1 phi_i||, renormalised IF by ||phi_i||.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import Method, aggregate, timestep_grid
from .linear import Kernel

EXACT_LIMIT = 2**30  # bytes of unprojected features `projection_dim: auto` keeps exact
DEFAULT_DIM = 4096


def projection_dim(entry: dict, context: dict):
    """The resolved projection dimension (None: exact features)."""
    dim = entry["projection_dim"]
    if isinstance(dim, str) and dim != "auto" or isinstance(dim, int) and dim < 1:
        raise ValueError(f"projection_dim {dim!r}: give a positive integer, null (exact gradients) or auto")
    size = 4 * context["n_items"] * context["n_trainable"]
    if dim == "auto":
        return None if size <= EXACT_LIMIT else DEFAULT_DIM
    if dim is None and size > 4 * EXACT_LIMIT:
        raise ValueError(f"projection_dim null keeps {size / 2**30:.1f} GiB of exact gradient features "
                         f"({context['n_items']} items x {context['n_trainable']} parameters); give a projection_dim")
    return dim


def lambdas(entry: dict) -> list[float]:
    lam = entry["lambda"]
    return [float(x) for x in (lam if isinstance(lam, list) else [lam])]


class GradientMethod(Method):
    kind = "gradient"
    output = "loss"
    normalize = False
    residual = False
    schema: ClassVar[dict] = {
        "timesteps": {"type": "integer", "minimum": 1, "default": 10, "description": "K uniform timesteps"},
        "projection_dim": {"type": ["integer", "string", "null"], "default": "auto",
                           "description": "random projection dimension; null: exact gradients; auto: exact when "
                                          "they fit in 1 GiB, else 4096"},
        "projection_seed": {"type": "integer", "default": 0},
        "lambda": {"anyOf": [{"type": "number", "minimum": 0},
                             {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 1,
                              "uniqueItems": True}],
                   "default": 0.01,
                   "description": "ridge term relative to the mean squared feature norm; a list is a sweep "
                                  "(one row each)"},
        "seeds": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "default": [0],
                  "description": "noise seeds; two or more give intervals"},
        **Method.schema,
    }

    def featurizer(self, entry: dict, context: dict) -> dict:
        timestep_grid(context["num_train_timesteps"], entry["timesteps"])
        return {"kind": "gradient", "output": self.output, "normalize": self.normalize, "residual": self.residual,
                "timesteps": entry["timesteps"], "projection_dim": projection_dim(entry, context),
                "projection_seed": entry["projection_seed"], "seeds": list(entry["seeds"])}

    def variants(self, entry: dict) -> list[dict]:
        lams = lambdas(entry)
        return [{"label": self.name if len(lams) == 1 else f"{self.name}-lambda{lam:g}",
                 "spec": {"lambda": lam, "aggregate": entry["aggregate"]}} for lam in lams]

    def item_scores(self, kernel: Kernel, phi: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """(n,) each item's mean score over the targets."""
        return kernel.scores(targets.mean(0, keepdims=True))[0]

    def scores(self, train: list[dict], target: dict, spec: dict) -> np.ndarray:
        sizes = [t["features"].shape[1] for t in train]
        out = []
        for s in range(target["features"].shape[0]):
            phi = np.concatenate([t["features"][s] for t in train]).astype(np.float64)
            residual = np.concatenate([t["residual"][s] for t in train]) if self.residual else None
            kernel = Kernel(phi, spec["lambda"])
            out.append(self.contributor_scores(kernel, phi, target["features"][s].astype(np.float64), residual,
                                               sizes, spec["aggregate"]))
        return np.stack(out)

    def contributor_scores(self, kernel, phi, targets, residual, sizes, how) -> np.ndarray:
        return aggregate(self.item_scores(kernel, phi, targets), sizes, how)


class TRAK(GradientMethod):
    name = "trak"


class DTRAK(GradientMethod):
    name = "dtrak"
    output = "sq_norm"


class RelativeIF(GradientMethod):
    name = "relative_if"

    def item_scores(self, kernel, phi, targets):
        norm = kernel.inverse_norms()
        return super().item_scores(kernel, phi, targets) / np.where(norm > 0, norm, 1.0)


class RenormalizedIF(GradientMethod):
    name = "renormalized_if"

    def item_scores(self, kernel, phi, targets):
        norm = np.linalg.norm(phi, axis=1)
        return super().item_scores(kernel, phi, targets) / np.where(norm > 0, norm, 1.0)
