"""Content-addressed keys.

An artifact's key names its provenance: the stage that made it, that stage's
version, the resolved spec of the stage, and the keys of its parents. Equal
provenance gives equal keys, so an artifact that two plans ask for is made once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

KEY_LENGTH = 16

# Bump a stage's version when a code change alters what that stage produces.
STAGE_VERSIONS = {
    "data": 1,
    "encode": 1,
    "manifest": 1,
    "reference_data": 1,
    "init_model": 2,
    "train": 2,
    "prune": 2,
    "fine_tune": 2,
    "generate": 2,
    "classifier": 2,
    "features": 1,
    "reference_stats": 1,
    "score": 2,
    "design": 1,
    "estimate": 2,
    "attribution_features": 1,
    "attribute": 1,
    "fidelity": 1,
    "lds": 2,
    "removal_sets": 1,
    "counterfactual": 2,
    "summary": 1,
}


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
