"""Diversity clusters (the reference CelebA-HQ diversity score): image embeddings of
`features.diversity.encoder` (blip, as in the reference, or clip); the reference
images' embeddings are clustered with Ward linkage into `features.diversity.k`
clusters (default 20) on the distance max(S) - S, S the matrix of dot products; a
generated image belongs to the cluster whose members it is closest to on average."""

from __future__ import annotations

import numpy as np

from .base import Extractor

ENCODERS = ("blip", "clip")


def ward_clusters(embeds: np.ndarray, k: int) -> np.ndarray:
    """Cluster labels 0..k-1 of the reference embeddings (Ward linkage, maxclust)."""
    from scipy.cluster.hierarchy import fcluster, ward
    from scipy.spatial.distance import squareform

    if len(embeds) < k:
        raise ValueError(f"features.diversity.k is {k} but the reference set has {len(embeds)} images")
    s = embeds @ embeds.T
    d = s.max() - s
    np.fill_diagonal(d, 0.0)
    d = (d + d.T) / 2
    labels = fcluster(ward(squareform(d, checks=False)), k, criterion="maxclust")
    return (labels - 1).astype(np.int64)


def assign(embeds: np.ndarray, reference: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Each embedding's cluster: the lowest mean distance max(S) - S to its members,
    that is the highest mean dot product."""
    sims = np.asarray(embeds, dtype=np.float64) @ np.asarray(reference, dtype=np.float64).T
    k = int(clusters.max()) + 1
    onehot = np.zeros((len(clusters), k))
    onehot[np.arange(len(clusters)), clusters] = 1.0
    mean = sims @ onehot / onehot.sum(0).clip(1)
    return mean.argmax(1)


class Diversity(Extractor):
    name = "diversity"

    def resolve(self, cfg: dict, reference: dict, cache=None) -> dict:
        encoder = cfg.get("encoder", "blip")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder {encoder!r}: use one of {ENCODERS}")
        k = int(cfg.get("k", 20))
        if k < 2:
            raise ValueError(f"k {k}: at least 2 clusters")
        if reference.get("source") == "stats":
            raise ValueError("diversity clusters the reference images; reference.source 'stats' has none")
        return {"encoder": encoder, "k": k}

    def uses(self, spec: dict) -> str:
        return spec["encoder"]

    def load(self, spec: dict, network: str | None, device):
        return spec

    def derive(self, state, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"embeds": np.asarray(arrays["embeds"], dtype=np.float32)}

    def reference(self, features: dict[str, np.ndarray], spec: dict | None = None) -> dict[str, np.ndarray]:
        embeds = np.asarray(features["embeds"], dtype=np.float64)
        return {"embeds": embeds, "clusters": ward_clusters(embeds, int((spec or {}).get("k", 20)))}
