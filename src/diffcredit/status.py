"""`diffcredit status` and `diffcredit gc`: what a config's run has done, and what
in its results folder no longer belongs to it."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .config import deep_update, load_yaml
from .io import FOLDER_SIDECAR, sidecar_of
from .io import list_checkpoints

# Folders under results/ whose entries are named by a key.
KEYED = ("data/shards", "models/init", "models/full", "models/pruned", "models/classifier",
         "coalitions", "designs", "values", "scratch")


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


def _model_state(plan, key: str) -> tuple[str, int | None]:
    """('done' | 'incomplete' | 'missing', latest checkpoint step)."""
    if (Path(plan.model_dir(key)) / FOLDER_SIDECAR).is_file():
        return "done", None
    ckpts = list_checkpoints(Path(plan.scratch_dir(key)))
    if ckpts:
        return "incomplete", ckpts[-1][0]
    return "missing", None


@dataclass
class Status:
    models: dict = field(default_factory=dict)  # name -> state
    coalitions: dict = field(default_factory=lambda: {"done": 0, "incomplete": 0, "missing": 0})
    incomplete: list = field(default_factory=list)  # (key, members, step)
    samples: tuple = (0, 0)
    scores: tuple = (0, 0)
    estimates: tuple = (0, 0)
    disk: dict = field(default_factory=dict)


def status(plan) -> Status:
    st = Status()
    for name, key in (("untrained", plan.init_key), ("full", plan.full_key)):
        st.models[name] = _model_state(plan, key)[0]
    if plan.strategy == "sft":
        st.models["pruned"] = _model_state(plan, plan.pruned_key)[0]
    st.models["classifier"] = "done" if (Path(plan.classifier_dir()) / FOLDER_SIDECAR).is_file() else "missing"
    for key, members in plan.coalitions.items():
        state, step = _model_state(plan, key)
        st.coalitions[state] += 1
        if state == "incomplete":
            st.incomplete.append((key, members, step))
    done = lambda p: sidecar_of(p).is_file() and Path(p).is_file()  # noqa: E731
    models = list(plan.evaluated)
    st.samples = (sum(done(plan.samples_path(m)) for m in models), len(models))
    scores = [plan.score_path(m, p) for m in models for p in plan.properties]
    st.scores = (sum(done(s) for s in scores), len(scores))
    st.estimates = (
        sum((Path(plan.values_dir(e)) / FOLDER_SIDECAR).is_file() for e in plan.estimators),
        len(plan.estimators),
    )
    for sub in ("data", "models", "coalitions", "scratch", "values"):
        st.disk[sub] = disk_usage(plan.results / sub) if (plan.results / sub).exists() else 0
    return st


def format_status(plan, st: Status) -> str:
    n = len(plan.coalitions)
    lines = [
        f"results: {plan.results}  ({plan.n} contributors, strategy {plan.strategy})",
        "models: " + ", ".join(f"{k} {v}" for k, v in st.models.items()),
        f"coalitions: {n} in the design(s): {st.coalitions['done']} done, "
        f"{st.coalitions['incomplete']} incomplete (have checkpoints), {st.coalitions['missing']} missing",
    ]
    for key, members, step in st.incomplete:
        lines.append(f"  incomplete {key}: step {step}, members {'+'.join(members)}")
    lines += [
        f"samples: {st.samples[0]}/{st.samples[1]}  scores: {st.scores[0]}/{st.scores[1]}  "
        f"estimates: {st.estimates[0]}/{st.estimates[1]}",
        "disk: " + ", ".join(f"{k} {human(v)}" for k, v in st.disk.items())
        + f"; total {human(sum(st.disk.values()))}",
    ]
    return "\n".join(lines)


def referenced(plan) -> dict[str, set[str]]:
    """Entry names under each keyed folder that the plan uses."""
    models = set(plan.evaluated)
    ref = {
        "data/shards": {f"{k}.npz" for k in plan.shard_keys.values()}
        | {f"{k}.npz.sha256.json" for k in plan.shard_keys.values()},
        "models/init": {plan.init_key},
        "models/full": {plan.full_key},
        "models/pruned": {plan.pruned_key} if plan.strategy == "sft" else set(),
        "models/classifier": {plan.classifier_key},
        "coalitions": models,
        "designs": {f"{e.design_key}.parquet" for e in plan.estimators}
        | {f"{e.design_key}.parquet.sha256.json" for e in plan.estimators},
        "values": {e.key for e in plan.estimators},
        "scratch": set(plan.coalitions) | {plan.full_key, plan.pruned_key},
    }
    return ref


def garbage(plan) -> list[Path]:
    """Artifacts under the results folder that the plan does not refer to."""
    ref = referenced(plan)
    out = []
    for sub in KEYED:
        folder = plan.results / sub
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.name not in ref[sub]:
                out.append(entry)
    # Inside a used coalition: samples and scores of other generate/score settings.
    for m in plan.evaluated:
        base = plan.results / "coalitions" / m
        keep_samples = {Path(plan.samples_path(m)).name}
        keep_scores = {Path(plan.score_path(m, p)).name for p in plan.properties}
        for sub, keep in (("samples", keep_samples), ("scores", keep_scores)):
            folder = base / sub
            if folder.is_dir():
                for entry in sorted(folder.iterdir()):
                    name = entry.name.removesuffix(".sha256.json")
                    if name not in keep:
                        out.append(entry)
    data_dir = plan.results / "data"
    if data_dir.is_dir():
        for entry in sorted(data_dir.iterdir()):
            if entry.is_dir() and entry.name not in ("shards", plan.data_key):
                out.append(entry)
    return out


def remove(paths: list[Path]) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
