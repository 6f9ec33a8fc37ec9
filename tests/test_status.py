"""`diffcredit status` and `diffcredit gc` against a real tiny run."""

import os

import pytest

from conftest import REPO, TINY, write_config
from diffcredit.cli import main
from diffcredit.config import load_yaml
from diffcredit.status import load_plan

pytestmark = pytest.mark.workflow


def cli(capsys, *args):
    rc = main([*args, "--workflow-dir", str(REPO)])
    return rc, capsys.readouterr().out


def larger_budget(tmp_path, k):
    est = load_yaml(TINY)["estimators"][0]
    return write_config(tmp_path / f"budget{k}.yaml", {"estimators": [{**est, "budget": est["budget"] + k}]})


def test_status_counts_done_missing_and_incomplete(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tiny_run)
    rc, out = cli(capsys, "status", "--configfile", str(TINY))
    assert rc == 0
    n = 8  # the tiny design's coalitions (leverage: no repeats)
    assert f"coalitions: {n} in the design(s): {n} done, 0 incomplete (have checkpoints), 0 missing" in out
    more = larger_budget(tmp_path, 2)
    plan = load_plan(REPO, [TINY, more])
    new = sorted(k for k in plan.coalitions if not os.path.isdir(plan.model_dir(k)))
    assert len(new) == 2
    scratch = tiny_run / plan.scratch_dir(new[0])
    scratch.mkdir(parents=True)
    (scratch / "step-00000010.pt").write_bytes(b"")
    try:
        rc, out = cli(capsys, "status", "--configfile", str(TINY), str(more))
    finally:
        (scratch / "step-00000010.pt").unlink()
        scratch.rmdir()
    assert f"{n} done, 1 incomplete (have checkpoints), 1 missing" in out
    assert f"incomplete {new[0]}: step 10" in out


def test_gc_lists_only_what_the_config_does_not_use(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tiny_run)
    rc, out = cli(capsys, "gc", "--configfile", str(TINY))
    assert rc == 0 and out.strip().endswith("0 entries, 0 B unused (rerun with --delete to remove)")
    fewer = larger_budget(tmp_path, -2)
    rc, out = cli(capsys, "gc", "--configfile", str(TINY), str(fewer))
    listed = [line.split()[-1] for line in out.splitlines()[:-1]]
    # Two coalitions, the old design and its sidecar, and the old estimate.
    assert sum("/coalitions/" in p for p in listed) == 2
    assert sum("/designs/" in p for p in listed) == 2
    assert sum("/values/" in p for p in listed) == 1
    assert all(os.path.exists(p) for p in listed)  # nothing removed without --delete
