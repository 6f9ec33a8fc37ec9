"""Fixed per-job overhead of a fine_tune job against its compute.

A fine_tune job is `python -m diffcredit job <json>`: interpreter start and imports, model
load, data load, then `steps` optimizer steps. Timing the same job at two step
counts separates the fixed part from the per-step part:

    overhead = T(s1) - s1 * (T(s2) - T(s1)) / (s2 - s1)

Run for the digits default's model and fine-tune recipe, each job a fresh process
(DIFFCREDIT_WORKER=0) and through the warm local worker (the default for local runs),
and for a CIFAR-sized DDPM (the paper's CIFAR-10 UNet, 32x32 RGB) in fresh processes.

    python benchmarks/job_overhead.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from diffcredit.data import write_shard  # noqa: E402
from diffcredit.families.ddpm import scheduler_config, unet_config  # noqa: E402

DIGITS = dict(
    model={"block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 8,
           "beta_schedule": "squaredcos_cap_v2"},
    resolution=8, channels=1, batch_size=64, steps=(50, 200), default_steps=100,
)
CASES = {
    "digits default": DIGITS,
    "digits default, warm worker": {**DIGITS, "worker": True},
    "CIFAR-sized DDPM (35.7M parameters)": dict(
        model={"block_out_channels": [128, 256, 256, 256], "layers_per_block": 2, "norm_num_groups": 32,
               "attention_levels": [1], "mid_attention": True},
        resolution=32, channels=3, batch_size=8, steps=(2, 6), default_steps=None,
    ),
}


def env(worker: bool = False) -> dict:
    return {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "DIFFCREDIT_WORKER": str(int(worker))}


def cli(job: dict, worker: bool = False) -> float:
    """Run one workflow job (as the rules do) and time it."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "diffcredit", "job", json.dumps(job), "--no-progress"], check=True,
                   capture_output=True, env=env(worker))
    return time.perf_counter() - t0


def measure(name: str, case: dict, work: Path) -> dict:
    cfg = unet_config(case["model"], case["resolution"], case["channels"])
    spec = {"unet": cfg, "scheduler": scheduler_config(case["model"]), "seed": 0}
    start = work / "start"
    cli({"rule": "init_model", "family": "ddpm", "spec": spec, "inputs": {}, "out": str(start)})
    rng = np.random.default_rng(0)
    shard = work / "shard.npz"
    write_shard(shard, rng.integers(0, 256, (256, case["channels"], case["resolution"], case["resolution"]),
                                    dtype=np.uint8), np.zeros(256, dtype=np.int64))
    worker = case.get("worker", False)
    if worker:  # start the worker and let it finish its imports
        cli({"rule": "init_model", "family": "ddpm", "spec": spec, "inputs": {}, "out": str(work / "warm")}, True)
        time.sleep(20)
        imports = 0.0
    else:
        imports = min(cli_imports() for _ in range(3))
    times = {}
    for steps in case["steps"]:
        runs = []
        for i in range(2):
            runs.append(cli({
                "rule": "fine_tune", "family": "ddpm", "device": "cpu", "threads": 1, "members": ["a"],
                "training": {"steps": steps, "batch_size": case["batch_size"], "lr": 1e-4, "seed": 0},
                "inputs": {"start": str(start), "shards": [str(shard)]}, "out": str(work / f"out-{steps}-{i}"),
                "scratch": str(work / f"scratch-{steps}-{i}"), "desc": "bench",
            }, worker))
        times[steps] = min(runs)
    s1, s2 = case["steps"]
    per_step = (times[s2] - times[s1]) / (s2 - s1)
    overhead = times[s1] - s1 * per_step
    row = {"case": name, "overhead_s": overhead, "imports_s": imports, "per_step_s": per_step}
    if case["default_steps"]:
        compute = case["default_steps"] * per_step
        row["overhead_to_compute"] = overhead / compute
    return row


def cli_imports() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import diffcredit.stages, torch; from diffusers import UNet2DModel"],
                   check=True, env=env())
    return time.perf_counter() - t0


def main() -> None:
    rows = []
    for name, case in CASES.items():
        with tempfile.TemporaryDirectory() as d:
            rows.append(measure(name, case, Path(d)))
    for r in rows:
        line = f"{r['case']}: fixed overhead {r['overhead_s']:.2f} s"
        if r["imports_s"]:
            line += f" (of which interpreter + imports {r['imports_s']:.1f} s)"
        line += f", {r['per_step_s'] * 1000:.0f} ms per step on 1 CPU thread"
        if "overhead_to_compute" in r:
            line += f"; overhead / compute at the default {CASES[r['case']]['default_steps']} steps = {r['overhead_to_compute']:.2f}"
        print(line)


if __name__ == "__main__":
    main()
