"""The CIFAR-100 python archive: 32x32 RGB images, one contributor per fine class
(of the paper's CIFAR-20 unless data.classes says otherwise)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..contributors import DataError, item_hash
from .base import LABELLED_SCHEMA, LabelledSource, split_labelled

# The paper's CIFAR-20: fine classes of five superclasses.
CIFAR20_CLASSES = [*range(40, 45), *range(55, 60), *range(60, 65), *range(80, 85)]


def cifar100_file(root: str | None, split: str = "train") -> Path:
    """The `train` or `test` file of the CIFAR-100 python version under `root`."""
    if not root:
        raise DataError("the cifar100 source needs data.root: the folder holding cifar-100-python/")
    root = Path(root).expanduser()
    for candidate in (root / "cifar-100-python" / split, root / split):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"no CIFAR-100 archive at {root}: expected {root / 'cifar-100-python' / split} "
        "(extract cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html there)"
    )


def _unpickle(path: Path) -> dict:
    import pickle

    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")  # the archive's own format


def load_cifar100(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images as uint8 (N, 3, 32, 32) and fine labels of one CIFAR-100 file."""
    try:
        batch = _unpickle(path)
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch["fine_labels"], dtype=np.int64)
    except Exception as exc:  # truncated file, wrong format
        raise DataError(f"{path} is not a CIFAR-100 python archive file ({type(exc).__name__}: {exc})") from None
    return images, labels


def cifar100_names(path: Path) -> list[str]:
    meta = path.parent / "meta"
    if meta.is_file():
        names = _unpickle(meta).get("fine_label_names")
        if names and len(names) == 100:
            return [str(n) for n in names]
    return [f"class{c}" for c in range(100)]


class Cifar100(LabelledSource):
    resolution, channels = 32, 3
    schema = {
        **LABELLED_SCHEMA,
        "classes": {**LABELLED_SCHEMA["classes"],
                    "description": "keep only these fine classes (default: the paper's CIFAR-20, 40-44, 55-59, "
                                   "60-64, 80-84)"},
        "root": {"type": ["string", "null"], "default": None, "x-path": True,
                 "description": "the folder holding cifar-100-python/"},
        "split": {"enum": ["train", "test"], "default": "train", "description": "which file of the archive"},
    }

    def arrays(self, spec):
        return load_cifar100(cifar100_file(spec.get("root"), spec.get("split", "train")))

    def describe(self, spec, cache):
        path = cifar100_file(spec.get("root"), spec.get("split", "train"))

        def compute():
            images, labels = load_cifar100(path)
            return {"hashes": [item_hash(img, lab) for img, lab in zip(images, labels)], "labels": labels.tolist(),
                    "names": cifar100_names(path)}

        info = cache.get_or_compute(path, compute)
        spec = {**spec, "classes": spec.get("classes") or CIFAR20_CLASSES}
        names = info["names"]
        return split_labelled(spec, info["hashes"], np.asarray(info["labels"]), 100, lambda c: names[c])
