"""envs/*.yaml (conda, for --sdm conda) name the packages pyproject.toml requires."""

import importlib.metadata
import platform
import re
import subprocess
import sys
import tomllib

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

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


# ---------------------------------------------------------------- versions

def pins() -> dict:
    """constraints.txt as {canonical name: pinned Version}; every line an exact pin."""
    out = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"constraints.txt pins exactly: {line}"
            out[canonicalize_name(req.name)] = Version(spec.version)
    return out


def conda_requirement(dep: str) -> tuple[str, SpecifierSet]:
    """A conda match spec such as `pytorch >=2.3` as (pip name, range); conda's own
    syntax (`=2.3`, `2.3.*` builds) is refused: envs use PEP 440 ranges."""
    m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", dep.strip())
    assert m, dep
    name, version = m.group(1).lower(), m.group(2).replace(" ", "")
    try:
        spec = SpecifierSet(version)
    except InvalidSpecifier:
        raise AssertionError(f"{dep!r}: write the range as a PEP 440 specifier (e.g. >=2.3)") from None
    return canonicalize_name(CONDA_TO_PIP.get(name, name)), spec


def env_requirements() -> dict:
    """{env file: {canonical name: range}} of every conda and pip entry, python included."""
    out = {}
    for path in sorted((REPO / "envs").glob("*.yaml")):
        reqs = {}
        for dep in yaml.safe_load(path.read_text())["dependencies"]:
            if isinstance(dep, dict):
                for line in dep["pip"]:
                    req = Requirement(line)
                    reqs[canonicalize_name(req.name)] = req.specifier
            else:
                name, spec = conda_requirement(dep)
                reqs[name] = spec
        reqs.pop("pip", None)
        out[path.name] = reqs
    return out


def pyproject_requirements() -> dict:
    """{canonical name: range} of the dependencies and the test extra."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["test"]
    reqs = {}
    for line in lines:
        req = Requirement(line)
        reqs[canonicalize_name(req.name)] = req.specifier
    return reqs


def requires_python() -> SpecifierSet:
    return SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])


def admits(spec: SpecifierSet, version: Version) -> bool:
    return spec.contains(version, prereleases=True)


def test_pins_satisfy_the_pyproject_ranges():
    pinned = pins()
    wrong = {name: (str(spec), str(pinned.get(name))) for name, spec in pyproject_requirements().items()
             if name not in pinned or not admits(spec, pinned[name])}
    assert not wrong, f"pyproject.toml range vs constraints.txt pin: {wrong}"


def test_pins_satisfy_the_env_ranges_which_are_pyprojects():
    pinned, ranges = pins(), pyproject_requirements()
    for env, reqs in env_requirements().items():
        reqs.pop("python")
        wrong = {name: (str(spec), str(pinned.get(name))) for name, spec in reqs.items()
                 if name not in pinned or not admits(spec, pinned[name])}
        assert not wrong, f"envs/{env} range vs constraints.txt pin: {wrong}"
        differ = {name: (str(spec), str(ranges[name])) for name, spec in reqs.items() if spec != ranges[name]}
        assert not differ, f"envs/{env} range vs pyproject.toml: {differ}"


def test_python_requirement_agrees_everywhere():
    wanted = requires_python()
    for env, reqs in env_requirements().items():
        assert reqs["python"] == wanted, f"envs/{env} python {reqs['python']} vs pyproject {wanted}"
    assert admits(wanted, Version(platform.python_version())), f"running Python is outside {wanted}"
    # The oldest Python the project admits must be one every pinned package installs on.
    lowest = max(Version(s.version) for s in wanted if s.operator in (">=", "~="))
    checked, refusing = set(), {}
    for name, version in pins().items():
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if Version(dist.version) != version:
            continue  # not this pin's metadata
        checked.add(name)
        needs = dist.metadata.get("Requires-Python")
        if needs and not admits(SpecifierSet(needs), lowest):
            refusing[name] = needs
    assert {"numpy", "pandas", "scipy", "snakemake", "torch"} <= checked
    assert not refusing, f"requires-python {wanted} admits {lowest}, which these pins refuse: {refusing}"
