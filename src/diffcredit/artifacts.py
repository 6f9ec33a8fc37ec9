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
import secrets
import shutil
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


# Temporaries are `.<name>.<8 random characters>.partial<suffix>` next to their target.
PARTIAL_PATTERN = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.partial(\.[A-Za-z0-9]+)?$")


def _new_temporary(path: Path, suffix: str = "", folder: bool = False) -> Path:
    """Create an empty temporary file (or folder) next to `path`.

    Created with mode 0o666 (0o777 for a folder) less the process umask, as open()
    and mkdir() would, so a team sharing a results folder can read each other's
    artifacts (mkstemp and mkdtemp would give 0o600 and 0o700).
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial{suffix}")
        try:
            if folder:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {path}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", seal: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` on success.

    With `seal`, the sidecar is written (from the finished temporary file) before
    the rename, so a finished file never lacks its sidecar.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path, suffix)
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


def write_npz(path: str | os.PathLike, compressed: bool = False, **arrays) -> None:
    """Named arrays in one sealed .npz (`compressed`: zip-deflated)."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez
    with atomic_path(path, suffix=".npz", seal=True) as tmp:
        with open(tmp, "wb") as f:
            save(f, **arrays)


def read_npz(path: str | os.PathLike, keys=None) -> dict:
    """The arrays of a sealed .npz, checked against its sidecar first (only `keys` if given)."""
    import numpy as np

    with np.load(verify_file(path)) as z:
        return {k: z[k] for k in (keys or z.files)}


def write_parquet(df, path: str | os.PathLike) -> None:
    """A table as one sealed parquet file."""
    with atomic_path(path, suffix=".parquet", seal=True) as tmp:
        df.to_parquet(tmp, index=False)


def _file_record(path: Path) -> dict:
    return {"size": path.stat().st_size, "sha256": file_sha256(path)}


def _is_record(obj) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("size"), int) and isinstance(obj.get("sha256"), str)


def _mismatch(path: Path, record: dict, check_hash: bool = True) -> str | None:
    """How `path` differs from its sidecar `record`, or None when it matches."""
    size = path.stat().st_size
    if size != record["size"]:
        return f"size {size}, sidecar says {record['size']}"
    if check_hash and file_sha256(path) != record["sha256"]:
        return f"sha256 differs (same size {size})"
    return None


def _read_sidecar(side: Path):
    try:
        return read_json(side)
    except (OSError, ValueError) as exc:
        raise CorruptArtifactError(f"sidecar {side} is unreadable ({exc}); delete it and rerun the workflow") from None


def sidecar_of(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".sha256.json")


def is_sealed_file(path: str | os.PathLike) -> bool:
    """`path` is a file with a diffcredit sidecar beside it (its contents unchecked)."""
    path, side = Path(path), sidecar_of(path)
    if path.is_symlink() or not path.is_file() or side.is_symlink() or not side.is_file():
        return False
    try:
        return _is_record(read_json(side))
    except (OSError, ValueError):
        return False


def is_sealed_dir(path: str | os.PathLike) -> bool:
    """`path` is a folder holding a diffcredit `artifact.json` (its contents unchecked)."""
    path = Path(path)
    side = path / FOLDER_SIDECAR
    if path.is_symlink() or not path.is_dir() or side.is_symlink() or not side.is_file():
        return False
    try:
        files = read_json(side).get("files")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(files, dict) and all(_is_record(r) for r in files.values())


def verify_file(path: str | os.PathLike, check_hash: bool = True) -> Path:
    """Check a file against its sidecar; raise CorruptArtifactError if it differs.
    Without `check_hash` only the size is compared."""
    path = Path(path)
    side = sidecar_of(path)
    if not path.is_file():
        raise CorruptArtifactError(f"{path} is missing; rerun the workflow to recreate it")
    if not side.is_file():
        raise CorruptArtifactError(
            f"{path} has no sidecar {side.name}: it was not completed by diffcredit; "
            "delete it and rerun the workflow"
        )
    expected = _read_sidecar(side)
    if not _is_record(expected):
        raise CorruptArtifactError(f"sidecar {side} is not a size and sha256 record; delete {path} and rerun")
    problem = _mismatch(path, expected, check_hash)
    if problem:
        raise CorruptArtifactError(
            f"{path} does not match its sidecar ({problem}): "
            "it is truncated or altered; delete it and rerun the workflow"
        )
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder; on success seal it and rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path, folder=True)
    try:
        yield tmp
        share_as_umask_allows(tmp)
        seal_dir(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def share_as_umask_allows(folder: Path) -> None:
    """Give every file and folder under `folder` the mode open() and mkdir() would:
    libraries that write through their own temporaries (safetensors, for one) leave
    0o600 files that a team sharing the results folder could not read."""
    mask = current_umask()
    for p in folder.rglob("*"):
        if p.is_symlink():
            continue
        want = (0o777 if p.is_dir() else 0o666 | (p.stat().st_mode & 0o111)) & ~mask
        if p.stat().st_mode & 0o777 != want:
            p.chmod(want)


def seal_dir(path: str | os.PathLike) -> None:
    path = Path(path)
    files = {
        str(p.relative_to(path)): _file_record(p)
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name not in _IGNORED
    }
    write_json(path / FOLDER_SIDECAR, {"files": files})


def verify_dir(path: str | os.PathLike, check_hash: bool = True) -> Path:
    """Check every file of a folder artifact against its sidecar (without `check_hash`,
    their sizes only); raise CorruptArtifactError if one differs."""
    path = Path(path)
    side = path / FOLDER_SIDECAR
    if not side.is_file():
        raise CorruptArtifactError(
            f"{path} has no {FOLDER_SIDECAR}: it is incomplete; delete it and rerun the workflow"
        )
    expected = _read_sidecar(side)
    files = expected.get("files") if isinstance(expected, dict) else None
    if not isinstance(files, dict) or not all(_is_record(r) for r in files.values()):
        raise CorruptArtifactError(f"{side} does not list files with their size and sha256; delete {path} and rerun")
    for rel, record in files.items():
        f = path / rel
        if not f.is_file():
            raise CorruptArtifactError(f"{f} listed in {side} is missing; delete {path} and rerun")
        problem = _mismatch(f, record, check_hash)
        if problem:
            raise CorruptArtifactError(
                f"{f} does not match {side} ({problem}): it is truncated or altered; delete {path} and rerun"
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
