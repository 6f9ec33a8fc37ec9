import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"


def snakemake(workdir, *args, configs=(), check=True, timeout=1800, snakefile=REPO / "Snakefile", base=TINY):
    """Run Snakemake on the repository's Snakefile in `workdir`, with the config
    files `base` (configs/tiny.yaml) and `configs` over the embedded default."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir)]
    files = [str(base), *map(str, configs)]
    cmd += ["--configfile", *files, *args]
    env = {**os.environ, "PYTHONHASHSEED": "0", "DIFFCREDIT_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def run(workdir, *args, configs=()):
    return snakemake(workdir, "--cores", "2", *args, configs=configs)


def planned(workdir, *args, configs=()) -> dict:
    """Jobs a dry-run plans, as {rule: count}; {} when nothing is to be done."""
    proc = snakemake(workdir, "--dry-run", *args, configs=configs)
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m or m.group(1) == "total":
            if counts:
                break
            continue
        counts[m.group(1)] = int(m.group(2))
    return counts


def planned_outputs(workdir, rule, *args, configs=()) -> list[str]:
    """Output paths of the jobs of `rule` that a dry-run plans."""
    proc = snakemake(workdir, "--dry-run", *args, configs=configs)
    outs = []
    for block in re.split(r"\n(?=\[)|\n(?=(?:local)?rule )", proc.stdout):
        if re.search(rf"(?:local)?rule {rule}:", block):
            m = re.search(r"output: (\S+)", block)
            if m:
                outs.append(m.group(1).rstrip(","))
    return outs


def write_config(path: Path, obj: dict) -> Path:
    path.write_text(yaml.safe_dump(obj))
    return path


def dry_run_error(workdir, cfg: dict | Path) -> str:
    """The output of a dry-run that must fail before planning any job."""
    path = cfg if isinstance(cfg, Path) else write_config(workdir / "bad.yaml", cfg)
    proc = snakemake(workdir, "--dry-run", configs=[path], check=False, timeout=300)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Job stats" not in proc.stdout  # failed before planning any job
    return proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A complete run of configs/tiny.yaml (shared by the workflow tests)."""
    workdir = tmp_path_factory.mktemp("tiny")
    run(workdir)
    return workdir


from slurm_cluster import slurm_cluster, slurm_test_profile  # noqa: E402,F401  (fixtures)
