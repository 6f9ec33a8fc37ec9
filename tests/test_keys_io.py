"""Keys and atomic, verified artifacts."""

import copy
import hashlib
import json
import os
import re
import stat

import numpy as np
import pytest

from diffcredit.artifacts import (PARTIAL_PATTERN, CorruptArtifactError, atomic_dir, atomic_path, sidecar_of, verify_dir,
                           verify_file, write_json)
from diffcredit.keys import STAGE_VERSIONS, artifact_key, canonical_json


def _expected_key(stage, version, spec, parents):
    """The promised key, computed here without diffcredit: the first 16 hex digits of
    the sha256 of the sorted, compact, ASCII JSON of the provenance."""
    payload = {"stage": stage, "stage_version": version, "spec": spec, "parents": parents}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


SPEC = {"steps": 10, "lr": 0.1, "training": {"batch_size": 4, "schedule": "cosine"}, "members": ["b", "a"],
        "prompt": "peinture \u00e0 l'huile"}
PARENTS = {"start": "abc", "data": ["d1", "d2"]}


def test_keys_are_the_hash_of_their_provenance():
    version = STAGE_VERSIONS["fine_tune"]
    base = artifact_key("fine_tune", SPEC, PARENTS)
    assert base == _expected_key("fine_tune", version, SPEC, PARENTS)
    assert re.fullmatch(r"[0-9a-f]{16}", base)
    # No parents is the empty mapping; a list of parents is keyed as a list.
    assert artifact_key("fine_tune", SPEC) == _expected_key("fine_tune", version, SPEC, {})
    assert artifact_key("fine_tune", SPEC, ["abc"]) == _expected_key("fine_tune", version, SPEC, ["abc"])
    # The order in which a mapping was built does not matter; the order of a list does.
    shuffled = dict(reversed(list(SPEC.items())))
    shuffled["training"] = dict(reversed(list(SPEC["training"].items())))
    assert artifact_key("fine_tune", shuffled, dict(reversed(list(PARENTS.items())))) == base


@pytest.mark.parametrize("change", ["stage", "stage_version", "spec value", "nested spec value", "spec key",
                                    "list order", "parent key", "parent value", "parent list"])
def test_keys_depend_on_everything_in_their_provenance(monkeypatch, change):
    base = artifact_key("fine_tune", SPEC, PARENTS)
    stage, spec, parents = "fine_tune", copy.deepcopy(SPEC), copy.deepcopy(PARENTS)
    if change == "stage":
        stage = "generate"
    elif change == "stage_version":
        monkeypatch.setitem(STAGE_VERSIONS, "fine_tune", STAGE_VERSIONS["fine_tune"] + 1)
    elif change == "spec value":
        spec["steps"] = 11
    elif change == "nested spec value":
        spec["training"]["batch_size"] = 5
    elif change == "spec key":
        spec["warmup_steps"] = 0
    elif change == "list order":
        spec["members"].reverse()
    elif change == "parent key":
        parents["start2"] = parents.pop("start")
    elif change == "parent value":
        parents["start"] = "abd"
    elif change == "parent list":
        parents["data"].append("d3")
    key = artifact_key(stage, spec, parents)
    assert key != base
    assert key == _expected_key(stage, STAGE_VERSIONS[stage], spec, parents)


def test_canonical_json_refuses_what_it_cannot_key():
    with pytest.raises(ValueError, match="non-finite"):
        canonical_json({"a": [1.0, float("nan")]})
    with pytest.raises(ValueError, match="non-finite"):
        canonical_json({"a": float("inf")})


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_temporaries_are_named_as_gc_recognises_them(tmp_path):
    target = tmp_path / "0123456789abcdef.npz"
    with atomic_path(target, suffix=".npz") as tmp:
        m = PARTIAL_PATTERN.match(tmp.name)
        assert m and m["target"] == target.name and tmp.parent == tmp_path
    with atomic_dir(tmp_path / "model") as tmp:
        m = PARTIAL_PATTERN.match(tmp.name)
        assert m and m["target"] == "model"
    assert not PARTIAL_PATTERN.match("notes.partial.txt")


def test_sealed_file_detects_alteration(tmp_path):
    target = tmp_path / "s.json"
    write_json(target, {"value": 1.0}, seal=True)
    verify_file(target)
    target.write_text(target.read_text().replace("1.0", "2.0"))
    with pytest.raises(CorruptArtifactError, match="does not match its sidecar"):
        verify_file(target)
    unsealed = tmp_path / "u.json"
    write_json(unsealed, {})
    with pytest.raises(CorruptArtifactError, match="no sidecar"):
        verify_file(unsealed)


def test_verify_file_says_what_differs(tmp_path):
    target = tmp_path / "s.json"
    write_json(target, {"value": 1.0}, seal=True)
    size = target.stat().st_size
    target.write_text(target.read_text().replace("1.0", "2.0"))  # same size, other bytes
    with pytest.raises(CorruptArtifactError, match=rf"sha256 differs \(same size {size}\)"):
        verify_file(target)
    verify_file(target, check_hash=False)  # a size check alone cannot see it
    target.write_bytes(target.read_bytes()[:-5])
    with pytest.raises(CorruptArtifactError, match=rf"size {size - 5}, sidecar says {size}"):
        verify_file(target, check_hash=False)
    sidecar_of(target).write_text("{not json")
    with pytest.raises(CorruptArtifactError, match="unreadable"):
        verify_file(target)


def test_atomic_dir_is_all_or_nothing_and_verified(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "weights").write_bytes(b"123")
            raise RuntimeError("killed")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        (tmp / "weights").write_bytes(b"123")
    verify_dir(out)
    (out / "weights").write_bytes(b"12")
    with pytest.raises(CorruptArtifactError, match="truncated or altered"):
        verify_dir(out)


def test_verify_dir_says_what_differs(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as tmp:
        (tmp / "weights").write_bytes(b"12345")
    (out / "weights").write_bytes(b"12346")
    with pytest.raises(CorruptArtifactError, match=r"weights does not match .*sha256 differs \(same size 5\)"):
        verify_dir(out)
    verify_dir(out, check_hash=False)
    (out / "weights").write_bytes(b"123")
    with pytest.raises(CorruptArtifactError, match="size 3, sidecar says 5"):
        verify_dir(out, check_hash=False)


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775)])
def test_artifacts_honour_the_umask(tmp_path, umask, file_mode, dir_mode):
    def mode(p):
        return stat.S_IMODE(p.stat().st_mode)

    old = os.umask(umask)
    try:
        with atomic_path(tmp_path / "a" / "f.npz", suffix=".npz", seal=True) as tmp:
            assert mode(tmp) == file_mode
            tmp.write_bytes(b"x")
        with atomic_dir(tmp_path / "model") as tmp:
            assert mode(tmp) == dir_mode
            (tmp / "weights").write_bytes(b"y")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a") == dir_mode
    assert mode(tmp_path / "a" / "f.npz") == file_mode
    assert mode(sidecar_of(tmp_path / "a" / "f.npz")) == file_mode
    assert mode(tmp_path / "model") == dir_mode
    assert mode(tmp_path / "model" / "artifact.json") == file_mode


def test_files_a_library_writes_0600_are_shared_as_the_umask_allows(tmp_path):
    """safetensors writes through its own temporaries (0600); a sealed folder artifact
    gives every file the mode open() would, 0664 under umask 002."""
    from safetensors.numpy import save_file

    old = os.umask(0o002)
    try:
        with atomic_dir(tmp_path / "model") as tmp:
            save_file({"w": np.zeros(3, dtype=np.float32)}, str(tmp / "w.safetensors"))
            (tmp / "sub").mkdir(mode=0o700)
            (tmp / "sub" / "x").write_bytes(b"1")
            os.chmod(tmp / "sub" / "x", 0o600)
    finally:
        os.umask(old)
    for p in [tmp_path / "model" / "w.safetensors", tmp_path / "model" / "sub" / "x"]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o664, p
    assert stat.S_IMODE((tmp_path / "model" / "sub").stat().st_mode) == 0o775
