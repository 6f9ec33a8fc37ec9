"""`diffcredit status` and `gc` on a finished run at paper scale.

Plans an image folder of N contributors (four 8x8 images each, made here) with the
stratified design of M coalitions, writes every node's artifact as a small sealed
file or folder (as a finished run leaves them, sidecars included, but bytes instead
of models: this measures diffcredit's own work, not the disk's), and times
`diffcredit status`, `status --quick` and `gc` (listing) in fresh processes. The
baseline is Snakemake's own account of the same finished DAG on a bare Snakefile with
the same jobs (`snakemake --summary`, outputs present), from benchmarks/dry_run.py.

    python benchmarks/status_scale.py --contributors 258 --coalitions 1290

Run it alone: the timings are wall time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from dry_run import BARE, folder_config, timed  # noqa: E402


def finish(plan) -> int:
    """Write every node's artifact as a small sealed file or folder."""
    from diffcredit.artifacts import atomic_dir, write_bytes
    from diffcredit.status import FOLDER_RULES

    for node in plan.nodes.values():
        if node.rule in FOLDER_RULES:
            with atomic_dir(node.path) as tmp:
                (tmp / "part.bin").write_bytes(node.key.encode())
                if node.rule == "train_classifier":  # the plan reads its held-out accuracy
                    (tmp / "classifier.json").write_text('{"heldout_accuracy": 1.0}')
        else:
            write_bytes(node.path, node.key.encode(), seal=True)
    return len(plan.nodes)


def finish_bare(folder: Path, n: int, c: int) -> None:
    """The bare Snakefile's outputs, all present."""
    outs = [f"shards/{i}.npz" for i in range(c)] + [
        "manifest.parquet", "reference/images.npz", "models/init/done", "models/full/done", "models/pruned/done",
        "models/classifier/done", "references/classifier.npz", "designs/d.parquet", "values/est.done"]
    for a in ("init", "full"):
        outs += [f"anchors/{a}/samples.npz", f"anchors/{a}/features.npz", f"anchors/{a}/scores.json"]
    for k in range(n):
        outs += [f"coalitions/{k}/model/done", f"coalitions/{k}/samples.npz", f"coalitions/{k}/features.npz",
                 f"coalitions/{k}/scores.json"]
    for out in outs:  # in DAG order, so that no output is older than its inputs
        path = folder / out
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contributors", type=int, default=258)
    ap.add_argument("--coalitions", type=int, default=1290)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="status-"))
    config = folder_config(work / "data", args.contributors)
    config["results"] = str(work / "results")
    config["estimators"] = [{"method": "stratified", "budget": args.coalitions}]
    cfg = work / "big.yaml"
    cfg.write_text(yaml.safe_dump(config))
    from diffcredit.config import deep_update, load_yaml
    from diffcredit.plan import Plan

    # Built as a run builds it, so that its parse-time checks are cached as after a run.
    plan = Plan(deep_update(load_yaml(REPO / "config.yaml"), config),
                REPO / "workflow" / "schemas" / "config.schema.yaml")
    t0 = time.perf_counter()
    nodes = finish(plan)
    print(f"{args.contributors} contributors, {len(plan.coalitions)} coalitions: {nodes} artifacts written in "
          f"{time.perf_counter() - t0:.1f} s")
    bare = work / "bare"
    bare.mkdir()
    (bare / "Snakefile").write_text(BARE.format(n=len(plan.coalitions), c=plan.n))
    finish_bare(bare, len(plan.coalitions), plan.n)

    cli = [sys.executable, "-m", "diffcredit"]
    where = ["--workflow-dir", str(REPO), "--configfile", str(cfg)]
    runs = {"status": [*cli, "status", *where], "status --quick": [*cli, "status", "--quick", *where],
            "gc": [*cli, "gc", *where], "bare snakemake --summary": [sys.executable, "-m", "snakemake", "--summary"]}
    times: dict[str, list[float]] = {name: [] for name in runs}
    out = {}
    for _ in range(args.repeats):
        for name, cmd in runs.items():
            t, out[name] = timed(cmd, bare if name.startswith("bare") else REPO)
            times[name].append(t)
    assert f"{len(plan.coalitions)} done, 0 incomplete" in out["status"], out["status"][:2000]
    assert out["gc"].strip().endswith("unused (rerun with --delete to remove)"), out["gc"][-500:]
    base = statistics.median(times["bare snakemake --summary"])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name}: median of {args.repeats} {m:.2f} s; ratio to bare --summary {m / base:.2f}")


if __name__ == "__main__":
    main()
