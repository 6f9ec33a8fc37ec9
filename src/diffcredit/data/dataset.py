"""A data spec's contributors, image shape and items, asked of its source."""

from __future__ import annotations

import numpy as np

from .cache import HashCache
from .contributors import Contributor, DataError, canonical_order, check_contributors, check_duplicates
from .sources import DEFAULT_SOURCE, get_source, source_names


def describe(spec: dict, cache: HashCache) -> list[Contributor]:
    """The contributors of a data spec, sorted by name, validated."""
    source = spec.get("source", DEFAULT_SOURCE)
    if source not in source_names():
        raise DataError(f"unknown data.source {source!r}: use one of {sorted(source_names())}")
    contributors = get_source(source).describe(spec, cache)
    cache.flush()
    check_contributors(contributors)
    contributors = sorted(contributors, key=lambda c: c.name)
    if not spec.get("allow_duplicates", False):
        check_duplicates(contributors)
    return contributors


def describe_reference(spec: dict, cache: HashCache) -> tuple[list[Contributor], bool]:
    """The image groups of a reference set and whether they carry class labels."""
    source = spec["source"]
    if source not in source_names():
        raise DataError(f"unknown reference.source {source!r}: use {', '.join(source_names())} or stats")
    groups, labelled = get_source(source).describe_reference(spec, cache)
    cache.flush()
    if not groups or sum(g.n_items for g in groups) == 0:
        raise DataError(f"the reference set {spec} has no images")
    return sorted(groups, key=lambda g: g.name), labelled


def image_shape(spec: dict) -> dict:
    """{"resolution", "channels"} of a data (or reference) spec's decoded images."""
    return get_source(spec.get("source", DEFAULT_SOURCE)).image_shape(spec)


def load_items(spec: dict, contributor: Contributor) -> tuple[np.ndarray, np.ndarray]:
    """Decode a contributor's items as uint8 (N, C, H, W) and labels, in canonical order."""
    images, labels = get_source(spec.get("source", DEFAULT_SOURCE)).load_items(spec, contributor)
    order = canonical_order(contributor)
    return images[order], labels[order]
