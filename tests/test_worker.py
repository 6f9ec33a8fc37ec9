"""The warm local worker: jobs run in forks of one process that imported torch and
diffusers once, and behave as they do in a fresh process."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from diffcredit import worker
from diffcredit.data import write_shard
from diffcredit.families.ddpm import scheduler_config, unet_config

MODEL = {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8, "num_train_timesteps": 50}
WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture
def env():
    """An environment of its own (so its worker is this test's) and the worker's end."""
    runtime = tempfile.mkdtemp(prefix="dcw", dir="/tmp")
    e = {**os.environ, "XDG_RUNTIME_DIR": runtime, "DIFFCREDIT_WORKER": "1",
         "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    e.pop("SLURM_JOB_ID", None)
    yield e
    for lock in Path(runtime).rglob("*.lock"):
        pid = lock.read_text().strip()
        if pid:
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


def job_cli(job: dict, env: dict, cwd, **kw):
    cmd = [sys.executable, "-m", "diffcredit", "job", json.dumps(job), "--no-progress"]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kw)


def socket_of(env: dict) -> Path:
    out = subprocess.run([sys.executable, "-c", "from diffcredit import worker; print(worker.socket_path())"],
                         env=env, capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def warm(env: dict, tmp_path) -> None:
    """Start the worker (the first job does) and wait until it takes jobs."""
    job_cli({"rule": "init_model", "family": "ddpm", "spec": spec(), "inputs": {}, "out": str(tmp_path / "w")},
            env, tmp_path, check=True)
    sock, deadline = socket_of(env), time.time() + 120
    while not sock.exists() and time.time() < deadline:
        time.sleep(0.5)
    assert sock.exists(), "the worker did not start"


def spec() -> dict:
    return {"unet": unet_config(MODEL, 8, 1), "scheduler": scheduler_config(MODEL), "seed": 0}


def fine_tune_job(tmp_path, name: str, steps: int = 12) -> dict:
    return {"rule": "fine_tune", "family": "ddpm", "device": "cpu", "threads": 1, "members": ["a"],
            "training": {"steps": steps, "batch_size": 16, "lr": 1e-3, "seed": 0, "antithetic": True,
                         "checkpoint_every": 4},
            "inputs": {"start": "start", "shards": ["shard.npz"]}, "out": name, "scratch": f"scratch-{name}",
            "desc": name}


@pytest.fixture
def inputs(tmp_path, env):
    """A start model and a shard, named relative to tmp_path (the jobs' cwd)."""
    fresh = {**env, "DIFFCREDIT_WORKER": "0"}
    job_cli({"rule": "init_model", "family": "ddpm", "spec": spec(), "inputs": {}, "out": "start"},
            fresh, tmp_path, check=True)
    images = np.random.default_rng(0).integers(0, 256, (64, 1, 8, 8), dtype=np.uint8)
    write_shard(tmp_path / "shard.npz", images, np.zeros(64, dtype=np.int64))
    return tmp_path


def test_a_job_through_the_worker_writes_what_a_fresh_process_writes(inputs, env):
    tmp_path = inputs
    fresh = job_cli(fine_tune_job(tmp_path, "fresh"), {**env, "DIFFCREDIT_WORKER": "0"}, tmp_path, check=True)
    assert "forked from the warm worker" not in fresh.stderr
    warm(env, tmp_path)
    forked = job_cli(fine_tune_job(tmp_path, "forked"), {**env, "OMP_NUM_THREADS": "2"},
                     tmp_path, check=True)
    assert "forked from the warm worker" in forked.stderr  # its output reached the client's stderr
    assert "model written to forked" in forked.stderr  # relative paths: the client's working directory
    assert (tmp_path / "forked" / WEIGHTS).read_bytes() == (tmp_path / "fresh" / WEIGHTS).read_bytes()


def test_a_failing_job_fails_the_client_with_its_traceback(inputs, env):
    tmp_path = inputs
    warm(env, tmp_path)
    job = {**fine_tune_job(tmp_path, "bad"), "inputs": {"start": "start", "shards": ["missing.npz"]}}
    proc = job_cli(job, env, tmp_path)
    assert proc.returncode == 1
    assert "forked from the warm worker" in proc.stderr and "missing.npz" in proc.stderr
    assert not (tmp_path / "bad").exists()


def test_killing_the_client_kills_its_job(inputs, env):
    tmp_path = inputs
    warm(env, tmp_path)
    cmd = [sys.executable, "-m", "diffcredit", "job", json.dumps(fine_tune_job(tmp_path, "long", steps=100000))]
    log = open(tmp_path / "long.log", "w")
    client = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=log)
    deadline, child = time.time() + 60, None
    while child is None and time.time() < deadline:
        text = (tmp_path / "long.log").read_text()
        if "forked from the warm worker" in text and "training on" in text:
            child = int(text.split("job process ")[1].split(",")[0])
        time.sleep(0.2)
    assert child is not None, (tmp_path / "long.log").read_text()
    os.kill(client.pid, signal.SIGKILL)
    client.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the job went on after its client was killed")
    assert not (tmp_path / "long").exists()


def test_the_worker_is_not_used_under_slurm_or_when_disabled(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("DIFFCREDIT_WORKER", "1")
    assert worker.enabled()
    monkeypatch.setenv("SLURM_JOB_ID", "17")
    assert not worker.enabled()
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv("DIFFCREDIT_WORKER", "0")
    assert not worker.enabled()


def test_jobs_that_may_use_cuda_run_in_their_own_process(monkeypatch):
    assert worker.cpu_only("cpu") and not worker.cpu_only("cuda")
    monkeypatch.setattr(os.path, "exists", lambda p: p == "/dev/nvidiactl")
    assert not worker.cpu_only("auto")
    monkeypatch.setattr(os.path, "exists", lambda p: False)
    assert worker.cpu_only("auto")


def test_a_worker_serves_only_its_environment_apart_from_per_job_settings(monkeypatch):
    base = worker.socket_path()
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert worker.socket_path() == base
    monkeypatch.setenv("HF_HUB_OFFLINE", "0" if os.environ.get("HF_HUB_OFFLINE") == "1" else "1")
    assert worker.socket_path() != base


def test_a_socket_folder_others_can_enter_is_not_used(tmp_path, monkeypatch):
    """Another user's (or a world-writable) folder could hold a listener that would
    receive the job's environment: no worker then, and none started."""
    runtime = Path(tempfile.mkdtemp(prefix="dcw", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("DIFFCREDIT_WORKER", "1")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    folder = worker.socket_path().parent
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    started = []
    monkeypatch.setattr(worker, "_start", started.append)
    assert worker.run_via_worker(["job", "{}"], "cpu") is None
    assert started == []
    folder.chmod(0o700)  # ours alone: no worker yet, so one is started
    assert worker.run_via_worker(["job", "{}"], "cpu") is None
    assert started == [worker.socket_path()]


def test_a_job_through_the_worker_writes_with_the_runs_umask(tmp_path, env):
    """A worker started under umask 022 serves a run under umask 002: the job's files
    (safetensors weights included, which the library writes 0600) are 0664, folders 0775."""
    import stat

    def under(mask):
        return lambda: os.umask(mask)

    job_cli({"rule": "init_model", "family": "ddpm", "spec": spec(), "inputs": {}, "out": str(tmp_path / "w")},
            env, tmp_path, check=True, preexec_fn=under(0o022))
    sock, deadline = socket_of(env), time.time() + 120
    while not sock.exists() and time.time() < deadline:
        time.sleep(0.5)
    forked = job_cli({"rule": "init_model", "family": "ddpm", "spec": spec(), "inputs": {}, "out": "shared"},
                     env, tmp_path, check=True, preexec_fn=under(0o002))
    assert "forked from the warm worker" in forked.stderr
    folder = tmp_path / "shared"
    modes = {p.relative_to(tmp_path): stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.rglob("*")]}
    assert modes[Path("shared")] == 0o775 and modes[Path("shared", WEIGHTS)] == 0o664
    assert all(m == (0o775 if (tmp_path / p).is_dir() else 0o664) for p, m in modes.items()), modes
