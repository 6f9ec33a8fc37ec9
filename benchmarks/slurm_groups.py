"""SLURM jobs per coalition and wall time, with and without one group job per coalition.

Runs configs/tiny.yaml on eight digit classes with a stratified design of `--coalitions` coalitions on the
single-node test cluster (.ci/slurm-setup.sh, started first) twice from scratch, with
the upstream models (data, full and pruned model, classifier) taken from a first run
so that both arms run the same coalition jobs: once as the slurm/ profile submits them
(one SLURM job per workflow job), once with the coalition chain grouped

    --groups fine_tune=coalition generate=coalition features=coalition score=coalition

so that Snakemake submits each coalition's fine_tune -> generate -> features -> score as
one SLURM job. It counts the SLURM jobs (their logs), reads what sbatch was asked for
(cpus, memory, time, GPUs) from the jobs' logs and scontrol while they run, and prints
the wall times.

    python benchmarks/slurm_groups.py [--coalitions 40]

Run it alone on the machine: the cluster's two CPUs are the whole machine's.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
GROUPS = ["fine_tune=coalition", "generate=coalition", "features=coalition", "score=coalition"]
# The test cluster's settings beside the slurm/ profile (as tests/slurm_cluster.py gives them).
CLUSTER = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
           "--slurm-keep-successful-logs", "--latency-wait", "5", "--max-threads", "2"]


def snakemake(workdir: Path, cfg: Path, *args: str) -> tuple[float, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DIFFCREDIT_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile",
           str(REPO / "configs" / "tiny.yaml"), str(cfg), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-6000:])
    return time.perf_counter() - t0, proc.stdout + proc.stderr


def requests_while_running(stop: threading.Event, seen: dict) -> None:
    """What SLURM granted the running jobs: name -> (cpus, memory, time limit, GRES)."""
    while not stop.is_set():
        out = subprocess.run(["squeue", "-h", "-o", "%k|%C|%m|%l|%b"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            comment, *rest = line.split("|")
            seen.setdefault(comment, tuple(rest))
        time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--coalitions", type=int, default=40)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="slurm-groups-"))
    cfg = work / "design.yaml"
    # Eight digit classes (254 coalitions to choose from), the tiny recipe otherwise.
    cfg.write_text(yaml.safe_dump({"data": {"classes": list(range(8))},
                                   "estimators": [{"method": "stratified", "budget": args.coalitions}]}))
    base = work / "upstream"
    t, _ = snakemake(base, cfg, "--cores", "2", "--until", "prune", "train_classifier")
    print(f"upstream models, locally: {t:.0f} s")
    results = {}
    for arm, extra in (("one job per rule", []), ("one group job per coalition", ["--groups", *GROUPS])):
        workdir = work / arm.replace(" ", "_")
        shutil.copytree(base, workdir, symlinks=True, ignore=shutil.ignore_patterns(".snakemake"))
        stop, seen = threading.Event(), {}
        watcher = threading.Thread(target=requests_while_running, args=(stop, seen), daemon=True)
        watcher.start()
        t, out = snakemake(workdir, cfg, "--profile", str(REPO / "slurm"), *CLUSTER, *extra)
        stop.set()
        watcher.join()
        logs = list((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
        kinds = {}
        for comment, req in seen.items():
            kind = re.sub(r"_wildcards_.*|_[0-9a-f-]{36}$", "", comment)
            kinds.setdefault(kind, req)
        results[arm] = (t, len(logs))
        print(f"{arm}: {len(logs)} SLURM jobs, {len(logs) / args.coalitions:.2f} per coalition, wall {t:.0f} s")
        for kind, (cpus, mem, limit, gres) in sorted(kinds.items()):
            print(f"  {kind}: cpus {cpus}, memory {mem}, time limit {limit}, gres {gres}")
    (t0, n0), (t1, n1) = results.values()
    tables = [(work / arm.replace(" ", "_") / "results-tiny" / "values.csv").read_bytes() for arm in results]
    print(f"values.csv of the two arms {'identical' if tables[0] == tables[1] else 'DIFFER'}")
    print(f"jobs ratio {n1 / n0:.2f}; wall-time ratio {t1 / t0:.2f} (grouped over ungrouped)")


if __name__ == "__main__":
    main()
