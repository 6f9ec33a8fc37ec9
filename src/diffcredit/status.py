"""`diffcredit status` and `diffcredit gc`: what a config's run has done, and what
in its results folder no longer belongs to it. Both read the plan's node table."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .config import deep_update, load_yaml
from .io import FOLDER_SIDECAR, list_checkpoints, sidecar_of

# Folders under results/ whose entries are named by a key (or hold keyed files).
KEYED = ("data/shards", "data/reference", "models/init", "models/full", "models/pruned", "models/classifier",
         "coalitions", "references", "designs", "values", "scratch", "evaluation/fidelity", "evaluation/lds",
         "evaluation/removal", "evaluation/counterfactual")
# Rules whose outputs are folders.
FOLDER_RULES = {"init_model", "train_full", "prune", "fine_tune", "train_classifier", "shapley_estimate",
                "fidelity", "lds", "counterfactual"}


def load_plan(workflow_dir: str | Path = ".", configfiles=()):
    """The Plan Snakemake would build for `--configfile configfiles` in `workflow_dir`."""
    from .plan import Plan

    workflow_dir = Path(workflow_dir)
    cfg = load_yaml(workflow_dir / "config.yaml")
    for f in configfiles:
        cfg = deep_update(cfg, load_yaml(f))
    return Plan(cfg, workflow_dir / "workflow" / "schemas" / "config.schema.yaml")


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


def is_done(node) -> bool:
    """A node's artifact is complete: it carries the sidecar written on success."""
    if node.rule in FOLDER_RULES:
        return (Path(node.path) / FOLDER_SIDECAR).is_file()
    return Path(node.path).is_file() and sidecar_of(node.path).is_file()


def model_state(plan, key: str) -> tuple[str, int | None]:
    """('done' | 'incomplete' | 'missing', latest checkpoint step)."""
    if is_done(plan.nodes[key]):
        return "done", None
    ckpts = list_checkpoints(Path(plan.scratch_dir(key)))
    if ckpts:
        return "incomplete", ckpts[-1][0]
    return "missing", None


@dataclass
class Status:
    models: dict = field(default_factory=dict)  # name -> state
    coalitions: dict = field(default_factory=lambda: {"done": 0, "incomplete": 0, "missing": 0})
    strategies: Counter = field(default_factory=Counter)
    incomplete: list = field(default_factory=list)  # (key, members, step)
    stages: dict = field(default_factory=dict)  # rule -> (done, total)
    disk: dict = field(default_factory=dict)


def status(plan) -> Status:
    st = Status()
    for name, rule in (("untrained", "init_model"), ("full", "train_full"), ("pruned", "prune"),
                       ("classifier", "train_classifier")):
        for key in plan.keys(rule):
            if rule != "prune" or any(plan.nodes[k].parents.get("start") == key for k in plan.coalitions):
                st.models[name] = model_state(plan, key)[0]
    for key, members in plan.coalitions.items():
        state, step = model_state(plan, key)
        st.coalitions[state] += 1
        st.strategies[plan.nodes[key].spec["strategy"]] += 1
        if state == "incomplete":
            st.incomplete.append((key, members, step))
    for rule in ("generate", "features", "score", "shapley_estimate", "fidelity", "lds", "counterfactual"):
        keys = plan.keys(rule)
        if keys or rule in ("generate", "features", "score", "shapley_estimate"):
            st.stages[rule] = (sum(is_done(plan.nodes[k]) for k in keys), len(keys))
    for sub in ("data", "models", "coalitions", "references", "scratch", "values", "evaluation"):
        st.disk[sub] = disk_usage(plan.results / sub) if (plan.results / sub).exists() else 0
    return st


def format_status(plan, st: Status) -> str:
    n = len(plan.coalitions)
    strategies = ", ".join(f"{k} {v}" for k, v in sorted(st.strategies.items())) or "none"
    lines = [
        f"results: {plan.results}  ({plan.n} contributors, strategies: {strategies})",
        "models: " + ", ".join(f"{k} {v}" for k, v in st.models.items()),
        f"coalitions: {n} in the design(s): {st.coalitions['done']} done, "
        f"{st.coalitions['incomplete']} incomplete (have checkpoints), {st.coalitions['missing']} missing",
    ]
    for key, members, step in st.incomplete:
        lines.append(f"  incomplete {key}: step {step}, members {'+'.join(members)}")
    lines += [
        "  ".join(f"{rule.replace('shapley_estimate', 'estimates')}: {d}/{t}" for rule, (d, t) in st.stages.items()),
        "disk: " + ", ".join(f"{k} {human(v)}" for k, v in st.disk.items())
        + f"; total {human(sum(st.disk.values()))}",
    ]
    return "\n".join(lines)


def referenced(plan) -> set[Path]:
    """Every path the plan's nodes use, with sidecars and scratch folders."""
    out = set()
    for node in plan.nodes.values():
        p = Path(node.path)
        out.add(p)
        out.add(sidecar_of(p))
        if node.rule in ("train_full", "prune", "fine_tune"):
            out.add(Path(plan.scratch_dir(node.key)))
    return out


def garbage(plan) -> list[Path]:
    """Artifacts under the results folder's keyed folders that the plan does not use."""
    used = referenced(plan)
    keep = used | {q for p in used for q in p.parents}
    out = []

    def walk(folder: Path):
        for entry in sorted(folder.iterdir()):
            if entry in used:
                continue
            if entry in keep and entry.is_dir():
                walk(entry)
            else:
                out.append(entry)

    for sub in KEYED:
        folder = plan.results / sub
        if folder.is_dir():
            walk(folder)
    data_dir = plan.results / "data"
    if data_dir.is_dir():
        for entry in sorted(data_dir.iterdir()):
            if entry.is_dir() and entry not in keep and entry.name not in ("shards", "reference"):
                out.append(entry)
    return out


def remove(paths: list[Path]) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
