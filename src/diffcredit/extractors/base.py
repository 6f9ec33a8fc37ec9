"""What a feature extractor provides.

Parse time: `resolve` checks the extractor's config (and that it can run on this
data) and returns its keyed spec; `trained` says whether it needs a network the
workflow trains first (a `train_classifier` job). Job time: `load` the network,
`extract` named float arrays from uint8 images, and `reference` statistics of the
reference images.
"""

from __future__ import annotations

import numpy as np


class Extractor:
    name: str = ""
    trained: bool = False  # needs a network trained by the workflow

    def resolve(self, cfg: dict, reference: dict) -> dict:
        """Keyed spec from `features.<name>` and the reference set's description
        ({"labelled", "n_classes", "n_contributors", "channels", ...})."""
        return dict(cfg)

    def runtime(self, cfg: dict) -> dict:
        """Settings the job needs that do not change the features (file paths)."""
        return {}

    def load(self, spec: dict, network: str | None, device):
        """The extractor ready to run; `spec` holds the keyed and runtime settings."""
        raise NotImplementedError

    def extract(self, state, images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def reference(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Statistics of the reference images' features that properties compare to."""
        raise NotImplementedError


def mean_and_covariance(x: np.ndarray) -> dict[str, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    return {"mu": x.mean(0), "sigma": np.cov(x, rowvar=False)}
