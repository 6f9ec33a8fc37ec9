"""Dry-run time of diffcredit against a bare Snakefile with the same jobs.

Plans the embedded default with 1,000 coalitions (10 digit contributors) and times
`snakemake --dry-run` on it, then on a bare Snakefile whose DAG has the same number
of jobs per rule and the same dependency shape but no plan, no keys and no hashing.
Both run in this process's interpreter, alternately, several times; the ratio of
medians is the overhead of diffcredit's parse-time work.

    python benchmarks/dry_run.py [--coalitions 1000] [--repeats 3]
    python benchmarks/dry_run.py --contributors 258 --coalitions 1290   # paper scale

`--contributors N` plans an image folder of N contributors (four 8x8 images each,
made here) with the stratified design instead of the digits. The bare Snakefiles keep
the old shape (a training job lists its members' shards); `--stamp-only` times
diffcredit against a bare Snakefile of today's shape instead (one shard-set stamp).
Snakemake imports the SLURM executor plugin on every run, which asks `scontrol show
config` and waits up to 10 s where SLURM's client is installed but its controller is
down: time it where `scontrol` answers or is absent.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

BARE = r'''
N = {n}
C = {c}
rule all:
    input: "values/est.done", "manifest.parquet"
rule prepare_shard:
    output: "shards/{{i}}.npz"
    shell: "touch {{output}}"
rule prepare_data:
    input: expand("shards/{{i}}.npz", i=range(C))
    output: "manifest.parquet"
    shell: "touch {{output}}"
rule reference_data:
    input: expand("shards/{{i}}.npz", i=range(C))
    output: "reference/images.npz"
    shell: "touch {{output}}"
rule init_model:
    output: "models/init/done"
    shell: "touch {{output}}"
rule train_full:
    input: "models/init/done", expand("shards/{{i}}.npz", i=range(C))
    output: "models/full/done"
    shell: "touch {{output}}"
rule prune:
    input: "models/full/done", expand("shards/{{i}}.npz", i=range(C))
    output: "models/pruned/done"
    shell: "touch {{output}}"
rule train_classifier:
    input: "reference/images.npz"
    output: "models/classifier/done"
    shell: "touch {{output}}"
rule reference_stats:
    input: "reference/images.npz", "models/classifier/done"
    output: "references/classifier.npz"
    shell: "touch {{output}}"
rule coalition_sample:
    output: "designs/d.parquet"
    shell: "touch {{output}}"
rule fine_tune:
    input: "models/pruned/done", lambda wc: [f"shards/{{j}}.npz" for j in range(C) if (int(wc.k) >> (j % 9)) & 1 or j == 0]
    output: "coalitions/{{k}}/model/done"
    shell: "touch {{output}}"
rule generate_anchor:
    input: "models/{{a}}/done"
    output: "anchors/{{a}}/samples.npz"
    shell: "touch {{output}}"
rule generate:
    input: "coalitions/{{k}}/model/done"
    output: "coalitions/{{k}}/samples.npz"
    shell: "touch {{output}}"
rule features_anchor:
    input: "anchors/{{a}}/samples.npz", "models/classifier/done"
    output: "anchors/{{a}}/features.npz"
    shell: "touch {{output}}"
rule features:
    input: "coalitions/{{k}}/samples.npz", "models/classifier/done"
    output: "coalitions/{{k}}/features.npz"
    shell: "touch {{output}}"
rule score:
    input: "coalitions/{{k}}/features.npz", "references/classifier.npz"
    output: "coalitions/{{k}}/scores.json"
    shell: "touch {{output}}"
rule score_anchor:
    input: "anchors/{{a}}/features.npz", "references/classifier.npz"
    output: "anchors/{{a}}/scores.json"
    shell: "touch {{output}}"
rule shapley_estimate:
    input:
        "designs/d.parquet",
        expand("coalitions/{{k}}/scores.json", k=range(N)),
        expand("anchors/{{a}}/scores.json", a=["init", "full"]),
    output: "values/est.done"
    shell: "touch {{output}}"
'''


def stamped_snakefile(bare: str) -> str:
    """The bare DAG in today's shape: a training job waits for one stamp of the shard
    set, not for its members' shards (a DAG whose edges grow with coalitions only)."""
    old = 'input: "models/pruned/done", lambda wc: [f"shards/{j}.npz" for j in range(C) if (int(wc.k) >> (j % 9)) & 1 or j == 0]'
    assert old in bare
    out = bare.replace(old, 'input: "models/pruned/done", "data/shard_set.done"')
    return out + '''rule shard_set:
    input: expand("shards/{i}.npz", i=range(C))
    output: "data/shard_set.done"
    shell: "touch {output}"
'''


# The same DAG with the real rules' per-job features (log, threads, conda env,
# per-job JSON params from a function, a memory resource that grows with the
# attempt, long shell commands), so the difference is only the plan: keys, hashing
# and the node table's input functions.
def matched_snakefile(bare: str) -> str:
    out = ["import json"]
    for block in bare.split("\nrule ")[1:]:
        name = block.split(":", 1)[0]
        m = re.search(r'output: "([^"]+)"', block)
        if m:
            log = "logs/" + m.group(1) + ".log"
            block = block.replace(
                'shell: "touch {output}"',
                'params: spec=lambda wc: json.dumps({"steps": 20, "lr": 0.001, "members": ["a", "b"]})\n'
                "    threads: 1\n"
                "    resources: mem_mb=lambda wc, attempt: 1000 * attempt, gpu=0\n"
                '    conda: "envs/x.yaml"\n'
                f'    log: "{log}"\n'
                '    shell: "python -m mod stage --spec {params.spec:q} --in {input} --out {output} --threads {threads} > {log} 2>&1"',
            )
        out.append(f"rule {name}" + block[len(name):])
    head = bare.split("\nrule ")[0]
    return "\n".join([out[0], head] + out[1:])


def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, str]:
    """Wall time and stdout of a command that must succeed (`env`: added to this one's)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    return elapsed, proc.stdout


def dry_run(args: list[str], cwd: Path) -> tuple[float, str]:
    return timed([sys.executable, "-m", "snakemake", "--dry-run", "--quiet", "all", *args], cwd)


def remote_job(args: list[str], cwd: Path, target: str, env: dict | None = None) -> float:
    """Wall time of a cluster job's Snakemake up to its job: the Snakefile parsed again
    and the job's DAG built, in remote mode (dry-run, so the job's command is not run)."""
    rule = target.split(":", 1)[0]
    cmd = [sys.executable, "-m", "snakemake", "--mode", "remote", "--target-jobs", target, "--allowed-rules", rule,
           "--cores", "1", "--nolock", "--force", "--dry-run", "--quiet", *args]
    return timed(cmd, cwd, env)[0]


def peak_memory_mb(args: list[str], cwd: Path) -> float:
    """Peak resident memory of a dry-run (its own process), from wait4's rusage."""
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--dry-run", "--quiet", "all", *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"dry-run failed ({status})")
    return usage.ru_maxrss / 1024


def job_total(text: str) -> int:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total":
            return int(parts[1])
    raise ValueError("no job total in dry-run output")


def folder_config(root: Path, n: int) -> dict:
    """An image folder of `n` contributors with four seeded 8x8 images each."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"c{i:04d}"
        folder.mkdir(parents=True)
        for j in range(4):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{j}.png")
    return {"data": {"source": "folder", "root": str(root), "resolution": 8, "channels": 1},
            "properties": ["classifier_fd"], "features": {"classifier": {"min_accuracy": 0.0}}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--coalitions", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--contributors", type=int, default=0, help="an image folder of this many contributors")
    ap.add_argument("--stamp-only", action="store_true",
                    help="time diffcredit against the bare DAG of today's shape only (one shard-set stamp per job)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dryrun-"))
    cfg = work / "big.yaml"
    # A paired kernel design without repeats would need more players; count the
    # distinct coalitions the plan ends up with and give the bare DAG as many.
    config = {"results": str(work / "results"), "estimators": [{"method": "leverage", "budget": args.coalitions}]}
    if args.contributors:
        config.update(folder_config(work / "data", args.contributors))
        config["estimators"] = [{"method": "stratified", "budget": args.coalitions}]
    cfg.write_text(yaml.safe_dump(config))
    sys.path.insert(0, str(REPO / "src"))
    from diffcredit.status import load_plan

    plan = load_plan(REPO, [cfg])
    n = len(plan.coalitions)
    bare_dir, matched_dir = work / "bare", work / "matched"
    bare_dir.mkdir()
    (bare_dir / "Snakefile").write_text(BARE.format(n=n, c=plan.n))
    matched_dir.mkdir()
    (matched_dir / "Snakefile").write_text(matched_snakefile(BARE.format(n=n, c=plan.n)))
    ours_args = ["-s", str(REPO / "Snakefile"), "-d", str(work / "ours"), "--configfile", str(cfg)]
    if args.stamp_only:
        stamp_dir = work / "stamp"
        stamp_dir.mkdir()
        (stamp_dir / "Snakefile").write_text(stamped_snakefile(BARE.format(n=n, c=plan.n)))
        ours, stamp = [], []
        for _ in range(args.repeats):
            t, text_ours = dry_run(ours_args, REPO)
            ours.append(t)
            t, text_stamp = dry_run([], stamp_dir)
            stamp.append(t)
        mo, ms = statistics.median(ours), statistics.median(stamp)
        print(f"coalitions: {n}; jobs planned: diffcredit {job_total(text_ours)}, stamped bare {job_total(text_stamp)}")
        print(f"dry-run median of {args.repeats}: diffcredit {mo:.2f} s, stamped bare {ms:.2f} s; ratio {mo / ms:.3f}")
        return
    ours, bare, match = [], [], []
    for _ in range(args.repeats):
        t, text_ours = dry_run(ours_args, REPO)
        ours.append(t)
        t, text_bare = dry_run([], bare_dir)
        bare.append(t)
        t, text_match = dry_run([], matched_dir)
        match.append(t)
    jobs = [job_total(x) for x in (text_ours, text_bare, text_match)]
    mo, mb, mm = (statistics.median(x) for x in (ours, bare, match))
    print(f"coalitions: {n}; jobs planned: diffcredit {jobs[0]}, bare {jobs[1]}, matched bare {jobs[2]}")
    print(f"dry-run median of {args.repeats}: diffcredit {mo:.2f} s, bare {mb:.2f} s, matched bare {mm:.2f} s")
    print(f"ratio to bare {mo / mb:.3f}; ratio to matched bare {mo / mm:.3f}")
    print(f"dry-run peak memory: diffcredit {peak_memory_mb(ours_args, REPO):.0f} MB, "
          f"bare {peak_memory_mb([], bare_dir):.0f} MB")

    # One coalition's fine-tune as a cluster job: parsed again in remote mode, with the
    # plan the scheduling process saved (what a run hands its jobs) and without it.
    from diffcredit.plan import cache as plan_cache

    run = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules", *ours_args], cwd=REPO,
                         capture_output=True, text=True)  # not a dry-run: saves the plan as a run does
    if run.returncode != 0:
        raise SystemExit(run.stdout + run.stderr)
    saved = max((plan.results / ".cache" / "plans").glob("*.pickle"))
    env = {plan_cache.ENV: f"{saved.resolve()}#{hashlib.sha256(saved.read_bytes()).hexdigest()}"}
    key = plan.keys("fine_tune")[0]
    rebuilt, loaded, bare_job = [], [], []
    for _ in range(args.repeats):
        rebuilt.append(remote_job(ours_args, REPO, f"fine_tune:key={key}", {plan_cache.ENV: ""}))
        loaded.append(remote_job(ours_args, REPO, f"fine_tune:key={key}", env))
        bare_job.append(remote_job([], bare_dir, "fine_tune:k=3"))
    rr, rl, rb = (statistics.median(x) for x in (rebuilt, loaded, bare_job))
    print(f"remote job (one fine_tune) median of {args.repeats}: plan built again {rr:.2f} s, "
          f"saved plan {rl:.2f} s, bare {rb:.2f} s; ratios to bare {rr / rb:.3f} and {rl / rb:.3f}")


if __name__ == "__main__":
    main()
