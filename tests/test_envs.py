"""envs/*.yaml (conda, for --sdm conda) name the packages pyproject.toml requires."""

import re
import subprocess
import sys
import tomllib

import yaml

from conftest import REPO

CONDA_TO_PIP = {"pytorch": "torch"}
# Needed to run the workflow, not inside the rules' environments.
WORKFLOW_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}


def names(specs):
    return {re.split(r"[\s<>=!~\[]", s.strip(), maxsplit=1)[0].lower() for s in specs}


def env_packages():
    found = set()
    for path in sorted((REPO / "envs").glob("*.yaml")):
        env = yaml.safe_load(path.read_text())
        assert env.get("channels"), f"{path.name} names no channels"
        for dep in env["dependencies"]:
            if isinstance(dep, dict):
                found |= names(dep["pip"])
            else:
                found |= {CONDA_TO_PIP.get(n, n) for n in names([dep])}
    return found - {"python", "pip"}


def test_envs_match_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    required = names(project["dependencies"]) - WORKFLOW_ONLY
    assert env_packages() == required


def test_every_stage_names_an_existing_env():
    from diffcredit.stages import STAGES

    for stage in STAGES.values():
        assert (REPO / "envs" / f"{stage.env}.yaml").is_file(), stage


def test_the_workflow_has_one_rule_per_stage_and_the_profile_overrides_only_stages():
    """The rules come from the stage records; the SLURM profile's per-rule settings, if
    any, name real stages (a renamed stage would otherwise lose its override silently)."""
    from diffcredit.stages import STAGES

    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--list-rules"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rules = {line.strip() for line in proc.stdout.splitlines() if line.strip()}
    assert rules == set(STAGES) | {"all"}
    profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    assert set(profile.get("set-resources") or {}) <= set(STAGES)
    assert all(s.runtime > 0 for s in STAGES.values())
