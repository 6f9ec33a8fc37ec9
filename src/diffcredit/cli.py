"""Command line: `python -m diffcredit <stage> ...`, one stage per workflow rule."""

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diffcredit", description=__doc__)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--spec", required=True, help="the job's spec as JSON")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--start", help="model folder to start from")
    parser.add_argument("--model", help="model folder to sample from")
    parser.add_argument("--shards", nargs="*", default=[])
    parser.add_argument("--scratch", help="checkpoint folder")
    parser.add_argument("--samples")
    parser.add_argument("--classifier")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    _setup(args.stage, args.threads)
    spec = json.loads(args.spec)
    progress = not args.no_progress

    from . import stages

    if args.stage == "prepare-shard":
        stages.prepare_shard(spec, args.out)
    elif args.stage == "prepare-data":
        stages.prepare_data(spec, args.out)
    elif args.stage == "init-model":
        stages.init_model(spec, args.out)
    elif args.stage == "train":
        stages.train_model(spec, args.start, args.shards, args.out, args.scratch, progress)
    elif args.stage == "prune":
        stages.prune_model(spec, args.start, args.shards, args.out, args.scratch, progress)
    elif args.stage == "generate":
        stages.generate(spec, args.model, args.out, progress)
    elif args.stage == "train-classifier":
        stages.train_classifier(spec, args.shards, args.out, progress)
    elif args.stage == "score":
        stages.score(spec, args.samples, args.classifier, args.out)
    elif args.stage == "design":
        stages.design(spec, args.out)
    return 0
