"""Inception-v3 features with torch-fidelity's port of the TF FID network: pool3
(2048-d, for FID and precision/recall) and unbiased logits (1008, for the
Inception Score), from one forward pass. Weights come from
`features.inception.weights` or torch-fidelity's own download cache.

`features.inception.resize` says how images reach the network's 299x299 input:
`torch_fidelity` (the default) gives it the uint8 images, which it resizes itself
(TF1 bilinear, torch-fidelity's and the original TF FID's way); `clean` resizes
them first with clean-fid's resizer, PIL bicubic per channel in float32 without
quantising (`cleanfid.resize.make_resizer("PIL", False, "bicubic", (299, 299))`,
the resizing of clean-fid's "clean" mode), and gives the network those floats, as
clean-fid gives its own Inception: FID in clean-fid's clean mode. The default stays
out of the keyed spec, so choosing it changes no key.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np

from .base import Extractor, mean_and_covariance

WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_NAME}"
RESIZES = ("torch_fidelity", "clean")
INPUT_SIZE = 299
# torch-fidelity's FeatureExtractorInceptionV3 from its 299x299 input to pool3.
LAYERS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
          "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
          "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool")


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


def clean_resizer():
    """clean-fid's resizer of its "clean" mode: uint8 (H, W, 3) -> float32 (299, 299, 3) in [0, 255]."""
    from cleanfid.resize import make_resizer

    return make_resizer("PIL", False, "bicubic", (INPUT_SIZE, INPUT_SIZE))


def network_inputs(images: np.ndarray, resize: str = "torch_fidelity"):
    """What the network is given for uint8 (N, C, H, W) images (grey ones as RGB), on
    the CPU: the uint8 images themselves (`torch_fidelity`: the network resizes them),
    or (`clean`) clean-fid's resizer applied to each image as clean-fid feeds it, uint8
    (H, W, 3), giving float32 (N, 3, 299, 299) in [0, 255]."""
    import torch

    x = np.ascontiguousarray(images)
    if resize == "torch_fidelity":
        t = torch.from_numpy(x)
        return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t
    if resize != "clean":
        raise ValueError(f"features.inception.resize {resize!r}: use one of {RESIZES}")
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    fn = clean_resizer()
    out = np.zeros((len(x), INPUT_SIZE, INPUT_SIZE, 3), np.float32)
    for i, img in enumerate(x):
        out[i] = fn(np.ascontiguousarray(img.transpose(1, 2, 0)))
    return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))


def resized_forward(net, x):
    """(pool3, unbiased logits) of images already at 299x299 as floats in [0, 255]:
    torch-fidelity's forward after its own resize (which leaves a 299x299 input as it
    is): the normalisation (x - 128) / 128, as clean-fid's Inception does, then the layers."""
    import torch

    x = (x.to(net.feature_extractor_internal_dtype) - 128) / 128
    for name in LAYERS:
        x = getattr(net, name)(x)
    pool = torch.flatten(x, 1)
    return pool.to(torch.float32), pool.mm(net.fc.weight.T).to(torch.float32)


class Inception(Extractor):
    name = "inception"
    memory_mb = 2500
    stats_reference = True

    def resolve(self, cfg: dict, reference: dict, cache=None) -> dict:
        resize = cfg.get("resize", "torch_fidelity")
        if resize not in RESIZES:
            raise ValueError(f"resize {resize!r}: use one of {RESIZES}")
        # The default stays out of the key: specs (and keys) from before the option are unchanged.
        return {**self._weights(cfg), **({"resize": resize} if resize != "torch_fidelity" else {})}

    def _weights(self, cfg: dict) -> dict:
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
        net.input_resize = spec.get("resize", "torch_fidelity")
        return net.to(device)

    def extract(self, state, images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
        import torch
        from tqdm import tqdm

        device = next(state.parameters()).device
        resize = getattr(state, "input_resize", "torch_fidelity")
        pool, logits = [], []
        with torch.no_grad():
            for i in tqdm(range(0, len(images), batch_size), desc="inception", mininterval=2.0):
                x = network_inputs(images[i : i + batch_size], resize).to(device)
                p, lg = state(x) if resize == "torch_fidelity" else resized_forward(state, x)
                pool.append(p.double().cpu().numpy())
                logits.append(lg.double().cpu().numpy())
        return {"pool3": np.concatenate(pool), "logits": np.concatenate(logits)}

    def reference(self, features: dict[str, np.ndarray], spec: dict | None = None) -> dict[str, np.ndarray]:
        return {**mean_and_covariance(features["pool3"]), "pool3": features["pool3"]}
