"""Keys and atomic, verified artifacts."""

import pytest

from diffcredit.io import CorruptArtifactError, atomic_dir, atomic_path, verify_dir, verify_file, write_json
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
