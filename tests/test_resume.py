"""A fine_tune process killed with SIGKILL resumes from its checkpoint on rerun,
and ends with the same weights as an uninterrupted run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY, run, write_config
from diffcredit.status import load_plan

pytestmark = pytest.mark.workflow


def find_pids(needle: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if needle in cmd and "diffcredit job" in cmd:
            pids.append(int(proc.name))
    return pids


def test_killed_fine_tune_resumes_with_identical_weights(tiny_run, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(tiny_run, work, symlinks=True)
    slow = write_config(tmp_path / "slow.yaml", {
        "fine_tune": {"training": {"steps": 400, "batch_size": 32, "checkpoint_every": 40}},
    })
    monkeypatch.chdir(work)
    plan = load_plan(REPO, [TINY, slow])
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work),
           "--configfile", str(TINY), str(slow), "--cores", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim, deadline = None, time.time() + 600
    while victim is None and time.time() < deadline and proc.poll() is None:
        for key in plan.coalitions:
            ckpts = sorted((work / plan.scratch_dir(key)).glob("step-*.pt"))
            if any(int(p.stem.split("-")[1]) >= 80 for p in ckpts):
                pids = find_pids(f"scratch/{key}")
                if pids:
                    for pid in pids:
                        os.kill(pid, signal.SIGKILL)
                    victim = key
                    break
        time.sleep(0.2)
    out, _ = proc.communicate(timeout=600)
    assert victim is not None, f"no fine_tune reached a checkpoint to kill:\n{out[-3000:]}"
    assert proc.returncode != 0  # the killed job failed the run
    assert not (work / plan.model_dir(victim)).exists()  # nothing half-written looks complete

    run(work, configs=[slow])
    log = (work / plan.results / "logs" / "fine_tune" / f"{victim}.log").read_text()
    assert "resumed from checkpoint at step" in log
    step = int(log.split("resumed from checkpoint at step")[1].split()[0])
    assert step >= 80

    # The same job, uninterrupted, in a fresh folder.
    ref = tmp_path / "ref"
    job = {**plan.job(victim), "out": str(ref), "scratch": str(tmp_path / "ref-scratch")}
    subprocess.run(
        [sys.executable, "-m", "diffcredit", "job", json.dumps(job), "--no-progress"],
        check=True, capture_output=True, cwd=work,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])},
    )
    weights = "diffusion_pytorch_model.safetensors"
    assert (ref / weights).read_bytes() == (work / plan.model_dir(victim) / weights).read_bytes()
