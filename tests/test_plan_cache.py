"""What a cluster job pays to parse the workflow: the plan a run hands its jobs
(diffcredit.plan.cache), and no heavy import while planning."""

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from diffcredit.plan import cache as plan_cache

from conftest import REPO, TINY, snakemake, write_config
from test_plan import folders, make_plan


def test_a_saved_plan_is_loaded_with_the_same_nodes(tmp_path):
    plan = make_plan(tmp_path)
    value = plan_cache.save(plan, "f" * 64)
    loaded = plan_cache.load(value, "f" * 64)
    assert loaded is not plan
    assert loaded.nodes.keys() == plan.nodes.keys()
    assert [n.path for n in loaded.nodes.values()] == [n.path for n in plan.nodes.values()]
    assert loaded.targets() == plan.targets()


def test_an_altered_missing_or_foreign_plan_is_not_used(tmp_path):
    plan = make_plan(tmp_path)
    value = plan_cache.save(plan, "f" * 64)
    assert plan_cache.load(value, "e" * 64) is None  # another config or code
    path, digest = value.rsplit("#", 1)
    assert plan_cache.load(f"{path}#{'0' * 64}", "f" * 64) is None  # not the bytes the run saved
    data = bytearray(open(path, "rb").read())
    data[-3] ^= 1
    open(path, "wb").write(bytes(data))
    assert plan_cache.load(value, "f" * 64) is None  # altered since
    os.remove(path)
    for broken in (value, "", None, "no-digest"):
        assert plan_cache.load(broken, "f" * 64) is None


def test_the_fingerprint_follows_the_config_and_every_code_file(tmp_path):
    base = tmp_path / "repo"
    (base / "src" / "diffcredit" / "plan").mkdir(parents=True)
    (base / "workflow" / "schemas").mkdir(parents=True)
    (base / "workflow" / "rules").mkdir()
    files = {"src/diffcredit/a.py": "x = 1\n", "src/diffcredit/plan/b.py": "y = 2\n", "Snakefile": "rule a:\n",
             "workflow/rules/c.smk": "rule c:\n", "workflow/schemas/s.yaml": "type: object\n"}
    for rel, text in files.items():
        (base / rel).write_text(text)
    cfg = {"results": "r", "estimators": [{"method": "loo"}]}
    first = plan_cache.fingerprint(cfg, base)
    assert plan_cache.fingerprint({"estimators": [{"method": "loo"}], "results": "r"}, base) == first
    assert plan_cache.fingerprint({**cfg, "results": "s"}, base) != first
    for rel, text in files.items():
        (base / rel).write_text(text + "# edited\n")
        assert plan_cache.fingerprint(cfg, base) != first, rel
        (base / rel).write_text(text)
    assert plan_cache.fingerprint(cfg, base) == first


@pytest.mark.workflow
def test_a_cluster_job_takes_the_runs_plan_and_builds_its_own_otherwise(tmp_path):
    """A run saves its plan; a job parsed in remote mode uses it, and so does not read
    the data again (here: removed after the run started), unless the plan file was
    altered, when the job builds its own plan and finds the data gone."""
    data = folders(tmp_path / "data")
    cfg = write_config(tmp_path / "folder.yaml", {"data": {"source": "folder", "root": str(data), "resolution": 8,
                                                          "channels": 1}})
    snakemake(tmp_path, "--list-rules", configs=[cfg])  # parsed as a run's main process is
    saved = list((tmp_path / "results-tiny" / ".cache" / "plans").glob("*.pickle"))
    assert len(saved) == 1
    value = f"{saved[0]}#{hashlib.sha256(saved[0].read_bytes()).hexdigest()}"
    shutil.rmtree(data)

    def remote_job(env_value):
        os.environ[plan_cache.ENV] = env_value
        try:
            return snakemake(tmp_path, "--mode", "remote", "--target-jobs", "coalition_sample:key=0000000000000000",
                             "--allowed-rules", "coalition_sample", "--cores", "1", "--nolock", "--dry-run",
                             configs=[cfg], check=False, timeout=300)
        finally:
            del os.environ[plan_cache.ENV]

    loaded = remote_job(value)
    assert "does not exist" not in loaded.stdout + loaded.stderr
    assert f"job uses the run's saved plan {value}" in loaded.stderr
    assert "no coalition_sample with key 0000000000000000 in this plan" in loaded.stdout + loaded.stderr
    rebuilt = remote_job(value[:-1] + ("0" if value[-1] != "0" else "1"))
    assert rebuilt.returncode != 0
    assert str(data) in rebuilt.stdout + rebuilt.stderr
    assert "no coalition_sample with key" not in rebuilt.stdout + rebuilt.stderr
    assert "no usable saved plan" in rebuilt.stderr


@pytest.mark.workflow
def test_a_dry_run_saves_no_plan(tmp_path):
    plans = tmp_path / "results-tiny" / ".cache" / "plans"
    snakemake(tmp_path, "--dry-run", "--quiet")
    assert not plans.exists()
    snakemake(tmp_path, "--list-rules")
    assert len(list(plans.glob("*.pickle"))) == 1


@pytest.mark.workflow
def test_planning_a_finished_run_imports_no_torch(tiny_run):
    """The plan reads what finished artifacts say (the classifier's held-out accuracy)
    without importing the libraries that made them."""
    assert list((tiny_run / "results-tiny" / "models" / "classifier").glob("*/classifier.json"))
    code = ("import sys; from diffcredit.status import load_plan; "
            f"plan = load_plan({str(REPO)!r}, [{str(TINY)!r}]); "
            "assert plan.nodes; print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'peft') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tiny_run, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_identification_fit_runs_once_per_design_and_code(tmp_path, monkeypatch):
    """The parse-time fit that proves a design identifies the values is remembered in the
    results folder's cache, by the design and the estimators' code."""
    from diffcredit.plan import estimates

    calls = []
    fits = estimates._fits
    monkeypatch.setattr(estimates, "_fits", lambda masks, method: calls.append(method) or fits(masks, method))
    make_plan(tmp_path)
    first = len(calls)
    assert first >= 1
    make_plan(tmp_path)
    assert len(calls) == first  # remembered
    monkeypatch.setattr(estimates, "_estimator_code", lambda: "other code")
    make_plan(tmp_path)
    assert len(calls) == 2 * first  # another version of the estimators checks again
