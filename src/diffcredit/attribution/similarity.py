"""Similarity baselines: a contributor's credit is how much its images resemble the
full model's generated samples, by cosine similarity of pixels or of CLIP image
embeddings; per generated sample the mean (or max) over the contributor's images,
then the mean over the generated samples.

Pixels are compared at most 64 pixels a side (area-averaged), in [-1, 1].
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import Method

MAX_SIDE = 64


def reductions(entry: dict) -> list[str]:
    r = entry["reduce"]
    return list(r) if isinstance(r, list) else [r]


class SimilarityMethod(Method):
    kind = "similarity"
    schema: ClassVar[dict] = {
        "reduce": {"anyOf": [{"enum": ["mean", "max"]},
                             {"type": "array", "items": {"enum": ["mean", "max"]}, "minItems": 1, "uniqueItems": True}],
                   "default": ["mean", "max"],
                   "description": "per generated sample, the mean or max over the contributor's images; a list "
                                  "gives both"},
    }

    def variants(self, entry: dict) -> list[dict]:
        reds = reductions(entry)
        return [{"label": self.name if len(reds) == 1 else f"{self.name}-{r}", "spec": {"reduce": r}} for r in reds]

    def runtime(self, entry: dict, context: dict) -> dict:
        return {}

    def embed(self, images: np.ndarray, spec: dict, runtime: dict, device, batch_size: int) -> np.ndarray:
        """(N, e) unit-norm embeddings of uint8 images (N, C, H, W)."""
        raise NotImplementedError

    def scores(self, train: list[dict], target: dict, spec: dict) -> np.ndarray:
        t = target["features"][0].astype(np.float64)
        out = []
        for shard in train:
            sim = t @ shard["features"][0].astype(np.float64).T  # (m, n_c)
            out.append((sim.max(1) if spec["reduce"] == "max" else sim.mean(1)).mean())
        return np.asarray(out)[None, :]


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


class PixelSimilarity(SimilarityMethod):
    name = "pixel_similarity"

    def featurizer(self, entry: dict, context: dict) -> dict:
        return {"kind": "similarity", "embedding": "pixels", "max_side": MAX_SIDE}

    def embed(self, images, spec, runtime, device, batch_size):
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(images)).float().div(127.5).sub(1.0)
        side = max(x.shape[-2:])
        if side > spec["max_side"]:
            m = spec["max_side"]
            x = F.adaptive_avg_pool2d(x, (x.shape[-2] * m // side, x.shape[-1] * m // side))
        return unit_rows(x.numpy())


class ClipSimilarity(SimilarityMethod):
    name = "clip_similarity"

    def featurizer(self, entry: dict, context: dict) -> dict:
        from ..extractors import get_extractor

        clip = context["cfg"]["features"].get("clip")
        if not (clip or {}).get("model"):
            raise ValueError("clip_similarity needs a CLIP model: set features.clip.model (a local folder or hub id)")
        return {"kind": "similarity", "embedding": "clip",
                "clip": get_extractor("clip").resolve(clip, {}, context.get("cache"))}

    def runtime(self, entry: dict, context: dict) -> dict:
        from ..extractors import get_extractor

        return get_extractor("clip").runtime(context["cfg"]["features"]["clip"])

    def embed(self, images, spec, runtime, device, batch_size):
        from ..extractors import get_extractor

        clip = get_extractor("clip")
        state = clip.load({**spec["clip"], **runtime}, None, device)
        return unit_rows(clip.extract(state, images, batch_size)["embeds"])
