"""scikit-learn's handwritten digits: 1,797 8x8 grayscale images, one contributor per digit by default."""

from __future__ import annotations

import numpy as np

from ..contributors import DataError, item_hash
from .base import LABELLED_SCHEMA, LabelledSource, split_labelled

NEEDS_SKLEARN = "the digits source needs scikit-learn: pip install scikit-learn"


def sklearn_version() -> str:
    """The installed scikit-learn's version, found without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scikit-learn")
    except PackageNotFoundError:
        raise DataError(NEEDS_SKLEARN) from None


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All digits as uint8 images (N, 1, 8, 8) scaled 0..255, and int labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(NEEDS_SKLEARN) from None
    digits = load_digits()
    # Pixels are counts 0..16; scaled to 0..255 and rounded.
    images = np.rint(digits.images[:, None] * (255.0 / 16.0)).astype(np.uint8)
    return images, np.asarray(digits.target, dtype=np.int64)


class Digits(LabelledSource):
    resolution, channels = 8, 1
    schema = LABELLED_SCHEMA

    def arrays(self, spec):
        return load_digits_arrays()

    def describe(self, spec, cache):
        def compute():
            images, labels = load_digits_arrays()
            return {"hashes": [item_hash(img, lab) for img, lab in zip(images, labels)], "labels": labels.tolist()}

        # Importing scikit-learn is slow: its version names the data, so the hashes are kept by version.
        info = cache.get_memo(f"digits of scikit-learn {sklearn_version()}", compute)
        return split_labelled(spec, info["hashes"], np.asarray(info["labels"]), 10, lambda c: f"digit{c}")
