"""Datasets split into contributors.

Two sources: scikit-learn's handwritten digits (8x8 grayscale, 1,797 images) and a
folder of image folders, one per contributor. Describing a dataset (names, item
counts, content hashes) is cheap and runs when the workflow is parsed; decoding
images into shards runs in the prepare_shard jobs.

A contributor's content hash covers its items' bytes and labels in a canonical
order (sorted by item hash), never file names or modification times.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .keys import sha256_hex

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class DataError(ValueError):
    """The configured data cannot be used; the message says why and what to do."""


@dataclass
class Contributor:
    name: str
    item_hashes: list[str]
    labels: list[int]
    # Where the items come from: digits row indices or image file paths.
    sources: list = field(repr=False)

    @property
    def n_items(self) -> int:
        return len(self.item_hashes)

    @property
    def content_hash(self) -> str:
        return combine_hashes(self.item_hashes)


def combine_hashes(item_hashes: list[str]) -> str:
    """Order-free hash of a multiset of item hashes."""
    return sha256_hex("\n".join(sorted(item_hashes)))


# ---------------------------------------------------------------- digits


def digits_path() -> Path:
    """scikit-learn's bundled digits file, found without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DataError("the digits source needs scikit-learn: pip install scikit-learn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise DataError(f"scikit-learn's digits data is missing at {path}")
    return path


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All digits as uint8 images (N, 1, 8, 8) scaled 0..255, and int labels."""
    with gzip.open(digits_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    pixels = table[:, :-1].reshape(-1, 1, 8, 8)
    images = np.rint(pixels * (255.0 / 16.0)).astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    return images, labels


def item_hash(image: np.ndarray, label: int) -> str:
    header = json.dumps({"shape": list(image.shape), "label": int(label)}).encode()
    return sha256_hex(header + np.ascontiguousarray(image, dtype=np.uint8).tobytes())


def describe_digits(spec: dict, cache: "HashCache") -> list[Contributor]:
    def compute():
        images, labels = load_digits_arrays()
        return {
            "hashes": [item_hash(img, lab) for img, lab in zip(images, labels)],
            "labels": labels.tolist(),
        }

    info = cache.get_or_compute(digits_path(), compute)
    hashes, labels = info["hashes"], np.asarray(info["labels"])
    classes = spec.get("classes") or list(range(10))
    bad = sorted(set(classes) - set(range(10)))
    if bad:
        raise DataError(f"data.classes has digits outside 0..9: {bad}")
    per_class = spec.get("per_class")
    by = spec.get("by", "class")
    groups = int(spec.get("groups", 1))
    seed = int(spec.get("split_seed", 0))
    members: dict[str, list[int]] = {}
    for c in sorted(set(classes)):
        idx = np.flatnonzero(labels == c)
        # Permute within the class so subsets and groups are seeded, not file-ordered.
        idx = idx[np.random.default_rng([seed, c]).permutation(len(idx))]
        if per_class:
            idx = idx[: int(per_class)]
        parts = np.array_split(idx, groups)
        for g, part in enumerate(parts):
            if by == "class":
                name = f"digit{c}" if groups == 1 else f"digit{c}-{g}"
            else:
                name = f"group{g}"
            members.setdefault(name, []).extend(part.tolist())
    out = []
    for name, rows in members.items():
        rows = sorted(rows)
        out.append(Contributor(name, [hashes[i] for i in rows], [int(labels[i]) for i in rows], rows))
    return out


# ---------------------------------------------------------------- folders


def _contributor_dirs(spec: dict) -> list[tuple[str, Path]]:
    listed = spec.get("contributors")
    if listed:
        return [(c["name"], Path(c["path"])) for c in listed]
    root = spec.get("root")
    if not root:
        raise DataError("data.source 'folder' needs data.root or a data.contributors list")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data.root {root} is not a folder: expected root/<contributor>/*.png|jpg")
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise DataError(f"data.root {root} has no contributor folders: expected root/<contributor>/*.png|jpg")
    return [(p.name, p) for p in dirs]


def describe_folders(spec: dict, cache: "HashCache") -> list[Contributor]:
    from PIL import Image

    out = []
    for name, folder in _contributor_dirs(spec):
        if not folder.is_dir():
            raise DataError(f"contributor {name!r}: folder {folder} does not exist")
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(
                f"contributor {name!r}: folder {folder} has no images (.png, .jpg, .jpeg); "
                "add images or remove the contributor"
            )
        hashes = []
        for path in files:

            def compute(path=path):
                data = path.read_bytes()
                try:
                    with Image.open(path) as im:
                        im.verify()
                except Exception as exc:  # PIL raises many types for bad files
                    return {"error": f"{type(exc).__name__}: {exc}"}
                return {"hash": sha256_hex(data)}

            info = cache.get_or_compute(path, compute)
            if "error" in info:
                raise DataError(
                    f"contributor {name!r}: cannot read image {path} ({info['error']}); "
                    "fix or remove the file"
                )
            hashes.append(info["hash"])
        out.append(Contributor(name, hashes, [-1] * len(files), [str(p) for p in files]))
    return out


def describe(spec: dict, cache: "HashCache") -> list[Contributor]:
    """The contributors of a data spec, sorted by name, validated."""
    source = spec.get("source", "digits")
    if source == "digits":
        contributors = describe_digits(spec, cache)
    elif source == "folder":
        contributors = describe_folders(spec, cache)
    else:
        raise DataError(f"unknown data.source {source!r}: use 'digits' or 'folder'")
    cache.flush()
    names = [c.name for c in contributors]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"duplicate contributor names: {dupes}; every contributor needs its own name")
    for n in names:
        if not NAME_PATTERN.match(n):
            raise DataError(
                f"contributor name {n!r} is not allowed: use letters, digits, '_', '-' and '.', "
                "starting with a letter or digit"
            )
    for c in contributors:
        if c.n_items == 0:
            raise DataError(f"contributor {c.name!r} has no items")
    if len(contributors) < 2:
        raise DataError(
            f"found {len(contributors)} contributor(s) ({names}); crediting needs at least 2"
        )
    return sorted(contributors, key=lambda c: c.name)


# ---------------------------------------------------------------- shards


def load_items(spec: dict, contributor: Contributor) -> tuple[np.ndarray, np.ndarray]:
    """Decode a contributor's items as uint8 (N, C, H, W) and labels, in canonical order."""
    source = spec.get("source", "digits")
    if source == "digits":
        images, labels = load_digits_arrays()
        images, labels = images[contributor.sources], labels[contributor.sources]
    else:
        images = np.stack([_load_image(p, spec["resolution"], spec["channels"]) for p in contributor.sources])
        labels = np.asarray(contributor.labels, dtype=np.int64)
    order = np.argsort(np.asarray(contributor.item_hashes), kind="stable")
    return images[order], labels[order]


def _load_image(path: str, resolution: int, channels: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
        im = im.resize((resolution, resolution), Image.Resampling.BICUBIC)
        arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return arr


def write_shard(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray) -> None:
    from .io import atomic_path

    with atomic_path(path, suffix=".npz", seal=True) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, images=images, labels=labels)


def read_shards(paths) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate verified shards."""
    from .io import verify_file

    images, labels = [], []
    for p in paths:
        with np.load(verify_file(p)) as z:
            images.append(z["images"])
            labels.append(z["labels"])
    return np.concatenate(images), np.concatenate(labels)


# ---------------------------------------------------------------- hash cache


class HashCache:
    """Per-file results cached by (path, size, mtime), so parsing stays fast."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path else None
        self.entries: dict = {}
        self.dirty = False
        if self.path and self.path.is_file():
            try:
                self.entries = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.entries = {}

    def get_or_compute(self, file: Path, compute):
        st = Path(file).stat()
        stamp = [st.st_size, st.st_mtime_ns]
        k = str(Path(file).resolve())
        hit = self.entries.get(k)
        if hit and hit.get("stamp") == stamp:
            return hit["value"]
        value = compute()
        self.entries[k] = {"stamp": stamp, "value": value}
        self.dirty = True
        return value

    def flush(self) -> None:
        if not (self.path and self.dirty):
            return
        from .io import write_bytes

        try:
            write_bytes(self.path, json.dumps(self.entries).encode())
        except OSError:
            pass  # a read-only checkout still works, only slower
        self.dirty = False
