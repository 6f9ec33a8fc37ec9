"""Work redone after a killed training job, as a fraction of the work done before it.

Runs one fine_tune-like training job uninterrupted (time T), then the same job
killed with SIGKILL after a fraction of T (time B spent before the kill) and
resumed from its checkpoints (time A). The work redone is B + A - T: the steps after
the last checkpoint plus the resumed job's start-up. Reported as (B + A - T) / B for
several kill points and checkpoint intervals.

    python benchmarks/resume.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from diffcredit.data import load_digits_arrays, write_shard  # noqa: E402
from diffcredit.families.ddpm import scheduler_config, unet_config  # noqa: E402

MODEL = {"block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 8}
ENV = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}


def job_cmd(job: dict) -> list[str]:
    return [sys.executable, "-m", "diffcredit", "job", json.dumps(job), "--no-progress"]


def train_cmd(work: Path, out: str, scratch: str, every: int, steps: int) -> list[str]:
    return job_cmd({
        "rule": "fine_tune", "family": "ddpm", "device": "cpu", "threads": 1, "members": ["digits"], "desc": "bench",
        "training": {"steps": steps, "batch_size": 64, "lr": 1e-3, "seed": 0, "checkpoint_every": every},
        "inputs": {"start": str(work / "start"), "shards": [str(work / "shard.npz")]},
        "out": str(work / out), "scratch": str(work / scratch),
    })


def timed(cmd, kill_after: float | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill_after is None:
        assert proc.wait() == 0
    else:
        try:
            proc.wait(timeout=kill_after)
            raise RuntimeError("finished before the kill")
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    return time.perf_counter() - t0


def main() -> None:
    steps = 600
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        spec = {"unet": unet_config({**MODEL, "seed": 0}, 8, 1), "scheduler": scheduler_config(MODEL), "seed": 0}
        subprocess.run(job_cmd({"rule": "init_model", "family": "ddpm", "spec": spec, "inputs": {},
                                "out": str(work / "start")}), env=ENV, check=True, capture_output=True)
        images, labels = load_digits_arrays()
        write_shard(work / "shard.npz", images, labels)
        full = min(timed(train_cmd(work, f"ref{i}", f"s-ref{i}", 0, steps)) for i in range(2))
        print(f"uninterrupted job ({steps} steps): {full:.1f} s")
        print("checkpoint_every  killed at  redone / done before the kill")
        for every in (50, 100, 200):
            for frac in (0.4, 0.7):
                tag = f"{every}-{frac}"
                before = timed(train_cmd(work, f"o{tag}", f"s{tag}", every, steps), kill_after=frac * full)
                after = timed(train_cmd(work, f"o{tag}", f"s{tag}", every, steps))
                print(f"{every:>16}  {frac:>8.0%}  {(before + after - full) / before:.2f}")


if __name__ == "__main__":
    main()
