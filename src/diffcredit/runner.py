"""Runs one workflow job in this process: the stage record of the job's `rule`
names the function. The command line (`python -m diffcredit job ...`) and the warm
worker's job processes both come here."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import shutil
import sys
from pathlib import Path

# Below this much free space, a failed write is taken for a full disk.
FULL_DISK_BYTES = 64 << 20


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="the job as JSON (Plan.job): rule, spec, inputs, out and settings")
    parser.add_argument("--no-progress", action="store_true")


def run_job(job: dict, progress: bool = True) -> None:
    from .stages import get

    try:
        get(job["rule"]).function()(job, progress=progress)
    except (OSError, RuntimeError) as exc:
        # What a write on a full disk raises: ENOSPC, or torch.save's bare enforce failure.
        write_failed = getattr(exc, "errno", None) == errno.ENOSPC or "unexpected pos" in str(exc)
        full = _full_disk(job.get("out")) if write_failed else None
        if full is None:
            raise
        # torch.save on a full disk says only "[enforce fail ...] unexpected pos".
        raise OSError(errno.ENOSPC, f"the disk holding {full} is full ({_free(full) >> 20} MiB free), so "
                                    f"{job['rule']} could not write its output; free space and run the same "
                                    "command again: finished artifacts are kept and training resumes from its "
                                    "last checkpoint") from exc


def _free(path: Path) -> int:
    return shutil.disk_usage(path).free


def _full_disk(out: str | None) -> Path | None:
    """The nearest existing folder of `out` when its disk is (nearly) full, else None."""
    if not out:
        return None
    path = Path(out).parent
    while not path.is_dir() and path != path.parent:
        path = path.parent
    try:
        return path if _free(path) < FULL_DISK_BYTES else None
    except OSError:
        return None


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
