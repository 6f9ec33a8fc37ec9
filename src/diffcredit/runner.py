"""Runs one workflow job in this process: the stage record of the job's `rule`
names the function. The command line (`python -m diffcredit job ...`) and the warm
worker's job processes both come here."""

from __future__ import annotations

import argparse
import json
import logging
import sys


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="the job as JSON (Plan.job): rule, spec, inputs, out and settings")
    parser.add_argument("--no-progress", action="store_true")


def run_job(job: dict, progress: bool = True) -> None:
    from .stages import get

    get(job["rule"]).function()(job, progress=progress)


def main(argv: list[str]) -> int:
    """`argv`: ["job", JOB_JSON, ...], as given to `python -m diffcredit`."""
    parser = argparse.ArgumentParser(prog="diffcredit")
    parser.add_argument("command", choices=["job"])
    add_job_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    run_job(json.loads(args.job), progress=not args.no_progress)
    return 0
