"""Datasets split into contributors.

Three sources: scikit-learn's handwritten digits (8x8 grayscale, 1,797 images), the
CIFAR-100 python archive (32x32 RGB, one contributor per fine class by default) and a
folder: of image folders, one per contributor, or of images listed in a metadata file
(the Hugging Face imagefolder convention: metadata.csv or metadata.jsonl with a
`file_name` column) whose `data.contributor_column` names each image's contributor and
whose optional `data.caption_column` its caption. Describing a dataset (names, item
counts, content hashes) is cheap and runs when the workflow is parsed; decoding
images into shards runs in the prepare_shard jobs.

A contributor's content hash covers its items' bytes, labels and captions in a
canonical order (sorted by item hash), never file names or modification times. An image file
whose decoded pixels depend on more than its bytes (16-bit values scaled to 8 bits,
transparent pixels composited over `data.background`) has that rule in its item hash.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .keys import sha256_hex

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Pillow modes decoded by Pillow's own conversion to L or RGB (through RGBA when
# transparent), and 16/32-bit integer grayscale, scaled to 8 bits as 16-bit values.
EIGHT_BIT_MODES = {"1", "L", "P", "RGB", "RGBA", "LA", "PA", "CMYK", "YCbCr"}
ALPHA_MODES = {"RGBA", "LA", "PA"}
WIDE_GRAY_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
WHITE = (255, 255, 255)


class DataError(ValueError):
    """The configured data cannot be used; the message says why and what to do."""


@dataclass
class Contributor:
    name: str
    item_hashes: list[str]
    labels: list[int]
    # Where the items come from: digits row indices or image file paths.
    sources: list = field(repr=False)
    captions: list[str] | None = field(default=None, repr=False)

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
    return split_labelled(spec, info["hashes"], np.asarray(info["labels"]), 10, lambda c: f"digit{c}")


def split_labelled(spec: dict, hashes: list, labels: np.ndarray, n_classes: int, class_name) -> list[Contributor]:
    """Contributors of a labelled dataset: one per class (`groups` > 1 splits each
    class), or `groups` stratified seeded groups (`by: split`)."""
    classes = spec.get("classes")
    if classes is None:
        classes = list(range(n_classes))
    bad = sorted(set(classes) - set(range(n_classes)))
    if bad:
        raise DataError(f"data.classes has class indices outside 0..{n_classes - 1}: {bad}")
    per_class = spec.get("per_class")
    by = spec.get("by", "class")
    groups = int(spec.get("groups", 1))
    seed = int(spec.get("split_seed", 0))
    kept = {}
    for c in sorted(set(classes)):
        idx = np.flatnonzero(labels == c)
        # Permute within the class so subsets and groups are seeded, not file-ordered.
        idx = idx[np.random.default_rng([seed, c]).permutation(len(idx))]
        kept[c] = idx[: int(per_class)] if per_class else idx
    _check_groups(by, groups, {class_name(c): len(idx) for c, idx in kept.items()})
    members: dict[str, list[int]] = {}
    for c, idx in kept.items():
        for g, part in enumerate(np.array_split(idx, groups)):
            if by == "class":
                name = class_name(c) if groups == 1 else f"{class_name(c)}-{g}"
            else:
                name = f"group{g}"
            members.setdefault(name, []).extend(part.tolist())
    out = []
    for name, rows in members.items():
        rows = sorted(rows)
        out.append(Contributor(name, [hashes[i] for i in rows], [int(labels[i]) for i in rows], rows))
    return out


def _check_groups(by: str, groups: int, sizes: dict[str, int]) -> None:
    """Refuse a split that leaves a contributor empty.

    np.array_split gives part g of n items at least one item exactly when g < n. So
    with by: class, contributor <class>-g is empty when its class has at most g items;
    with by: split, group g (part g of every class) is empty when every class has.
    """
    if not sizes:
        return
    where = "after data.classes and data.per_class"
    if by == "class" and groups > 1:
        short = {name: n for name, n in sizes.items() if n < groups}
        if short:
            listed = ", ".join(f"{name} has {n}" for name, n in sorted(short.items(), key=lambda kv: kv[1])[:5])
            listed += ", ..." if len(short) > 5 else ""
            raise DataError(
                f"data.by: class with groups: {groups} splits each class into {groups} contributors, so every "
                f"class needs at least {groups} items, but {len(short)} class(es) have fewer ({where}): {listed}; "
                f"lower data.groups to at most {min(short.values())} or keep more items per class"
            )
    if by == "split":
        largest = max(sizes, key=sizes.get)
        if sizes[largest] < groups:
            raise DataError(
                f"data.by: split with groups: {groups} gives group g the g-th of {groups} parts of every class, "
                f"so it needs a class of at least {groups} items, but the largest, {largest}, has "
                f"{sizes[largest]} ({where}); lower data.groups to at most {sizes[largest]}"
            )


# ---------------------------------------------------------------- CIFAR-100

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


def describe_cifar100(spec: dict, cache: "HashCache") -> list[Contributor]:
    path = cifar100_file(spec.get("root"), spec.get("split", "train"))

    def compute():
        images, labels = load_cifar100(path)
        return {"hashes": [item_hash(img, lab) for img, lab in zip(images, labels)], "labels": labels.tolist(),
                "names": cifar100_names(path)}

    info = cache.get_or_compute(path, compute)
    spec = {**spec, "classes": spec.get("classes") or CIFAR20_CLASSES}
    names = info["names"]
    return split_labelled(spec, info["hashes"], np.asarray(info["labels"]), 100, lambda c: names[c])


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


def describe_folders(spec: dict, cache: "HashCache", recursive: bool = True) -> list[Contributor]:
    if spec.get("contributor_column"):
        return describe_metadata(spec, cache)
    if spec.get("caption_column") or spec.get("metadata"):
        raise DataError("data.caption_column and data.metadata need data.contributor_column: the metadata "
                        "column that names each image's contributor")
    background = _background(spec)
    out = []
    for name, folder in _contributor_dirs(spec):
        if not folder.is_dir():
            raise DataError(f"contributor {name!r}: folder {folder} does not exist")
        found = folder.rglob("*") if recursive else folder.iterdir()
        files = sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(
                f"contributor {name!r}: folder {folder} has no images (.png, .jpg, .jpeg); "
                "add images or remove the contributor"
            )
        hashes = []
        for path in files:
            facts = cache.get_or_compute(path, lambda path=path: _image_facts(path), tag="image")
            if "error" in facts:
                raise DataError(
                    f"contributor {name!r}: cannot read image {path} ({facts['error']}); "
                    "fix or remove the file"
                )
            problem = _unsupported(facts)
            if problem:
                raise DataError(f"contributor {name!r}: image {path}: {problem}")
            hashes.append(_file_item_hash(facts, background))
        out.append(Contributor(name, hashes, [-1] * len(files), [str(p) for p in files]))
    return out


# ---------------------------------------------------------------- metadata files

METADATA_NAMES = ("metadata.csv", "metadata.jsonl")


def metadata_path(spec: dict) -> Path:
    """data.metadata, or the one metadata.csv / metadata.jsonl in data.root."""
    if spec.get("metadata"):
        path = Path(spec["metadata"]).expanduser()
        if not path.is_file():
            raise DataError(f"data.metadata {path} is not a file")
        return path
    if not spec.get("root"):
        raise DataError("data.contributor_column needs data.root (the folder holding metadata.csv or "
                        "metadata.jsonl) or data.metadata")
    root = Path(spec["root"]).expanduser()
    found = [root / n for n in METADATA_NAMES if (root / n).is_file()]
    if len(found) != 1:
        what = "both" if found else "neither"
        raise DataError(f"data.root {root} holds {what} of {' and '.join(METADATA_NAMES)}: keep exactly one, "
                        "or name it with data.metadata")
    return found[0]


def read_metadata(path: Path) -> list[dict]:
    """The rows of a metadata.csv or metadata.jsonl as {"line", **columns} (strings kept as read)."""
    import csv

    rows = []
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise DataError(f"{path} line {line_no} is not JSON: {exc}") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path} line {line_no} is not a JSON object")
                rows.append({"line": line_no, **row})
    elif path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            for row in reader:
                if None in row:
                    raise DataError(f"{path} line {reader.line_num} has more fields than the header")
                rows.append({"line": reader.line_num, **row})
    else:
        raise DataError(f"metadata file {path}: use a .csv or .jsonl file")
    return rows


def describe_metadata(spec: dict, cache: "HashCache") -> list[Contributor]:
    """Contributors of the images a metadata file lists, grouped by `data.contributor_column`."""
    path = metadata_path(spec)
    rows = cache.get_or_compute(path, lambda: read_metadata(path), tag="metadata")
    if not rows:
        raise DataError(f"{path} lists no images")
    column, caption_col = spec["contributor_column"], spec.get("caption_column")
    needed = ["file_name", column] + ([caption_col] if caption_col else [])
    present = set().union(*(r.keys() for r in rows)) - {"line"}
    missing = [c for c in needed if c not in present]
    if missing:
        raise DataError(f"{path} has no column {missing}; its columns are {sorted(present)}")
    background = _background(spec)
    base = path.parent
    members: dict[str, list] = {}
    seen: dict[Path, int] = {}
    for row in rows:
        where = f"{path} line {row['line']}"
        name = row.get("file_name")
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"{where}: file_name is empty")
        file = (base / name).resolve()
        if file in seen:
            raise DataError(f"{where}: {name} is listed again (first on line {seen[file]})")
        seen[file] = row["line"]
        if not file.is_file():
            raise DataError(f"{where} names {name}, which is not a file under {base}")
        who = row.get(column)
        who = "" if who is None else str(who).strip()
        if not who:
            raise DataError(f"{where}: image {name} has no contributor (column {column!r} is empty)")
        caption = None
        if caption_col:
            caption = row.get(caption_col)
            if caption is None or not isinstance(caption, str):
                raise DataError(f"{where}: image {name} has no caption (column {caption_col!r})")
        facts = cache.get_or_compute(file, lambda file=file: _image_facts(file), tag="image")
        if "error" in facts:
            raise DataError(f"{where}: cannot read image {name} ({facts['error']}); fix or remove it")
        problem = _unsupported(facts)
        if problem:
            raise DataError(f"{where}: image {name}: {problem}")
        item = _file_item_hash(facts, background)
        if caption is not None:
            item = sha256_hex(f"{item} caption {json.dumps(caption)}")
        members.setdefault(who, []).append((item, str(file), caption))
    out = []
    for who, items in members.items():
        out.append(Contributor(who, [h for h, _, _ in items], [-1] * len(items), [f for _, f, _ in items],
                               [c for _, _, c in items] if caption_col else None))
    return out


def _image_facts(path: Path) -> dict:
    """What describing needs of an image file: its bytes' hash, its mode and
    whether any pixel is transparent (decoded only for modes that can be)."""
    from PIL import Image

    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            facts = {"hash": sha256_hex(data), "mode": im.mode}
            if im.mode == "I":
                facts["range"] = [int(v) for v in im.getextrema()]
            if (im.mode in ALPHA_MODES or "transparency" in im.info) and not _unsupported(facts):
                facts["transparent"] = bool((_split_alpha(im)[1] < 255).any())
    except Exception as exc:  # PIL raises many types for bad files
        return {"error": f"{type(exc).__name__}: {exc}"}
    return facts


def _unsupported(facts: dict) -> str | None:
    """Why an image of this mode (and value range) cannot be decoded, or None."""
    mode = facts["mode"]
    if mode == "F":
        return ("its pixels are 32-bit floats, which have no fixed 0..255 scale; "
                "save it as an 8- or 16-bit image")
    if mode == "I":
        lo, hi = facts["range"]
        if lo < 0 or hi > 65535:
            return (f"its 32-bit integer pixels range over {lo}..{hi}, outside the 16-bit range 0..65535 "
                    "they are read in; save it as an 8- or 16-bit image")
    elif mode not in EIGHT_BIT_MODES | WIDE_GRAY_MODES:
        return (f"image mode {mode} is not supported (supported: {', '.join(sorted(EIGHT_BIT_MODES))}, "
                "and 16-bit grayscale); save it as an RGB, RGBA, grayscale or palette image")
    return None


def _file_item_hash(facts: dict, background: tuple) -> str:
    """The hash of the file's bytes, or of the bytes and the rule decoding them
    where the pixels depend on more than the bytes."""
    rules = []
    if facts["mode"] in WIDE_GRAY_MODES:
        rules.append("16-bit/257")
    if facts.get("transparent"):
        rules.append("over {},{},{}".format(*background))
    return sha256_hex(f"{facts['hash']} {'; '.join(rules)}") if rules else facts["hash"]


def _background(spec: dict) -> tuple[int, int, int]:
    """data.background as an RGB triple: a grey level 0..255 or [r, g, b]; white when unset."""
    value = spec.get("background")
    if value is None:
        return WHITE
    rgb = [value] * 3 if isinstance(value, int) else list(value)
    if len(rgb) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in rgb):
        raise DataError(f"data.background must be a grey level 0..255 or [r, g, b] with each in 0..255, not {value!r}")
    return tuple(rgb)


def describe_reference(spec: dict, cache: "HashCache") -> tuple[list[Contributor], bool]:
    """The image groups of a reference set and whether they carry class labels.

    digits and cifar100 are labelled by class; a folder of class folders is
    labelled by folder; a flat folder of images is one unlabelled group.
    """
    source = spec["source"]
    if source in ("digits", "cifar100"):
        groups = SOURCES[source]({**spec, "by": "class", "groups": 1}, cache)
        labelled = True
    elif source == "folder":
        root = Path(spec.get("root") or "")
        if not root.is_dir():
            raise DataError(f"reference.root {root} is not a folder of images")
        flat = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if flat:
            groups = describe_folders({"contributors": [{"name": "images", "path": str(root)}]}, cache, recursive=False)
            labelled = False
        else:
            try:
                groups = describe_folders({"root": str(root)}, cache)
            except DataError as exc:
                raise DataError(f"reference set: {exc}") from None
            for i, g in enumerate(groups):
                g.labels = [i] * g.n_items
            labelled = len(groups) > 1
    else:
        raise DataError(f"unknown reference.source {source!r}: use digits, cifar100, folder or stats")
    cache.flush()
    if not groups or sum(g.n_items for g in groups) == 0:
        raise DataError(f"the reference set {spec} has no images")
    return sorted(groups, key=lambda g: g.name), labelled


def describe(spec: dict, cache: "HashCache") -> list[Contributor]:
    """The contributors of a data spec, sorted by name, validated."""
    source = spec.get("source", "digits")
    if source not in SOURCES:
        raise DataError(f"unknown data.source {source!r}: use one of {sorted(SOURCES)}")
    contributors = SOURCES[source](spec, cache)
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
    contributors = sorted(contributors, key=lambda c: c.name)
    if not spec.get("allow_duplicates", False):
        _check_duplicates(contributors)
    return contributors


def _check_duplicates(contributors: list[Contributor]) -> None:
    """Refuse items with identical content (the same item hash), within one
    contributor or across contributors."""
    copies: dict[str, list[str]] = {}
    for c in contributors:
        for h, source in zip(c.item_hashes, c.sources):
            where = f"{c.name!r} item {source}" if isinstance(source, int) else f"{c.name!r} {source}"
            copies.setdefault(h, []).append(where)
    repeated = [places for places in copies.values() if len(places) > 1]
    if repeated:
        shown = "; ".join(" = ".join(places) for places in repeated[:5])
        more = f"; and {len(repeated) - 5} more" if len(repeated) > 5 else ""
        raise DataError(
            f"{len(repeated)} image(s) appear more than once with identical content: {shown}{more}; "
            "remove the copies, or set data.allow_duplicates: true to keep them"
        )


SOURCES = {"digits": describe_digits, "cifar100": describe_cifar100, "folder": describe_folders}


def image_shape(spec: dict) -> dict:
    """{"resolution", "channels"} of a data (or reference) spec's decoded images."""
    source = spec.get("source", "digits")
    if source == "digits":
        return {"resolution": 8, "channels": 1}
    if source == "cifar100":
        return {"resolution": 32, "channels": 3}
    return {"resolution": int(spec["resolution"]), "channels": int(spec["channels"])}


# ---------------------------------------------------------------- shards


def load_items(spec: dict, contributor: Contributor) -> tuple[np.ndarray, np.ndarray]:
    """Decode a contributor's items as uint8 (N, C, H, W) and labels, in canonical order."""
    source = spec.get("source", "digits")
    if source in ("digits", "cifar100"):
        if source == "digits":
            images, labels = load_digits_arrays()
        else:
            images, labels = load_cifar100(cifar100_file(spec.get("root"), spec.get("split", "train")))
        images, labels = images[contributor.sources], labels[contributor.sources]
    else:
        background = _background(spec)
        images = np.stack([_load_image(p, spec["resolution"], spec["channels"], background)
                           for p in contributor.sources])
        labels = np.asarray(contributor.labels, dtype=np.int64)
    order = np.argsort(np.asarray(contributor.item_hashes), kind="stable")
    return images[order], labels[order]


def _split_alpha(im):
    """A PIL image as (colour image without alpha, alpha as uint8 (H, W) or None).

    16- and 32-bit grayscale (read as 16-bit values) is scaled to 8 bits (value / 257,
    rounded); a transparent colour or palette entry becomes alpha through RGBA.
    """
    from PIL import Image

    mode = im.mode
    if mode in WIDE_GRAY_MODES:
        values = np.asarray(im).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(_unsupported({"mode": mode, "range": [int(values.min()), int(values.max())]}))
        gray = Image.fromarray(np.rint(values / 257.0).astype(np.uint8))
        key = im.info.get("transparency")
        alpha = None if key is None else np.where(values == key, 0, 255).astype(np.uint8)
        return gray, alpha
    if mode not in EIGHT_BIT_MODES:
        raise DataError(_unsupported({"mode": mode, "range": [0, 0]}))
    if mode in ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        return rgba.convert("RGB"), np.asarray(rgba.getchannel("A"))
    return im, None


def _flatten(im, channels: int, background: tuple = WHITE):
    """A PIL image in mode L (channels 1) or RGB, transparent pixels composited over
    `background` (an RGB triple)."""
    from PIL import Image

    colour, alpha = _split_alpha(im)
    if alpha is not None:
        rgb = np.asarray(colour.convert("RGB"), dtype=np.float64)
        a = alpha[..., None].astype(np.float64)
        over = (rgb * a + np.asarray(background, dtype=np.float64) * (255 - a)) / 255
        colour = Image.fromarray(np.rint(over).astype(np.uint8))
    return colour.convert("L" if channels == 1 else "RGB")


def _array(im, resolution: int) -> np.ndarray:
    """An L or RGB PIL image resized (bicubic) as uint8 (C, H, W)."""
    from PIL import Image

    arr = np.asarray(im.resize((resolution, resolution), Image.Resampling.BICUBIC), dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _resized(im, resolution: int, channels: int, background: tuple = WHITE) -> np.ndarray:
    """A PIL image as uint8 (C, H, W) of the data's shape (bicubic)."""
    return _array(_flatten(im, channels, background), resolution)


def conform(images: np.ndarray, resolution: int, channels: int) -> np.ndarray:
    """uint8 (N, C, H, W) images resized (bicubic) and converted to the data's shape."""
    from PIL import Image

    if images.shape[1:] == (channels, resolution, resolution):
        return images
    return np.stack([_resized(Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)),
                              resolution, channels) for img in images])


def _load_image(path: str, resolution: int, channels: int, background: tuple = WHITE) -> np.ndarray:
    """An image file, centre-cropped to a square, as uint8 (C, H, W)."""
    from PIL import Image

    with Image.open(path) as im:
        im = _flatten(im, channels, background)
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return _array(im.crop((left, top, left + side, top + side)), resolution)


def load_captions(contributor: Contributor) -> np.ndarray | None:
    """The contributor's captions in the canonical order of `load_items`, or None."""
    if contributor.captions is None:
        return None
    order = np.argsort(np.asarray(contributor.item_hashes), kind="stable")
    return np.asarray(contributor.captions, dtype=str)[order]


def write_shard(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray,
                captions: np.ndarray | None = None) -> None:
    from .artifacts import write_npz

    extra = {} if captions is None else {"captions": np.asarray(captions, dtype=str)}
    write_npz(path, images=images, labels=labels, **extra)


def read_shard_arrays(paths, keys=None) -> dict[str, np.ndarray]:
    """The arrays of verified shards (raw or encoded), concatenated; only `keys` if given."""
    from .artifacts import read_npz

    parts: dict[str, list] = {}
    for p in paths:
        for k, v in read_npz(p, keys).items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def read_shards(paths) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate verified shards."""
    arrays = read_shard_arrays(paths, ("images", "labels"))
    return arrays["images"], arrays["labels"]


# ---------------------------------------------------------------- hash cache


class HashCache:
    """Per-file results cached by (path, size, mtime), so parsing stays fast.

    `tag` names the kind of result; an entry stored under another tag (or an older
    format) is computed again. A `read_only` cache is read but never saved.
    """

    def __init__(self, path: str | os.PathLike | None, read_only: bool = False):
        self.path = Path(path) if path else None
        self.read_only = read_only
        self.entries: dict = {}
        self.dirty = False
        if self.path and self.path.is_file():
            try:
                self.entries = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.entries = {}

    def get_or_compute(self, file: Path, compute, tag: str | None = None):
        st = Path(file).stat()
        stamp = [st.st_size, st.st_mtime_ns]
        k = str(Path(file).resolve())
        hit = self.entries.get(k)
        if hit and hit.get("stamp") == stamp and hit.get("tag") == tag:
            return hit["value"]
        value = compute()
        self.entries[k] = {"stamp": stamp, "value": value, **({"tag": tag} if tag else {})}
        self.dirty = True
        return value

    def get_memo(self, name: str, compute):
        """A result named by `name` alone (it must name its inputs' content)."""
        hit = self.entries.get(name)
        if hit is not None and hit.get("tag") == "memo":
            return hit["value"]
        value = compute()
        self.entries[name] = {"tag": "memo", "value": value}
        self.dirty = True
        return value

    def flush(self) -> None:
        if not (self.path and self.dirty) or self.read_only:
            return
        from .artifacts import write_bytes

        try:
            write_bytes(self.path, json.dumps(self.entries).encode())
        except OSError:
            pass  # a read-only checkout still works, only slower
        self.dirty = False
