"""What a feature extractor provides.

Parse time: `resolve` checks the extractor's config (and that it can run on this
data) and returns its keyed spec; `trained` says whether it needs a network the
workflow trains first (a `train_classifier` job). Job time: `load` the network,
`extract` named float arrays from uint8 images, and `reference` statistics of the
reference images.

An extractor can instead derive its arrays from another's (`uses`): the aesthetic
head reads CLIP's embeddings, the diversity clusters read CLIP's or BLIP's, so one
encoder pass serves every property that needs it. An encoder whose arrays only feed
others has no reference statistics of its own (`has_reference = False`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class Extractor:
    name: str = ""
    trained: bool = False  # needs a network trained by the workflow
    has_reference: bool = True  # properties compare its arrays with the reference images'
    memory_mb: int = 500  # what its jobs need beyond the base allowance
    stats_reference: bool = False  # its properties work against a reference given as a stats file (mu, sigma)

    def resolve(self, cfg: dict, reference: dict, cache=None) -> dict:
        """Keyed spec from `features.<name>` and the reference set's description
        ({"labelled", "n_classes", "n_contributors", "channels", ...}); `cache`
        (a data.HashCache) hashes weight files once."""
        return dict(cfg)

    def uses(self, spec: dict) -> str | None:
        """The extractor whose arrays this one derives from, or None."""
        return None

    def derive(self, state, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """This extractor's arrays from those of the extractor it `uses`."""
        raise NotImplementedError

    def runtime(self, cfg: dict) -> dict:
        """Settings the job needs that do not change the features (file paths)."""
        return {}

    def check_network(self, cfg: dict, folder: Path) -> None:
        """Refuse, with a ValueError, an already trained network that the current settings
        would not accept (a threshold raised after it was trained); for trained extractors."""

    def load(self, spec: dict, network: str | None, device):
        """The extractor ready to run; `spec` holds the keyed and runtime settings."""
        raise NotImplementedError

    def extract(self, state, images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def reference(self, features: dict[str, np.ndarray], spec: dict | None = None) -> dict[str, np.ndarray]:
        """Statistics of the reference images' features that properties compare to."""
        raise NotImplementedError


def mean_and_covariance(x: np.ndarray) -> dict[str, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    return {"mu": x.mean(0), "sigma": np.cov(x, rowvar=False)}


# The classifier network's settings and held-out accuracy, in its folder; here, not
# beside the network, so that the plan reads it without importing torch.
CLASSIFIER_CONFIG = "classifier.json"


# ---------------------------------------------------------------- pretrained image encoders

# OpenAI CLIP's normalisation (also BLIP's).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def pixel_inputs(images: np.ndarray, size: int, mean, std, device):
    """uint8 (N, C, H, W) square images as the encoder's input: RGB, resized (bicubic,
    antialiased) to `size`, scaled to [0, 1] and normalised."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).float().div(255.0)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return (x - m) / s


def processor_stats(folder_or_ref, default_size: int) -> tuple[int, tuple, tuple]:
    """(input size, mean, std) from a preprocessor_config.json next to the weights, else
    the model's image size with CLIP's normalisation."""
    import json
    from pathlib import Path

    path = Path(folder_or_ref) / "preprocessor_config.json" if folder_or_ref else None
    if path is not None and path.is_file():
        cfg = json.loads(path.read_text())
        size = cfg.get("crop_size") or cfg.get("size") or default_size
        if isinstance(size, dict):
            size = size.get("height") or size.get("shortest_edge") or default_size
        return int(size), tuple(cfg.get("image_mean", CLIP_MEAN)), tuple(cfg.get("image_std", CLIP_STD))
    return int(default_size), CLIP_MEAN, CLIP_STD


def describe_encoder(cfg: dict, what: str, cache, families: tuple[str, ...]) -> dict:
    """Keyed identity of a transformers model named by `cfg["model"]`, checked to be of
    `families` (config model_type)."""
    from .. import pretrained

    if not cfg.get("model"):
        raise ValueError(f"{what}.model is not set: give a hub id or local directory")
    part = pretrained.describe(cfg["model"], f"{what}.model", cache)
    kind = part["config"].get("model_type")
    if kind not in families:
        raise ValueError(f"{what}.model {part['ref']['path']} is a {kind!r} model, not one of {families}")
    return part


class ImageEncoder(Extractor):
    """A pretrained image encoder whose embeddings only feed derived extractors: it
    loads a network (`network`) and embeds normalised pixels (`embed`) in batches."""

    has_reference = False

    def network(self, spec: dict):
        raise NotImplementedError

    def embed(self, model, pixels):
        raise NotImplementedError

    def load(self, spec: dict, network: str | None, device):
        from .. import pretrained

        model = self.network(spec).eval().requires_grad_(False).to(device)
        folder = pretrained.local_folder(spec["ref"])
        return {"model": model, "input": processor_stats(folder, model.config.image_size), "device": device}

    def extract(self, state, images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
        import torch
        from tqdm import tqdm

        size, mean, std = state["input"]
        out = []
        with torch.no_grad():
            for i in tqdm(range(0, len(images), batch_size), desc=self.name, mininterval=2.0):
                x = pixel_inputs(images[i:i + batch_size], size, mean, std, state["device"])
                out.append(self.embed(state["model"], x).float().cpu().numpy())
        return {"embeds": np.concatenate(out)}


def encoder_runtime(cfg: dict, what: str) -> dict:
    from .. import pretrained

    return {"ref": pretrained.located(cfg["model"], f"{what}.model")} if cfg.get("model") else {}
