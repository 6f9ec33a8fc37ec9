"""Datasets split into contributors.

The sources (scikit-learn's digits, the CIFAR-100 python archive, folders of images)
live in `sources/`, one module each. Describing a dataset (names, item counts,
content hashes) is cheap and runs when the workflow is parsed; decoding images into
shards runs in the prepare_shard jobs.

A contributor's content hash covers its items' bytes, labels and captions in a
canonical order (sorted by item hash), never file names or modification times.
"""

from .cache import HashCache, combine_hashes
from .contributors import Contributor, DataError, item_hash
from .dataset import describe, describe_reference, image_shape, load_items
from .images import IMAGE_SUFFIXES, conform
from .shards import load_captions, read_shard_arrays, read_shards, write_shard
from .sources.digits import load_digits_arrays

__all__ = [
    "IMAGE_SUFFIXES", "Contributor", "DataError", "HashCache", "combine_hashes", "conform", "describe",
    "describe_reference", "image_shape", "item_hash", "load_captions", "load_digits_arrays", "load_items",
    "read_shard_arrays", "read_shards", "write_shard",
]
