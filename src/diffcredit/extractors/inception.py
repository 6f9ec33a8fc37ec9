"""Inception-v3 features with torch-fidelity's port of the TF FID network: pool3
(2048-d, for FID and precision/recall) and unbiased logits (1008, for the
Inception Score), from one forward pass. Weights come from
`features.inception.weights` or torch-fidelity's own download cache."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np

from .base import Extractor, mean_and_covariance

WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_NAME}"


def cached_weights() -> Path:
    """Where torch-fidelity's download lands (torch.hub's checkpoint cache)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints" / WEIGHTS_NAME


def _online(host: str = "github.com", timeout: float = 2.0) -> bool:
    if os.environ.get("DIFFCREDIT_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


class Inception(Extractor):
    name = "inception"
    memory_mb = 2500
    stats_reference = True

    def resolve(self, cfg: dict, reference: dict, cache=None) -> dict:
        weights = cfg.get("weights")
        if weights:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise ValueError(
                    f"features.inception.weights {weights} does not exist; download {WEIGHTS_URL} "
                    f"and put it there (or remove the key to use {cached_weights()})"
                )
            # Keyed by content: a different network file is different features.
            from ..data import HashCache
            from ..keys import sha256_hex

            digest = HashCache(None).get_or_compute(path, lambda: sha256_hex(path.read_bytes()))
            return {"weights_sha256": digest}
        if not cached_weights().is_file() and not _online():
            raise ValueError(
                f"the Inception weights {WEIGHTS_NAME} are not in {cached_weights().parent} and this machine "
                f"is offline; download {WEIGHTS_URL} elsewhere and copy it there, or set "
                "features.inception.weights to its path"
            )
        return {"weights_sha256": "torch-fidelity:" + WEIGHTS_NAME}

    def runtime(self, cfg: dict) -> dict:
        return {"weights_path": cfg.get("weights")}

    def load(self, spec: dict, network: str | None, device):
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = spec.get("weights_path")
        if path is None and cached_weights().is_file():
            path = str(cached_weights())
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                          feature_extractor_weights_path=path)
        return net.to(device)

    def extract(self, state, images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
        import torch
        from tqdm import tqdm

        device = next(state.parameters()).device
        pool, logits = [], []
        with torch.no_grad():
            for i in tqdm(range(0, len(images), batch_size), desc="inception", mininterval=2.0):
                x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size])).to(device)
                if x.shape[1] == 1:
                    x = x.expand(-1, 3, -1, -1)
                p, lg = state(x)
                pool.append(p.double().cpu().numpy())
                logits.append(lg.double().cpu().numpy())
        return {"pool3": np.concatenate(pool), "logits": np.concatenate(logits)}

    def reference(self, features: dict[str, np.ndarray], spec: dict | None = None) -> dict[str, np.ndarray]:
        return {**mean_and_covariance(features["pool3"]), "pool3": features["pool3"]}
