"""Command line.

    diffcredit status [--configfile F ...] [--quick]  what a config's run has done
    diffcredit gc [--configfile F ...] [--delete]      artifacts the config no longer uses
    python -m diffcredit job JOB_JSON                  one workflow job (the rules call this)

status and gc run in the folder Snakemake ran in and write nothing there. status
checks every artifact of the plan against its sidecar (size and sha256; sizes only
with --quick) and lists the corrupt ones, and lists the outputs Snakemake marked
incomplete (.snakemake/incomplete: jobs running, or killed). gc lists only what
diffcredit provably made (key-named, sealed artifacts, scratch checkpoints and
temporaries under the results folder's keyed folders) and refuses, with exit code 2,
a results folder that holds the configured data, the reference images or the
repository. --delete prints each entry before removing it, and refuses (exit code
2) while a run of any config holds the results folder's lock.
"""

from __future__ import annotations

import argparse
import json
import sys

from .runner import add_job_arguments


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
        if name == "status":
            p.add_argument("--quick", action="store_true", help="check artifacts' sizes only, not their sha256")
        if name == "gc":
            p.add_argument("--delete", action="store_true", help="remove what is listed")
    add_job_arguments(sub.add_parser("job", help="run one workflow job"))
    return parser


def _housekeeping(args) -> int:
    from .config import ConfigError
    from .status import disk_usage, format_status, garbage, human, load_plan, protected, remove, status

    try:
        plan = load_plan(args.workflow_dir, args.configfile)
    except ConfigError as exc:
        print(f"diffcredit: {exc}", file=sys.stderr)
        return 2
    if args.command == "status":
        print(format_status(plan, status(plan, check_hash=not args.quick)))
        return 0
    inside = protected(plan, args.workflow_dir)
    if inside:
        print(f"diffcredit: gc refuses to run: the results folder {plan.results} holds "
              f"{'; '.join(inside)}. Set results: to a folder of its own.", file=sys.stderr)
        return 2
    held = None
    if args.delete:  # never while a run (of any config) uses the folder: its new artifacts look unused
        from .lock import ResultsLocked, lock_results

        try:
            held = lock_results(plan.results)
        except ResultsLocked as exc:
            print(f"diffcredit: gc --delete refuses to run: {exc}", file=sys.stderr)
            return 2
    try:
        unused = garbage(plan)
        total = 0
        for p in unused:
            size = disk_usage(p)
            total += size
            print(f"{human(size):>10}  {p}", flush=True)
            if args.delete:
                remove([p])
    finally:
        if held is not None:
            held.close()
    verb = "removed" if args.delete else "unused (rerun with --delete to remove)"
    print(f"{len(unused)} entries, {human(total)} {verb}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("status", "gc"):
        return _housekeeping(args)
    from . import runner, worker

    argv = sys.argv[1:] if argv is None else argv
    code = worker.run_via_worker(argv, json.loads(args.job).get("device", "cpu"))
    return runner.main(argv) if code is None else code
