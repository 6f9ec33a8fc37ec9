"""Keys and atomic, verified artifacts."""

import os
import stat

import pytest

from diffcredit.artifacts import (PARTIAL_PATTERN, CorruptArtifactError, atomic_dir, atomic_path, sidecar_of, verify_dir,
                           verify_file, write_json)
from diffcredit.keys import STAGE_VERSIONS, artifact_key, canonical_json


def test_keys_depend_on_everything_in_their_provenance(monkeypatch):
    base = artifact_key("fine_tune", {"steps": 10, "lr": 0.1}, {"start": "abc"})
    assert len(base) == 16 and int(base, 16) >= 0
    assert artifact_key("fine_tune", {"lr": 0.1, "steps": 10}, {"start": "abc"}) == base  # key order
    assert artifact_key("fine_tune", {"steps": 11, "lr": 0.1}, {"start": "abc"}) != base
    assert artifact_key("fine_tune", {"steps": 10, "lr": 0.1}, {"start": "abd"}) != base
    assert artifact_key("generate", {"steps": 10, "lr": 0.1}, {"start": "abc"}) != base
    monkeypatch.setitem(STAGE_VERSIONS, "fine_tune", STAGE_VERSIONS["fine_tune"] + 1)
    assert artifact_key("fine_tune", {"steps": 10, "lr": 0.1}, {"start": "abc"}) != base


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
