"""`diffcredit status` and `diffcredit gc`: against a real tiny run, and against
results folders holding things diffcredit did not make."""

import base64
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, TINY, write_config
from diffcredit.cli import main
from diffcredit.config import load_yaml
from diffcredit.artifacts import atomic_dir, write_json
from diffcredit.status import garbage, incomplete_markers, load_plan

# Key-like names that no plan uses.
K = [f"{i:x}" * 16 for i in range(1, 10)]


def cli(capsys, *args):
    rc = main([*args, "--workflow-dir", str(REPO)])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def larger_budget(tmp_path, k):
    est = load_yaml(TINY)["estimators"][0]
    return write_config(tmp_path / f"budget{k}.yaml", {"estimators": [{**est, "budget": est["budget"] + k}]})


def tree(root: Path) -> dict:
    """Every path under `root` with its type, mode, size, mtime and content hash."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else None
        out[str(p.relative_to(root))] = (st.st_mode, st.st_size if digest else None, st.st_mtime_ns, digest)
    return out


# ---------------------------------------------------------------- gc, without a run


def test_gc_never_touches_data_inside_the_results_folder(tmp_path, capsys, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c", "d"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "data" / name / f"{i}.png")
    cfg = write_config(tmp_path / "here.yaml", {"results": ".", "data": {"source": "folder", "root": "data"}})
    # A stale design: the one thing here that gc could prove it made.
    write_json(tmp_path / "designs" / f"{K[0]}.parquet", {}, seal=True)
    before = tree(tmp_path)

    plan = load_plan(REPO, [TINY, cfg])
    listed = [p.resolve() for p in garbage(plan)]
    assert listed == [tmp_path / "designs" / f"{K[0]}.parquet", tmp_path / "designs" / f"{K[0]}.parquet.sha256.json"]
    for args in ((), ("--delete",)):
        rc, out = cli(capsys, "gc", "--configfile", str(TINY), str(cfg), *args)
        assert rc == 2 and "refuses" in out and "data.root data" in out
    assert tree(tmp_path) == before


def test_gc_refuses_a_results_folder_holding_the_repository(tmp_path, capsys):
    cfg = write_config(tmp_path / "up.yaml", {"results": str(REPO.parent)})
    rc, out = cli(capsys, "gc", "--configfile", str(TINY), str(cfg), "--delete")
    assert rc == 2 and "the repository" in out


def test_gc_removes_only_what_diffcredit_made(tmp_path, capsys):
    res = tmp_path / "results"
    cfg = write_config(tmp_path / "res.yaml", {"results": str(res)})
    made = [  # unused artifacts of diffcredit's: sealed files and folders, checkpoints, temporaries
        res / "designs" / f"{K[0]}.parquet",
        res / "designs" / f"{K[0]}.parquet.sha256.json",
        res / "designs" / f".{K[1]}.parquet.0a1b2c3d.partial.parquet",
        res / "models" / "full" / K[2],
        res / "scratch" / K[3],
        res / "coalitions" / K[4] / "samples",  # listed whole: all it holds is sealed
    ]
    write_json(made[0], {}, seal=True)
    made[2].write_bytes(b"half")
    with atomic_dir(made[3]) as tmp:
        (tmp / "weights").write_bytes(b"w")
    made[4].mkdir(parents=True)
    (made[4] / "step-00000010.pt").write_bytes(b"ckpt")
    write_json(made[5] / f"{K[5]}.npz", {}, seal=True)
    foreign = [  # key-like names, but no sidecar or not in diffcredit's layout
        res / "designs" / f"{K[6]}.parquet",
        res / "designs" / "mine.parquet",
        res / "designs" / "mine.parquet.sha256.json",
        res / "models" / "full" / K[7] / "weights",
        res / "scratch" / K[8] / "notes.txt",
        res / "scratch" / K[8] / "step-00000010.pt",
        res / "coalitions" / K[4] / "notes.md",
        res / "data" / "mine" / "x.png",
        res / "evaluation" / "fidelity.csv",
    ]
    for p in foreign:
        if not p.name.endswith(".sha256.json"):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"someone's")
    write_json(res / "designs" / "mine.parquet", {}, seal=True)  # sealed, but not named by a key
    link = res / "values" / K[0]
    link.parent.mkdir()
    link.symlink_to(made[3], target_is_directory=True)

    rc, out = cli(capsys, "gc", "--configfile", str(TINY), str(cfg), "--delete")
    assert rc == 0, out
    removed = [Path(line.split()[-1]) for line in out.splitlines()[:-1]]
    assert sorted(removed) == sorted(made)
    assert out.splitlines()[-1].startswith(f"{len(made)} entries")
    assert not any(p.exists() for p in made)
    assert all(p.exists() for p in foreign) and link.is_symlink()
    rc, out = cli(capsys, "gc", "--configfile", str(TINY), str(cfg))
    assert out.strip().startswith("0 entries")


def test_a_gc_killed_inside_a_folder_leaves_a_temporary_not_a_complete_looking_artifact(tmp_path, capsys,
                                                                                       monkeypatch):
    """gc renames a folder to a temporary's name before emptying it: killed half-way, it
    leaves what the next gc lists, never a sealed folder with files missing (which a
    rerun would take as done)."""
    import diffcredit.status as status

    res = tmp_path / "results"
    cfg = write_config(tmp_path / "res.yaml", {"results": str(res)})
    model = res / "models" / "full" / K[2]
    with atomic_dir(model) as tmp:
        (tmp / "a").write_bytes(b"a")
        (tmp / "b").write_bytes(b"b")
    real_rmtree = shutil.rmtree

    def killed(path, *a, **k):
        (Path(path) / "a").unlink()  # one file gone, then the kill
        raise KeyboardInterrupt

    monkeypatch.setattr(status.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        cli(capsys, "gc", "--configfile", str(TINY), str(cfg), "--delete")
    assert not model.exists()
    left = list(model.parent.iterdir())
    assert len(left) == 1 and left[0].name.startswith(f".{K[2]}.") and left[0].name.endswith(".partial")
    monkeypatch.setattr(status.shutil, "rmtree", real_rmtree)
    rc, out = cli(capsys, "gc", "--configfile", str(TINY), str(cfg), "--delete")
    assert rc == 0 and str(left[0]) in out and not left[0].exists()


def test_gc_delete_refuses_a_results_folder_a_run_holds(tmp_path, capsys):
    """A run of any config holds the results folder's lock; gc --delete of another config
    would take that run's fresh artifacts for unused ones, so it refuses and removes nothing."""
    import subprocess
    import sys

    res = tmp_path / "results"
    cfg = write_config(tmp_path / "res.yaml", {"results": str(res)})
    unused = res / "designs" / f"{K[0]}.parquet"
    write_json(unused, {}, seal=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from diffcredit.lock import lock_results; "
         "f = lock_results(sys.argv[1]); print('held', flush=True); time.sleep(120)", str(res)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    try:
        assert holder.stdout.readline().strip() == "held"
        rc, out = cli(capsys, "gc", "--configfile", str(TINY), str(cfg), "--delete")
        assert rc == 2 and f"is in use by pid {holder.pid}" in out, out
        assert unused.exists()
        rc, out = cli(capsys, "gc", "--configfile", str(TINY), str(cfg))  # listing needs no lock
        assert rc == 0 and str(unused) in out
    finally:
        holder.kill()
        holder.wait()
    rc, out = cli(capsys, "gc", "--configfile", str(TINY), str(cfg), "--delete")
    assert rc == 0 and not unused.exists()


# ---------------------------------------------------------------- status, without a run


def test_status_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out = cli(capsys, "status", "--configfile", str(TINY))
    assert rc == 0 and "0 done" in out
    rc, out = cli(capsys, "gc", "--configfile", str(TINY))
    assert rc == 0
    assert list(tmp_path.iterdir()) == []


def test_incomplete_markers_decode_snakemake_names(tmp_path):
    from types import SimpleNamespace

    from snakemake.persistence.file import FilePersistence

    root = tmp_path / ".snakemake" / "incomplete"
    paths = ["results/models/full/" + K[0], "results/coalitions/" + K[1] + "/" + "x" * 300 + ".npz"]
    for path, max_len in zip(paths, (255, 64)):
        # Snakemake's own naming; a small NAME_MAX splits the second into '@' folders.
        marker = Path(FilePersistence._record_path(SimpleNamespace(_fetch_max_len=lambda _: max_len), root, path))
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text('{"external_jobid": null}')
    assert any(p.is_dir() and p.name.startswith("@") for p in root.rglob("*"))
    (root / "migration_underway").write_text("")
    assert incomplete_markers(tmp_path) == sorted(paths)
    assert incomplete_markers(tmp_path / "nowhere") == []


# ---------------------------------------------------------------- against a run


@pytest.fixture
def run_copy(tiny_run, tmp_path, monkeypatch):
    """A copy of the tiny run to damage, as the working directory."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, symlinks=True)
    monkeypatch.chdir(copy)
    return copy


@pytest.mark.workflow
def test_status_counts_done_missing_and_incomplete(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tiny_run)
    rc, out = cli(capsys, "status", "--configfile", str(TINY))
    assert rc == 0
    n = 8  # the tiny design's coalitions (leverage: no repeats)
    assert f"coalitions: {n} in the design(s): {n} done, 0 incomplete (have checkpoints), 0 missing, 0 corrupt" in out
    assert "corrupt: 0 artifacts" in out and "snakemake:" not in out
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


@pytest.mark.workflow
def test_status_verifies_artifacts_and_changes_nothing(run_copy, capsys):
    plan = load_plan(REPO, [TINY])
    before = tree(run_copy)
    rc, out = cli(capsys, "status", "--configfile", str(TINY))
    assert rc == 0 and "corrupt: 0 artifacts" in out
    assert tree(run_copy) == before

    coalition = sorted(plan.coalitions)[0]
    weights = next(p for p in Path(plan.model_dir(coalition)).iterdir() if p.suffix == ".safetensors")
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    score = Path(plan.nodes[plan.keys("score")[0]].path)
    text = score.read_text()
    altered = text.replace("0", "1", 1) if "0" in text else text.replace("1", "2", 1)
    assert len(altered) == len(text) and altered != text
    score.write_text(altered)  # altered, same size
    before = tree(run_copy)
    rc, out = cli(capsys, "status", "--configfile", str(TINY))
    assert tree(run_copy) == before
    assert "7 done, 0 incomplete (have checkpoints), 0 missing, 1 corrupt" in out
    assert "corrupt: 2 artifacts do not match their sidecars (size and sha256 checked)" in out
    assert f"fine_tune {coalition}: {weights} does not match" in out
    assert f"size {size - 100}, sidecar says {size}" in out
    assert f"{score} does not match its sidecar (sha256 differs (same size {len(text)}))" in out
    n_scores = len(plan.keys("score"))
    assert f"score: {n_scores - 1}/{n_scores}" in out
    rc, out = cli(capsys, "status", "--configfile", str(TINY), "--quick")
    assert "corrupt: 1 artifacts do not match their sidecars (size only checked)" in out


@pytest.mark.workflow
def test_status_reports_snakemake_incomplete_markers(run_copy, tmp_path, capsys):
    more = larger_budget(tmp_path, 2)
    plan = load_plan(REPO, [TINY, more])
    new = sorted(k for k in plan.coalitions if not os.path.isdir(plan.model_dir(k)))[0]
    done = sorted(k for k in plan.coalitions if os.path.isdir(plan.model_dir(k)))[0]
    root = run_copy / ".snakemake" / "incomplete"
    # A killed job's output that a rerun then finished keeps its marker: stale, not incomplete.
    for path in (plan.model_dir(new), "elsewhere/out.txt", plan.model_dir(done)):
        (root / base64.urlsafe_b64encode(path.encode()).decode()).write_text('{"external_jobid": null}')
    rc, out = cli(capsys, "status", "--configfile", str(TINY), str(more))
    assert "snakemake: 2 outputs marked incomplete" in out
    assert "snakemake: 1 stale incomplete markers, of outputs finished and verified since" in out
    assert plan.model_dir(done) not in out
    assert f"fine_tune {new} (missing): {plan.model_dir(new)}" in out
    assert "(not in this plan): elsewhere/out.txt" in out


@pytest.mark.workflow
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
