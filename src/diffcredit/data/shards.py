"""Shard files: one contributor's decoded items (and captions) in one verified .npz."""

from __future__ import annotations

import os

import numpy as np

from .contributors import Contributor, canonical_order


def load_captions(contributor: Contributor) -> np.ndarray | None:
    """The contributor's captions in the canonical order of `load_items`, or None."""
    if contributor.captions is None:
        return None
    return np.asarray(contributor.captions, dtype=str)[canonical_order(contributor)]


def write_shard(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray,
                captions: np.ndarray | None = None) -> None:
    from ..artifacts import write_npz

    extra = {} if captions is None else {"captions": np.asarray(captions, dtype=str)}
    write_npz(path, images=images, labels=labels, **extra)


def read_shard_arrays(paths, keys=None) -> dict[str, np.ndarray]:
    """The arrays of verified shards (raw or encoded), concatenated; only `keys` if given."""
    from ..artifacts import read_npz

    parts: dict[str, list] = {}
    for p in paths:
        for k, v in read_npz(p, keys).items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def read_shards(paths) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate verified shards."""
    arrays = read_shard_arrays(paths, ("images", "labels"))
    return arrays["images"], arrays["labels"]
