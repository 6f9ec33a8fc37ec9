"""Content-addressed keys.

An artifact's key names its provenance: the stage that made it, that stage's
version, the resolved spec of the stage, and the keys of its parents. Equal
provenance gives equal keys, so an artifact that two plans ask for is made once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .stages import KEY_VERSIONS as STAGE_VERSIONS  # each stage's record holds its version

KEY_LENGTH = 16


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace; refuses NaN and infinities."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"cannot key a non-finite float in {obj!r}") from exc


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()


def files_sha256(files, root) -> str:
    """sha256 of files (source code, say) by their paths under `root` and their bytes."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


def artifact_key(stage: str, spec: dict, parents: dict | list | None = None) -> str:
    """The key of an artifact made by `stage` from `spec` and `parents`."""
    if stage not in STAGE_VERSIONS:
        raise KeyError(f"unknown stage {stage!r}; known: {sorted(STAGE_VERSIONS)}")
    payload = {
        "stage": stage,
        "stage_version": STAGE_VERSIONS[stage],
        "spec": spec,
        "parents": parents if parents is not None else {},
    }
    return sha256_hex(canonical_json(payload))[:KEY_LENGTH]
