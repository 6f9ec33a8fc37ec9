"""Contributors: the groups of items whose credit is estimated, and their checks."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..keys import sha256_hex
from .cache import combine_hashes

# A name people write: letters and digits of any script, then also _ . - ' & ( ) and
# single spaces between words ("Claude Monet", "Zoë", "O'Keeffe", "北斎").
NAME_PATTERN = re.compile(r"^[^\W_][\w.'&()-]*( [\w.'&()-]+)*$")


class DataError(ValueError):
    """The configured data cannot be used; the message says why and what to do."""


def relative_note(path) -> str:
    """For a missing relative path: where it was looked for, and from where."""
    path = Path(path)
    if path.is_absolute():
        return ""
    return (f" (looked for {Path.cwd() / path}: a relative path is read from the working directory, which "
            "snakemake -d sets; give an absolute path or one from there)")


@dataclass
class Contributor:
    name: str
    item_hashes: list[str]
    labels: list[int]
    # Where the items come from: row indices of a built-in dataset or image file paths.
    sources: list = field(repr=False)
    captions: list[str] | None = field(default=None, repr=False)

    @property
    def n_items(self) -> int:
        return len(self.item_hashes)

    @property
    def content_hash(self) -> str:
        return combine_hashes(self.item_hashes)


def item_hash(image: np.ndarray, label: int) -> str:
    """The hash of a decoded item: its shape, label and uint8 pixels."""
    header = json.dumps({"shape": list(image.shape), "label": int(label)}).encode()
    return sha256_hex(header + np.ascontiguousarray(image, dtype=np.uint8).tobytes())


def canonical_order(contributor: Contributor) -> np.ndarray:
    """The order of a contributor's items in its shard: by item hash."""
    return np.argsort(np.asarray(contributor.item_hashes), kind="stable")


def check_contributors(contributors: list[Contributor]) -> None:
    """Refuse duplicate or malformed names, empty contributors and fewer than 2."""
    names = [c.name for c in contributors]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"duplicate contributor names: {dupes}; every contributor needs its own name")
    for n in names:
        if not NAME_PATTERN.match(n):
            raise DataError(
                f"contributor name {n!r} is not allowed: use letters and digits (any script), "
                "_ . - ' & ( ) and single spaces between words, starting with a letter or digit"
            )
    for c in contributors:
        if c.n_items == 0:
            raise DataError(f"contributor {c.name!r} has no items")
    if len(contributors) < 2:
        raise DataError(
            f"found {len(contributors)} contributor(s) ({names}); crediting needs at least 2"
        )


def check_duplicates(contributors: list[Contributor]) -> None:
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
