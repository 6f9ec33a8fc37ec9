"""The submitting process's plan, handed to its cluster jobs.

Every cluster job parses the Snakefile again, and with hundreds of contributors
building the plan costs about as much as Snakemake's own start. The process that
schedules the jobs saves the plan it built under the results folder and names the
file and its sha256 in an environment variable, which the jobs inherit (SLURM
jobs are submitted with the whole environment). A job uses the saved plan only when
the file's bytes hash to that sha256 (so nothing else's file is ever unpickled) and
the plan was built from the same config and the same workflow code as the job's
own; otherwise it builds its own plan, as before. The jobs so see the plan that
scheduled them; checkpoints written since are read as usual.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

from ..artifacts import write_bytes
from ..keys import files_sha256, sha256_hex

ENV = "DIFFCREDIT_PLAN"


def fingerprint(config: dict, basedir: str | os.PathLike) -> str:
    """What a plan is a function of besides the data: the config as read, and the
    library's, Snakefile's and schema's code."""
    base = Path(basedir)
    code = [*(base / "src" / "diffcredit").rglob("*.py"), base / "Snakefile", *(base / "workflow").rglob("*.smk"),
            *(base / "workflow" / "schemas").glob("*.yaml")]
    return sha256_hex(json.dumps(config, sort_keys=True, default=str) + files_sha256(code, base))


def save(plan, fp: str) -> str:
    """Write `plan` for the jobs; the value of ENV that names it ("" when the results
    folder cannot be written: the jobs then build their own)."""
    data = pickle.dumps((fp, plan), protocol=pickle.HIGHEST_PROTOCOL)
    path = Path(plan.results) / ".cache" / "plans" / f"{fp[:32]}.pickle"
    try:
        write_bytes(path, data)
    except OSError:
        return ""
    return f"{path.resolve()}#{sha256_hex(data)}"


def load(value: str | None, fp: str):
    """The plan that ENV's `value` names, or None when it is absent, altered or of
    another config or code."""
    if not value or "#" not in value:
        return None
    path, digest = value.rsplit("#", 1)
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if sha256_hex(data) != digest:
        return None
    try:  # written by this code, but perhaps under other versions of its libraries
        saved_fp, plan = pickle.loads(data)
    except Exception:
        return None
    if saved_fp != fp:
        return None
    plan.load_checkpoints()  # what finished since it was saved
    return plan
