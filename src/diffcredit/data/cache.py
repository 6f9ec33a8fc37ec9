"""Content hashes and a per-file cache of results, so parsing the workflow stays fast."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..keys import sha256_hex


def combine_hashes(item_hashes: list[str]) -> str:
    """Order-free hash of a multiset of item hashes."""
    return sha256_hex("\n".join(sorted(item_hashes)))


class HashCache:
    """Per-file results cached by (path, size, mtime, inode, ctime), so parsing stays fast.
    The ctime, which no tool can set, catches a file replaced with its size and mtime
    kept (cp -p, rsync -t, a restore).

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
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
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
        from ..artifacts import write_bytes

        try:
            write_bytes(self.path, json.dumps(self.entries).encode())
        except OSError:
            pass  # a read-only checkout still works, only slower
        self.dirty = False
