"""The workflow on a real single-node SLURM cluster (localhost), with killed jobs
and a killed Snakemake process."""

import os
import shutil
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from conftest import REPO, TINY, run, write_config
from slurm_cluster import cluster_args, ensure_cluster, job_states, run_id_from_log, snakemake_env, wait_for_jobs_gone
from diffcredit.status import load_plan

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

# Fine-tunes long enough (with checkpoints) to be caught while running.
SLOW = {"fine_tune": {"training": {"steps": 200, "batch_size": 32, "checkpoint_every": 20}}}


@pytest.fixture(scope="module")
def slow_cfg(tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("slurm-cfg") / "slow.yaml", SLOW)


def plan_in(workdir, cfg):
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        return load_plan(REPO, [TINY, cfg])
    finally:
        os.chdir(cwd)


def values(workdir, cfg) -> pd.DataFrame:
    plan = plan_in(workdir, cfg)
    return pd.read_parquet(workdir / plan.values_dir(plan.estimators[0]) / "values.parquet")


@pytest.fixture(scope="module")
def local_values(tiny_run, slow_cfg, tmp_path_factory):
    """The same config run locally (its upstream artifacts copied from tiny_run)."""
    work = tmp_path_factory.mktemp("slurm-local") / "work"
    shutil.copytree(tiny_run, work, symlinks=True)
    run(work, configs=[slow_cfg])
    return values(work, slow_cfg)


def start(workdir, profile, cfg, *args):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(TINY), str(cfg), "--profile", str(profile), *cluster_args(ensure_cluster()), *args]
    return subprocess.Popen(cmd, cwd=REPO, env=snakemake_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def running_fine_tune_with_checkpoint(workdir, plan, min_step):
    """(key, SLURM job id) of a running fine_tune that has written a checkpoint."""
    for job in job_states():
        if job.state != "RUNNING" or not job.comment.startswith("rule_fine_tune_wildcards_"):
            continue
        key = job.comment.rsplit("_", 1)[-1]
        steps = [int(p.stem.split("-")[1]) for p in (workdir / plan.scratch_dir(key)).glob("step-*.pt")]
        if steps and max(steps) >= min_step:
            return key, job.job_id
    return None


@pytest.fixture(scope="module")
def slurm_run(slurm_test_profile, slow_cfg, tmp_path_factory):
    """A complete run from scratch on SLURM; one running fine_tune is scancel'ed."""
    workdir = tmp_path_factory.mktemp("slurm-run")
    plan = plan_in(workdir, slow_cfg)
    proc = start(workdir, slurm_test_profile, slow_cfg)
    victim = {}

    def watch():
        while proc.poll() is None and not victim:
            found = running_fine_tune_with_checkpoint(workdir, plan, min_step=40)
            if found:
                subprocess.run(["scancel", found[1]], check=True)
                victim["key"] = found[0]
            time.sleep(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, _ = proc.communicate(timeout=1500)
    watcher.join(timeout=5)
    return workdir, plan, victim.get("key"), proc.returncode, out


def test_slurm_run_completes_with_the_local_values(slurm_run, slow_cfg, local_values):
    workdir, plan, _, rc, out = slurm_run
    assert rc == 0, out[-4000:]
    pd.testing.assert_frame_equal(values(workdir, slow_cfg), local_values, check_exact=True)


def test_every_job_used_the_plan_of_the_run(slurm_run):
    """No job built the plan again: each took the one its run saved (diffcredit.plan.cache)."""
    workdir, _, _, rc, out = slurm_run
    assert rc == 0, out[-4000:]
    logs = list((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert len(logs) > 10
    unused = [p for p in logs if "job uses the run's saved plan" not in p.read_text()]
    assert not unused, unused[0].read_text()[-3000:]


def test_scancelled_fine_tune_is_retried_from_its_checkpoint(slurm_run):
    workdir, plan, victim, rc, out = slurm_run
    assert victim is not None, "no running fine_tune with a checkpoint was seen"
    assert rc == 0, out[-4000:]
    log = (workdir / plan.results / "logs" / "fine_tune" / f"{victim}.log").read_text()
    assert "resumed from checkpoint at step" in log
    assert int(log.split("resumed from checkpoint at step")[1].split()[0]) >= 40


def test_killed_snakemake_resumes_without_recomputing(
    slurm_test_profile, slow_cfg, tiny_run, local_values, tmp_path
):
    workdir = tmp_path / "work"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    plan = plan_in(workdir, slow_cfg)
    proc = start(workdir, slurm_test_profile, slow_cfg)
    sidecars = [workdir / plan.model_dir(k) / "artifact.json" for k in plan.coalitions]
    deadline = time.time() + 900
    while proc.poll() is None and time.time() < deadline and sum(p.is_file() for p in sidecars) < 2:
        time.sleep(0.3)
    proc.kill()  # SIGKILL: no cleanup, the lock and incomplete markers stay
    out, _ = proc.communicate()
    finished = {p: p.stat().st_mtime_ns for p in sidecars if p.is_file()}
    assert 2 <= len(finished) < len(sidecars), out[-3000:]
    run_id = run_id_from_log(out)
    assert run_id, out[-3000:]
    wait_for_jobs_gone(run_id, timeout=600)  # jobs already submitted run to their end
    finished = {p: p.stat().st_mtime_ns for p in sidecars if p.is_file()}

    locked = start(workdir, slurm_test_profile, slow_cfg)
    assert locked.wait(timeout=300) != 0  # the killed run left its lock
    assert "LockException" in locked.stdout.read()
    subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
         "--configfile", str(TINY), str(slow_cfg), "--unlock"],
        cwd=REPO, check=True, capture_output=True,
    )
    again = start(workdir, slurm_test_profile, slow_cfg, "--rerun-incomplete")
    out, _ = again.communicate(timeout=1500)
    assert again.returncode == 0, out[-4000:]
    for path, mtime in finished.items():
        assert path.stat().st_mtime_ns == mtime, f"{path.parent} was recomputed"
    pd.testing.assert_frame_equal(values(workdir, slow_cfg), local_values, check_exact=True)
