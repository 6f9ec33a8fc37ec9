"""Image files: a folder of image folders, one per contributor, or images listed in
a metadata file (the Hugging Face imagefolder convention: metadata.csv or
metadata.jsonl with a `file_name` column) whose `data.contributor_column` names each
image's contributor and whose optional `data.caption_column` its caption.

A contributor's content hash covers its items' bytes and captions, never file names
or modification times.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import unicodedata
import warnings
from pathlib import Path

import numpy as np

from ...keys import sha256_hex
from ..contributors import Contributor, DataError, relative_note
from ..images import (FACTS_TAG, IMAGE_SUFFIXES, UNREADABLE_SUFFIXES, background_of, file_item_hash, image_facts,
                      load_image, unsupported)
from .base import Source

METADATA_NAMES = ("metadata.csv", "metadata.jsonl")
LAYOUT = "root/<contributor>/ holding its images (png, jpg, webp, tif and the other raster formats Pillow reads)"


class Folder(Source):
    schema = {
        "root": {"type": ["string", "null"], "default": None, "x-path": True,
                 "description": LAYOUT},
        "contributors": {
            "type": ["array", "null"], "default": None, "description": "an explicit list instead of root",
            "items": {"type": "object", "additionalProperties": False, "required": ["name", "path"],
                      "properties": {"name": {"type": "string"}, "path": {"type": "string", "x-path": True}}},
        },
        "resolution": {"type": "integer", "minimum": 4, "default": 8,
                       "description": "images are center-cropped and resized to this"},
        "channels": {"enum": [1, 3], "default": 1, "description": "1 grayscale, 3 RGB"},
        "background": {
            "type": ["integer", "array"], "minimum": 0, "maximum": 255,
            "items": {"type": "integer", "minimum": 0, "maximum": 255}, "minItems": 3, "maxItems": 3,
            "default": 255,
            "description": "transparent pixels (an alpha channel, or a transparent palette entry or colour) are "
                           "composited over this grey level 0-255 or [r, g, b] (default white). Only contributors "
                           "with transparent images depend on it, so changing it reruns only their shards",
        },
        "metadata": {"type": ["string", "null"], "default": None, "x-path": True,
                     "description": "the metadata file (default: the one metadata.csv or metadata.jsonl in root)"},
        "contributor_column": {
            "type": ["string", "null"], "default": None,
            "description": "read the images a metadata file lists (a file_name column, relative to the file's "
                           "folder, as in Hugging Face imagefolder) and group them into contributors by this "
                           "column (e.g. artist)",
        },
        "caption_column": {"type": ["string", "null"], "default": None,
                           "description": "with a metadata file: each image's caption (sd_lora trains on it)"},
    }

    def describe(self, spec, cache):
        return describe_folders(spec, cache)

    def describe_reference(self, spec, cache):
        """A folder of class folders is labelled by folder; a flat folder of images
        is one unlabelled group."""
        root = Path(spec.get("root") or "")
        if not root.is_dir():
            raise DataError(f"reference.root {root} is not a folder of images{relative_note(root)}")
        flat = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if flat:
            groups = describe_folders({"contributors": [{"name": "images", "path": str(root)}]}, cache,
                                      recursive=False)
            return groups, False
        try:
            groups = describe_folders({"root": str(root)}, cache)
        except DataError as exc:
            raise DataError(f"reference set: {exc}") from None
        for i, g in enumerate(groups):
            g.labels = [i] * g.n_items
        return groups, len(groups) > 1

    def image_shape(self, spec):
        return {"resolution": int(spec["resolution"]), "channels": int(spec["channels"])}

    def load_items(self, spec, contributor):
        background = background_of(spec)
        images = np.stack([load_image(p, spec["resolution"], spec["channels"], background)
                           for p in contributor.sources])
        return images, np.asarray(contributor.labels, dtype=np.int64)


# ---------------------------------------------------------------- folders


def _contributor_dirs(spec: dict) -> list[tuple[str, Path]]:
    listed = spec.get("contributors")
    if listed and spec.get("root"):
        raise DataError("data.root and data.contributors are both set, and only one can say who the contributors "
                        "are; keep one")
    if listed:
        return [(_nfc(c["name"]), Path(c["path"])) for c in listed]
    root = spec.get("root")
    if not root:
        raise DataError("data.source 'folder' needs data.root or a data.contributors list")
    root = Path(root)
    if root.is_file() and root.name.lower().endswith((".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".7z",
                                                      ".rar")):
        raise DataError(f"data.root {root} is an archive; unpack it and give the folder it holds ({LAYOUT})")
    if not root.is_dir():
        raise DataError(f"data.root {root} is not a folder{relative_note(root)}: expected {LAYOUT}")
    entries = [p for p in root.iterdir() if not hidden(p.name)]
    loose = sorted(p.name for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if loose:
        raise DataError(f"data.root {root} holds {len(loose)} image(s) outside any contributor folder "
                        f"({_listed(loose)}); move each into its contributor's folder (expected {LAYOUT})")
    dirs = sorted(p for p in entries if p.is_dir())
    if not dirs:
        raise DataError(f"data.root {root} has no contributor folders: expected {LAYOUT}")
    return [(_nfc(p.name), p) for p in dirs]


def _files_under(folder: Path, recursive: bool):
    """The files (and links to missing files) in `folder`, in its subfolders when
    `recursive`, following linked subfolders (each real folder once) and skipping
    hidden ones."""
    seen = set()
    for top, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not hidden(d)) if recursive else []
        for n in names:
            if not hidden(n):
                yield Path(top) / n


def _listed(names: list, k: int = 3) -> str:
    return ", ".join(names[:k]) + (f", ... ({len(names) - k} more)" if len(names) > k else "")


def _nfc(name: str) -> str:
    """A name in Unicode's composed form: macOS keeps "Zoë" in file names decomposed, as
    "Zoe" and a combining diaeresis, which would not match the "Zoë" typed in a config."""
    return unicodedata.normalize("NFC", name)


def hidden(name: str) -> bool:
    """A file or folder that holds no training images: hidden (macOS's "._x.png"
    resource forks, ".ipynb_checkpoints" copies, ".thumbnails") or a tool's
    ("__MACOSX" in unzipped archives). Skipped, wherever it is under the root."""
    return name.startswith((".", "__"))


def describe_folders(spec: dict, cache, recursive: bool = True) -> list[Contributor]:
    if spec.get("contributor_column"):
        return describe_metadata(spec, cache)
    if spec.get("caption_column") or spec.get("metadata"):
        raise DataError("data.caption_column and data.metadata need data.contributor_column: the metadata "
                        "column that names each image's contributor")
    background = background_of(spec)
    out, small = [], {}
    for name, folder in _contributor_dirs(spec):
        if not folder.is_dir():
            raise DataError(f"contributor {name!r}: folder {folder} does not exist{relative_note(folder)}")
        if not os.access(folder, os.R_OK | os.X_OK):
            raise DataError(f"contributor {name!r}: folder {folder} cannot be read (permission denied)")
        files, dangling, foreign = [], [], []
        for p in _files_under(folder, recursive):
            suffix = p.suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                (files if p.exists() else dangling).append(p)
            elif suffix in UNREADABLE_SUFFIXES:
                foreign.append(p)
        files.sort()
        if dangling:
            raise DataError(f"contributor {name!r}: {len(dangling)} image(s) are links to files that do not exist "
                            f"({_listed(sorted(map(str, dangling)))}); mount or restore their targets, or remove the "
                            "links")
        if foreign:
            raise DataError(f"contributor {name!r}: {len(foreign)} file(s) are in formats that cannot be decoded "
                            f"here ({_listed(sorted(map(str, foreign)))}); convert them to PNG or JPEG, or move them "
                            "out of the folder")
        if not files:
            raise DataError(
                f"contributor {name!r}: folder {folder} has no images (no file ends in "
                f"{_listed(sorted(IMAGE_SUFFIXES), 6)}); add images or remove the contributor"
            )
        hashes = []
        for path in files:
            try:
                facts = cache.get_or_compute(path, lambda path=path: image_facts(path), tag=FACTS_TAG)
            except OSError as exc:
                raise DataError(f"contributor {name!r}: cannot read image {path} ({exc.strerror}); "
                                "fix its permissions or remove it") from None
            if "error" in facts:
                raise DataError(
                    f"contributor {name!r}: cannot read image {path} ({facts['error']}); "
                    "fix or remove the file"
                )
            problem = unsupported(facts)
            if problem:
                raise DataError(f"contributor {name!r}: image {path}: {problem}")
            hashes.append(file_item_hash(facts, background))
            small[name] = small.get(name, 0) + _too_small(spec, facts)
        out.append(Contributor(name, hashes, [-1] * len(files), [str(p) for p in files]))
    _warn_upscaled(spec, small, out)
    return out


def _too_small(spec: dict, facts: dict) -> bool:
    """Whether an image's shorter side is under half the training resolution."""
    return "resolution" in spec and min(facts.get("size", [1 << 30])) * 2 < spec["resolution"]


def _warn_upscaled(spec: dict, small: dict, contributors: list) -> None:
    small = {k: v for k, v in small.items() if v}
    if small:
        sizes = {c.name: c.n_items for c in contributors}
        worst = sorted(small.items(), key=lambda kv: -kv[1])[:5]
        listed = ", ".join(f"{name}: {k} of {sizes[name]}" for name, k in worst)
        warnings.warn(f"images under half of data.resolution {spec['resolution']} on their shorter side are upscaled, "
                      f"which blurs them ({listed}); lower data.resolution or use larger images", UserWarning,
                      stacklevel=3)


# ---------------------------------------------------------------- metadata files


def metadata_path(spec: dict) -> Path:
    """data.metadata, or the one metadata.csv / metadata.jsonl in data.root."""
    if spec.get("metadata"):
        path = Path(spec["metadata"]).expanduser()
        if not path.is_file():
            raise DataError(f"data.metadata {path} is not a file{relative_note(path)}")
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


def read_text(path: Path) -> str:
    """A text file in UTF-8 (a byte-order mark allowed) or UTF-16 with its mark; any
    other encoding is refused with the file and the first undecodable byte named."""
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it "
                        "as UTF-8") from None


def read_metadata(path: Path) -> list[dict]:
    """The rows of a metadata.csv or metadata.jsonl as {"line", **columns} (strings kept as read)."""
    import csv

    rows = []
    if path.suffix == ".jsonl":
        with io.StringIO(read_text(path)) as f:
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
        text = read_text(path)
        first = text.split("\n", 1)[0]
        # Spreadsheets set to a decimal comma export ";" and "Save as text" exports tabs.
        delimiter = next((d for d in (",", ";", "\t") if d in first), ",")
        with io.StringIO(text, newline="") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            header = reader.fieldnames or []
            repeated = sorted({c for c in header if header.count(c) > 1})
            if repeated:
                raise DataError(f"{path}: the header repeats the column(s) {', '.join(repeated)}; name each "
                                "column once")
            for row in reader:
                if None in row:
                    raise DataError(f"{path} line {reader.line_num} has more fields than the header")
                rows.append({"line": reader.line_num, **row})
    else:
        raise DataError(f"metadata file {path}: use a .csv or .jsonl file")
    return rows


def describe_metadata(spec: dict, cache) -> list[Contributor]:
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
    background = background_of(spec)
    base = path.parent
    members: dict[str, list] = {}
    seen: dict[Path, int] = {}
    small: dict[str, int] = {}
    for row in rows:
        where = f"{path} line {row['line']}"
        name = row.get("file_name")
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"{where}: file_name is empty")
        name = name.strip()
        if "\\" in name and not (base / name).exists():  # written on Windows
            name = name.replace("\\", "/")
        file = (base / name).resolve()
        if file in seen:
            raise DataError(f"{where}: {name} is listed again (first on line {seen[file]})")
        seen[file] = row["line"]
        if not file.is_file():
            raise DataError(f"{where} names {name}, which is not a file under {base}")
        who = row.get(column)
        who = "" if who is None else _nfc(str(who).strip())
        if not who:
            raise DataError(f"{where}: image {name} has no contributor (column {column!r} is empty)")
        caption = None
        if caption_col:
            caption = row.get(caption_col)
            if caption is None or not isinstance(caption, str):
                raise DataError(f"{where}: image {name} has no caption (column {caption_col!r})")
        facts = cache.get_or_compute(file, lambda file=file: image_facts(file), tag=FACTS_TAG)
        if "error" in facts:
            raise DataError(f"{where}: cannot read image {name} ({facts['error']}); fix or remove it")
        problem = unsupported(facts)
        if problem:
            raise DataError(f"{where}: image {name}: {problem}")
        item = file_item_hash(facts, background)
        if caption is not None:
            item = sha256_hex(f"{item} caption {json.dumps(caption)}")
        members.setdefault(who, []).append((item, str(file), caption))
        small[who] = small.get(who, 0) + _too_small(spec, facts)
    if not spec.get("metadata"):  # the imagefolder layout: the metadata file describes every image under the root
        unlisted = sorted(str(f.relative_to(base)) for f in _files_under(base, True)
                          if f.suffix.lower() in IMAGE_SUFFIXES and f.resolve() not in seen)
        if unlisted:
            raise DataError(f"{path} lists no row for {len(unlisted)} image(s) under {base} ({_listed(unlisted)}); "
                            "add their rows (file_name and contributor) or move them out of the folder")
    out = []
    for who, items in members.items():
        out.append(Contributor(who, [h for h, _, _ in items], [-1] * len(items), [f for _, f, _ in items],
                               [c for _, _, c in items] if caption_col else None))
    _warn_upscaled(spec, small, out)
    return out
