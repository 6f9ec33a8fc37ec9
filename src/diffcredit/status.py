"""`diffcredit status` and `diffcredit gc`: what a config's run has done, and what
in its results folder no longer belongs to it. Both read the plan's node table and
neither writes anything but what gc is asked to delete."""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .config import deep_update, load_yaml
from .artifacts import (CKPT_PATTERN, PARTIAL_PATTERN, CorruptArtifactError, is_sealed_dir, is_sealed_file,
                        list_checkpoints, sidecar_of, verify_dir, verify_file)
from .stages import STAGES

# Folders under results/ whose entries are named by a key (or hold keyed files).
KEYED = tuple(sorted({s.keyed_folder for s in STAGES.values()} | {"scratch"}))


def _inner_folders(pattern: str, folder: bool) -> set[str]:
    """Literal folders of an output pattern after its first key: coalitions/{key}/model -> model."""
    parts = pattern.split("/")
    first = next(i for i, p in enumerate(parts) if "{" in p)
    inner = parts[first + 1:] if folder else parts[first + 1:-1]
    return {p for p in inner if "{" not in p}


# Folders inside a keyed folder that hold a key's artifacts (coalitions/{key}/model, .../samples/).
SUBFOLDERS = set().union(*(_inner_folders(s.output, s.folder) for s in STAGES.values()))
# Stages whose outputs are folders.
FOLDER_RULES = {s.name for s in STAGES.values() if s.folder}
KEY_PATTERN = re.compile(r"^[0-9a-f]{16}$")


def load_plan(workflow_dir: str | Path = ".", configfiles=()):
    """The Plan Snakemake would build for `--configfile configfiles` in `workflow_dir`,
    built read-only: nothing is written (not even the hash cache)."""
    from .plan import Plan

    workflow_dir = Path(workflow_dir)
    cfg = load_yaml(workflow_dir / "config.yaml")
    for f in configfiles:
        cfg = deep_update(cfg, load_yaml(f))
    return Plan(cfg, workflow_dir / "workflow" / "schemas" / "config.schema.yaml", read_only=True)


def disk_usage(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# ---------------------------------------------------------------- status


def check(node, check_hash: bool = True) -> tuple[str, str | None]:
    """('done' | 'missing' | 'corrupt', what is wrong) of a node's artifact, checked
    against its sidecar (sizes, and with `check_hash` the sha256 of every file)."""
    path = Path(node.path)
    if not path.exists():
        return "missing", None
    try:
        if node.rule in FOLDER_RULES:
            verify_dir(path, check_hash)
        else:
            verify_file(path, check_hash)
    except (CorruptArtifactError, OSError) as exc:
        return "corrupt", str(exc)
    return "done", None


def model_state(plan, key: str, state: str | None = None) -> tuple[str, int | None]:
    """('done' | 'corrupt' | 'incomplete' | 'missing', latest checkpoint step);
    `state`: the node's check() state, when already known."""
    state = state or check(plan.nodes[key])[0]
    if state != "missing":
        return state, None
    ckpts = list_checkpoints(Path(plan.scratch_dir(key)))
    if ckpts:
        return "incomplete", ckpts[-1][0]
    return "missing", None


def incomplete_markers(workdir: str | Path = ".") -> list[str]:
    """Output paths Snakemake marked incomplete in `workdir`: jobs running or killed.

    Snakemake's file persistence (snakemake/persistence/file.py) marks an output by
    writing a file under .snakemake/incomplete/ named by the urlsafe base64 of the
    output's path; a name longer than NAME_MAX is split into chunks, every chunk but
    the last a folder named '@' + chunk.
    """
    root = Path(workdir) / ".snakemake" / "incomplete"
    out = []
    for folder, _, files in os.walk(root):
        chunks = Path(folder).relative_to(root).parts
        if not all(c.startswith("@") for c in chunks):
            continue
        for name in files:
            try:
                out.append(base64.urlsafe_b64decode("".join(c[1:] for c in chunks) + name).decode())
            except ValueError:  # not a marker (migration_underway), or not UTF-8
                continue
    return sorted(out)


@dataclass
class Status:
    models: dict = field(default_factory=dict)  # name -> state
    coalitions: dict = field(default_factory=lambda: {"done": 0, "incomplete": 0, "missing": 0, "corrupt": 0})
    strategies: Counter = field(default_factory=Counter)
    incomplete: list = field(default_factory=list)  # (key, members, step)
    stages: dict = field(default_factory=dict)  # rule -> (done, total)
    corrupt: list = field(default_factory=list)  # (node, what is wrong)
    marked: list = field(default_factory=list)  # (node or None, path, state): Snakemake's incomplete markers
    disk: dict = field(default_factory=dict)
    hashed: bool = True


def status(plan, check_hash: bool = True, workdir: str | Path = ".") -> Status:
    """What a plan's run has done; `workdir`: where Snakemake ran (the plan's paths are
    relative to it)."""
    st = Status(hashed=check_hash)
    states = {}
    for key, node in plan.nodes.items():
        states[key], problem = check(node, check_hash)
        if problem:
            st.corrupt.append((node, problem))
    for name, rule in (("untrained", "init_model"), ("full", "train_full"), ("pruned", "prune"),
                       ("classifier", "train_classifier")):
        for key in plan.keys(rule):
            if rule != "prune" or any(plan.nodes[k].parents.get("start") == key for k in plan.coalitions):
                st.models[name] = model_state(plan, key, states[key])[0]
    for key, members in plan.coalitions.items():
        state, step = model_state(plan, key, states[key])
        st.coalitions[state] += 1
        st.strategies[plan.nodes[key].spec["strategy"]] += 1
        if state == "incomplete":
            st.incomplete.append((key, members, step))
    for rule in (s.name for s in STAGES.values() if s.counted):
        keys = plan.keys(rule)
        if keys:
            st.stages[rule] = (sum(states[k] == "done" for k in keys), len(keys))
    by_path = {os.path.normpath(os.path.join(workdir, n.path)): n for n in plan.nodes.values()}
    for path in incomplete_markers(workdir):
        node = by_path.get(os.path.normpath(os.path.join(workdir, path)))
        st.marked.append((node, path, states[node.key] if node else None))
    for sub in ("data", "models", "coalitions", "references", "scratch", "values", "attributions", "evaluation"):
        st.disk[sub] = disk_usage(plan.results / sub) if (plan.results / sub).exists() else 0
    return st


def format_status(plan, st: Status) -> str:
    n = len(plan.coalitions)
    c = st.coalitions
    strategies = ", ".join(f"{k} {v}" for k, v in sorted(st.strategies.items())) or "none"
    lines = [
        f"results: {plan.results}  ({plan.n} contributors, strategies: {strategies})",
        "models: " + ", ".join(f"{k} {v}" for k, v in st.models.items()),
        f"coalitions: {n} in the design(s): {c['done']} done, {c['incomplete']} incomplete (have checkpoints), "
        f"{c['missing']} missing, {c['corrupt']} corrupt",
    ]
    for key, members, step in st.incomplete:
        lines.append(f"  incomplete {key}: step {step}, members {'+'.join(members)}")
    lines.append(
        "  ".join(f"{rule.replace('shapley_estimate', 'estimates')}: {d}/{t}" for rule, (d, t) in st.stages.items())
    )
    checked = "size and sha256" if st.hashed else "size only"
    lines.append(f"corrupt: {len(st.corrupt)} artifacts do not match their sidecars ({checked} checked)")
    for node, problem in st.corrupt:
        lines.append(f"  {node.rule} {node.key}: {problem}")
    # The profile ignores these markers: outputs are atomic, so what exists is complete
    # unless listed as corrupt above. They show which jobs were running or were killed;
    # one whose output has finished since (a rerun that kept the output) is stale.
    live = [m for m in st.marked if m[2] != "done"]
    stale = len(st.marked) - len(live)
    if live:
        lines.append(f"snakemake: {len(live)} outputs marked incomplete (jobs running, or killed)")
        for node, path, state in live:
            lines.append(f"  {node.rule} {node.key} ({state}): {path}" if node else f"  (not in this plan): {path}")
    if stale:
        lines.append(f"snakemake: {stale} stale incomplete markers, of outputs finished and verified since "
                     "(harmless; Snakemake leaves them when a rerun keeps the output)")
    lines.append("disk: " + ", ".join(f"{k} {human(v)}" for k, v in st.disk.items())
                 + f"; total {human(sum(st.disk.values()))}")
    return "\n".join(lines)


# ---------------------------------------------------------------- gc


def referenced(plan) -> set[Path]:
    """Every path the plan's nodes use, with sidecars and scratch folders."""
    out = set()
    for node in plan.nodes.values():
        p = Path(node.path)
        out.add(p)
        out.add(sidecar_of(p))
        if STAGES[node.rule].scratch:
            out.add(Path(plan.scratch_dir(node.key)))
    return out


def _keyed(path: Path) -> bool:
    """Named by a key (`{key}` or `{key}.ext`), or inside a folder named by one."""
    return bool(KEY_PATTERN.match(path.name.split(".", 1)[0]) or KEY_PATTERN.match(path.parent.name))


def _made_here(entry: Path, used: set[Path], in_scratch: bool) -> bool:
    """`entry` is an artifact diffcredit provably made: a sealed file (or its sidecar)
    or folder, a scratch folder of checkpoints, or a temporary of one of those."""
    if entry.is_symlink():
        return False
    m = PARTIAL_PATTERN.match(entry.name)
    if m:  # a temporary; not one a running job of this plan may still be writing
        target = entry.with_name(m["target"])
        return target not in used and (_keyed(target) or CKPT_PATTERN.match(target.name) is not None)
    if not _keyed(entry):
        return False
    if entry.is_dir():
        if in_scratch and KEY_PATTERN.match(entry.name):
            return all(not p.is_symlink() and p.is_file()
                       and (CKPT_PATTERN.match(p.name) or PARTIAL_PATTERN.match(p.name)) for p in entry.iterdir())
        return is_sealed_dir(entry) and (KEY_PATTERN.match(entry.name) or entry.name == "model")
    if entry.name.endswith(".sha256.json"):
        return is_sealed_file(entry.with_name(entry.name.removesuffix(".sha256.json")))
    return is_sealed_file(entry)


def garbage(plan) -> list[Path]:
    """Artifacts under the results folder's keyed folders that the plan does not use.

    Only what diffcredit provably made is listed (see _made_here); a folder is listed
    whole when all it holds is listed. Anything else is left alone.
    """
    used = referenced(plan)
    keep = used | {q for p in used for q in p.parents}

    def scan(folder: Path, in_scratch: bool) -> tuple[list[Path], bool]:
        """What in `folder` may go, and whether that is all of it."""
        found, whole = [], True
        for entry in sorted(folder.iterdir()):
            if entry in used or entry.is_symlink():
                whole = False
            elif _made_here(entry, used, in_scratch):
                found.append(entry)
            elif entry.is_dir() and (KEY_PATTERN.match(entry.name) or entry.name in SUBFOLDERS):
                inner, inner_whole = scan(entry, False)
                if inner and inner_whole and entry not in keep:
                    found.append(entry)
                else:
                    found += inner
                    whole = False
            else:
                whole = False
        return found, whole

    out = []
    for sub in KEYED:
        folder = plan.results / sub
        if folder.is_dir() and not folder.is_symlink():
            out += scan(folder, sub == "scratch")[0]
    return out


def protected(plan, workflow_dir: str | Path = ".") -> list[str]:
    """What the results folder holds that gc must never touch: the configured data,
    the reference images and the repository. gc refuses to run when this is not empty."""
    from .plan.data import data_folders

    paths = {"the repository (--workflow-dir)": workflow_dir, **data_folders(plan.cfg["data"])}
    ref = plan.cfg["reference"]
    if isinstance(ref, dict):
        for k in ("root", "file"):
            if ref.get(k):
                paths[f"reference.{k}"] = ref[k]
    results = plan.results.resolve()
    return [f"{what} {p}" for what, p in paths.items() if Path(p).expanduser().resolve().is_relative_to(results)]


def remove(paths: list[Path]) -> None:
    """Delete `paths`. A folder is first renamed to a temporary's name, so a gc killed
    half-way through it leaves a temporary (listed by the next gc), never a folder
    artifact that still looks complete with files missing."""
    import secrets

    for p in paths:
        if p.is_dir() and not p.is_symlink():
            if not PARTIAL_PATTERN.match(p.name):
                doomed = p.with_name(f".{p.name}.{secrets.token_hex(4)}.partial")
                p.rename(doomed)
                p = doomed
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
