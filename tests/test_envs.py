"""envs/*.yaml (conda, for --sdm conda) name the packages pyproject.toml requires."""

import re
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


def test_every_rule_names_an_existing_env():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        rules = re.findall(r"^(?:rule|checkpoint) (\w+):", text, flags=re.M)
        envs = re.findall(r'conda:\s*\n\s*"([^"]+)"', text)
        assert len(envs) == len(rules), f"{smk.name}: every rule needs a conda env"
        for env in envs:
            assert (smk.parent / env).resolve().is_file(), env


def test_the_slurm_profile_gives_every_rule_a_wall_time():
    rules = set()
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        rules |= set(re.findall(r"^(?:rule|checkpoint) (\w+):", path.read_text(), re.M))
    listed = set(yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())["set-resources"])
    assert rules - {"all"} == listed
