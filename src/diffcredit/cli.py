"""Command line.

    diffcredit status [--configfile F ...]       what a config's run has done
    diffcredit gc [--configfile F ...] [--delete] artifacts the config no longer uses
    python -m diffcredit <stage> --spec JSON ...  one workflow job (the rules call these)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

STAGES = (
    "prepare-shard",
    "prepare-data",
    "init-model",
    "train",
    "prune",
    "generate",
    "train-classifier",
    "score",
    "design",
)
# Stages that only move tables and arrays skip importing torch.
_NO_TORCH = {"prepare-shard", "prepare-data", "design"}


def _setup(stage: str, threads: int) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if stage in _NO_TORCH:
        return
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
    if torch.cuda.is_available():
        # CPU kernels are deterministic at a fixed thread count; CUDA needs this
        # (it imports torch's compiler stack, over a second, so only here).
        torch.use_deterministic_algorithms(True, warn_only=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffcredit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("status", "coalitions done, missing and incomplete, and disk use, for a config"),
        ("gc", "list (and with --delete remove) artifacts the config does not refer to"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--configfile", nargs="*", default=[], help="config files over config.yaml, as given to snakemake")
        p.add_argument("--workflow-dir", default=".", help="the repository root (holds config.yaml and workflow/)")
        if name == "gc":
            p.add_argument("--delete", action="store_true", help="remove what is listed")
    for stage in STAGES:
        p = sub.add_parser(stage, help=f"workflow job: {stage}")
        p.add_argument("--spec", required=True, help="the job's spec as JSON")
        p.add_argument("--out", required=True)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--start", help="model folder to start from")
        p.add_argument("--model", help="model folder to sample from")
        p.add_argument("--shards", nargs="*", default=[])
        p.add_argument("--scratch", help="checkpoint folder")
        p.add_argument("--samples")
        p.add_argument("--classifier")
        p.add_argument("--no-progress", action="store_true")
    return parser


def _housekeeping(args) -> int:
    from .config import ConfigError
    from .status import format_status, garbage, human, disk_usage, load_plan, remove, status

    try:
        plan = load_plan(args.workflow_dir, args.configfile)
    except ConfigError as exc:
        print(f"diffcredit: {exc}", file=sys.stderr)
        return 2
    if args.command == "status":
        print(format_status(plan, status(plan)))
        return 0
    unused = garbage(plan)
    total = sum(disk_usage(p) for p in unused)
    for p in unused:
        print(f"{human(disk_usage(p)):>10}  {p}")
    verb = "removed" if args.delete else "unused (rerun with --delete to remove)"
    print(f"{len(unused)} entries, {human(total)} {verb}")
    if args.delete:
        remove(unused)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("status", "gc"):
        return _housekeeping(args)
    _setup(args.command, args.threads)
    spec = json.loads(args.spec)
    progress = not args.no_progress

    from . import stages

    stage = args.command
    if stage == "prepare-shard":
        stages.prepare_shard(spec, args.out)
    elif stage == "prepare-data":
        stages.prepare_data(spec, args.out)
    elif stage == "init-model":
        stages.init_model(spec, args.out)
    elif stage == "train":
        stages.train_model(spec, args.start, args.shards, args.out, args.scratch, progress)
    elif stage == "prune":
        stages.prune_model(spec, args.start, args.shards, args.out, args.scratch, progress)
    elif stage == "generate":
        stages.generate(spec, args.model, args.out, progress)
    elif stage == "train-classifier":
        stages.train_classifier(spec, args.shards, args.out, progress)
    elif stage == "score":
        stages.score(spec, args.samples, args.classifier, args.out)
    elif stage == "design":
        stages.design(spec, args.out)
    return 0
