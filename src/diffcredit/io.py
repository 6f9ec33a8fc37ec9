"""Atomic writes and integrity sidecars.

Every declared output is written under a temporary name in the same folder and
renamed into place on success, so a killed job never leaves a file that looks
complete. Artifacts carry a sidecar (`<name>.sha256.json` for files,
`artifact.json` inside folders) with the size and hash of each file; readers
verify it before use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

FOLDER_SIDECAR = "artifact.json"
# Files Snakemake or the OS may add inside a folder output.
_IGNORED = {FOLDER_SIDECAR, ".snakemake_timestamp"}


class CorruptArtifactError(RuntimeError):
    """An artifact does not match its sidecar (truncated, altered or incomplete)."""


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", seal: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` on success.

    With `seal`, the sidecar is written (from the finished temporary file) before
    the rename, so a finished file never lacks its sidecar.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if seal:
            write_json(sidecar_of(path), _file_record(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes, seal: bool = False) -> None:
    with atomic_path(path, seal=seal) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj, seal: bool = False) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), seal=seal)


def read_json(path: str | os.PathLike):
    with open(path) as f:
        return json.load(f)


def _file_record(path: Path) -> dict:
    return {"size": path.stat().st_size, "sha256": file_sha256(path)}


def sidecar_of(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".sha256.json")


def verify_file(path: str | os.PathLike) -> Path:
    """Check a file against its sidecar; raise CorruptArtifactError if it differs."""
    path = Path(path)
    side = sidecar_of(path)
    if not path.is_file():
        raise CorruptArtifactError(f"{path} is missing; rerun the workflow to recreate it")
    if not side.is_file():
        raise CorruptArtifactError(
            f"{path} has no sidecar {side.name}: it was not completed by diffcredit; "
            "delete it and rerun the workflow"
        )
    expected = read_json(side)
    actual = _file_record(path)
    if actual != expected:
        raise CorruptArtifactError(
            f"{path} does not match its sidecar (size {actual['size']} vs {expected['size']}); "
            "it is truncated or altered: delete it and rerun the workflow"
        )
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder; on success seal it and rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        seal_dir(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def seal_dir(path: str | os.PathLike) -> None:
    path = Path(path)
    files = {
        str(p.relative_to(path)): _file_record(p)
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name not in _IGNORED
    }
    write_json(path / FOLDER_SIDECAR, {"files": files})


def verify_dir(path: str | os.PathLike) -> Path:
    """Check every file of a folder artifact against its sidecar."""
    path = Path(path)
    side = path / FOLDER_SIDECAR
    if not side.is_file():
        raise CorruptArtifactError(
            f"{path} has no {FOLDER_SIDECAR}: it is incomplete; delete it and rerun the workflow"
        )
    expected = read_json(side)["files"]
    for rel, record in expected.items():
        f = path / rel
        if not f.is_file():
            raise CorruptArtifactError(f"{f} listed in {side} is missing; delete {path} and rerun")
        if _file_record(f) != record:
            raise CorruptArtifactError(
                f"{f} does not match {side}: it is truncated or altered; delete {path} and rerun"
            )
    return path


CKPT_PATTERN = re.compile(r"^step-(\d{8})\.pt$")


def list_checkpoints(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of the training checkpoints in `folder`, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = CKPT_PATTERN.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)
