"""DAS, the diffusion attribution score (Lin et al., ICLR 2025).

The influence of an item on the model's predicted noise rather than on a loss:
linearising the prediction and taking one Newton step for leaving item i out gives,
for a generated sample x,

    a(x, i) = phi_x^T (Phi^T Phi + lambda I)^-1 phi_i * r_i / (1 - h_ii)

with phi the gradient of the mean prediction, each timestep's gradient at unit norm
before the average, r_i the item's root mean squared training residual over the
timesteps and h_ii its leverage. The score of a group is the squared change summed
over its items, (sum_i a(x, i))^2, averaged over the generated samples: a magnitude of
influence (never negative), not a direction.
"""

from __future__ import annotations

import numpy as np

from .base import aggregate
from .trak import GradientMethod


class DAS(GradientMethod):
    name = "das"
    output = "mean"
    normalize = True
    residual = True

    def contributor_scores(self, kernel, phi, targets, residual, sizes, how) -> np.ndarray:
        h = np.clip(kernel.leverage(), 0.0, 1.0 - 1e-9)
        a = kernel.scores(targets) * (residual / (1.0 - h))[None, :]  # (m, n) signed
        return (aggregate(a, sizes, how) ** 2).mean(0)
