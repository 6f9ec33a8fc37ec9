"""The workflow's stages, one record each.

A record says everything the rest of the project needs about a stage: how its
artifacts are keyed (key namespace and version), where they live, which function
runs its jobs, what those jobs need (threads, GPU, memory), its conda env, its
report caption and its default SLURM wall time. The plan, the rules, `status`/`gc`,
the summary and the SLURM profile's test all read these records. Adding a stage is
its record and its module: the job function, and a planner that adds its nodes to the
plan (`planner`; the stages below are planned by the plan's own builders).

This module imports nothing heavy: the Snakefile reads it at parse time.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str  # the rule, the node's `rule`, the log folder
    output: str  # under the results folder; `{key}` and, for a model's files, `{mkey}`
    job: str  # "module:function" run by `python -m diffcredit job`
    key: str = ""  # key namespace (the name when empty); kept when a stage is renamed
    version: int = 1  # bump when a code change alters what the stage produces
    folder: bool = False  # the output is a folder
    env: str = "estimate"  # envs/{env}.yaml
    threads: str | None = None  # the config key giving its threads ("threads", "train_threads"), else 1
    gpu: bool = False  # runs on a GPU when the config's device is one
    memory: str | None = None  # how its mem_mb is estimated (plan/resources.py), else Snakemake's default
    scratch: bool = False  # resumable: checkpoints under scratch/{key}/
    reads_members: bool = False  # reads its members' shards (the job lists them); waits for the shard set's stamp
    runtime: int = 30  # SLURM wall minutes of a first attempt (times the attempt)
    report: tuple | None = None  # (caption file, category, subcategory or None) of a folder's plots
    checkpoint: bool = False  # a Snakemake checkpoint: what it writes adds nodes
    waits_for: str | None = None  # the checkpoint stage whose output adds this stage's inputs
    counted: bool = False  # `diffcredit status` shows how many of its jobs are done
    planner: str | None = None  # "module:function" adding its nodes to a built plan; they become targets

    def _load(self, ref: str):
        module, name = ref.split(":")
        return getattr(importlib.import_module(module), name)

    @property
    def key_name(self) -> str:
        return self.key or self.name

    @property
    def log(self) -> str:
        """The log file's name pattern under logs/{name}/."""
        return "{mkey}-{key}.log" if "{mkey}" in self.output else "{key}.log"

    @property
    def keyed_folder(self) -> str:
        """The folder under the results whose entries are named by a key."""
        return self.output.split("{", 1)[0].rstrip("/")

    def function(self):
        """The job function: (job dict, progress) -> None, writing the node's output."""
        return self._load(self.job)

    def plan_nodes(self, plan) -> list[str]:
        """A stage added to the workflow without a builder of the plan's own: its planner
        adds its nodes to `plan` (after every built-in stage) and returns those to make."""
        return self._load(self.planner)(plan) if self.planner else []


_MODEL = {"env": "torch", "folder": True, "memory": "model"}
_TRAIN = {**_MODEL, "gpu": True, "scratch": True, "reads_members": True, "version": 2}

STAGES = {s.name: s for s in (
    # data
    Stage("prepare_shard", "data/shards/{key}.npz", "diffcredit.stages.data:prepare_shard", key="data"),
    Stage("canary_shard", "data/canaries/{key}.npz", "diffcredit.stages.data:canary_shard", key="canary"),
    Stage("prepare_data", "data/{key}/manifest.parquet", "diffcredit.stages.data:prepare_data", key="manifest"),
    # unfinished training jobs wait for this one stamp, not for each member's shard
    Stage("shard_set", "data/sets/{key}.json", "diffcredit.stages.data:shard_set"),
    Stage("reference_data", "data/reference/{key}.npz", "diffcredit.stages.data:reference_data"),
    Stage("encode", "data/encoded/{key}.npz", "diffcredit.stages.data:encode", env="torch", threads="threads",
          gpu=True, memory="model", runtime=60),
    # models
    Stage("init_model", "models/init/{key}", "diffcredit.stages.models:init_model", version=2, **_MODEL),
    Stage("train_full", "models/full/{key}", "diffcredit.stages.models:train", key="train",
          threads="train_threads", runtime=720, **_TRAIN),
    Stage("prune", "models/pruned/{key}", "diffcredit.stages.models:train", threads="train_threads", runtime=360,
          **_TRAIN),
    # every coalition's model; the evaluations' retrains too
    Stage("fine_tune", "coalitions/{key}/model", "diffcredit.stages.models:train", threads="threads", runtime=240,
          **_TRAIN),
    # the proxy strategy's coalition models: the full model conditioned on the members
    Stage("condition", "coalitions/{key}/conditioned", "diffcredit.stages.models:condition", threads="threads",
          reads_members=True, **_MODEL),
    Stage("train_classifier", "models/classifier/{key}", "diffcredit.stages.models:train_classifier",
          key="classifier", version=2, folder=True, env="torch", threads="train_threads", memory="extractors",
          runtime=120),
    # samples, features, scores
    Stage("generate", "coalitions/{mkey}/samples/{key}.npz", "diffcredit.stages.scoring:generate", version=2,
          env="torch", threads="threads", gpu=True, memory="model", runtime=120, counted=True),
    Stage("features", "coalitions/{mkey}/features/{key}.npz", "diffcredit.stages.scoring:features", env="torch",
          threads="threads", gpu=True, memory="extractors", runtime=60, counted=True),
    Stage("reference_stats", "references/{key}.npz", "diffcredit.stages.scoring:reference_stats", env="torch",
          threads="train_threads", gpu=True, memory="extractors", runtime=60),
    Stage("score", "coalitions/{mkey}/scores/{key}.json", "diffcredit.stages.scoring:score", version=2,
          env="torch", memory="base", counted=True),
    # designs and estimates
    Stage("coalition_sample", "designs/{key}.parquet", "diffcredit.stages.estimates:coalition_sample", key="design"),
    Stage("shapley_estimate", "values/{key}", "diffcredit.stages.estimates:shapley_estimate", key="estimate",
          version=5, folder=True, runtime=60, report=("values.rst", "Values", None), counted=True),
    # an adaptive budget: a checkpoint per round (met the target?), the last round's values
    Stage("estimate_round", "rounds/{key}.json", "diffcredit.stages.estimates:estimate_round", checkpoint=True),
    Stage("adaptive_estimate", "adaptive/{key}", "diffcredit.stages.estimates:adaptive_estimate", folder=True,
          report=("values.rst", "Values", None), waits_for="estimate_round", counted=True),
    # attribution baselines
    Stage("attribution_features", "attributions/features/{key}.npz", "diffcredit.attribution.jobs:features_job",
          env="torch", threads="threads", gpu=True, memory="gradients", scratch=True, runtime=120, counted=True),
    Stage("attribute", "attributions/{key}", "diffcredit.attribution.jobs:attribute_job", folder=True,
          report=("attribution.rst", "Values", "attribution baselines"), counted=True),
    # evaluations
    Stage("fidelity", "evaluation/fidelity/{key}", "diffcredit.evaluation.fidelity:fidelity_job", folder=True,
          report=("fidelity.rst", "Evaluation", "fidelity"), counted=True),
    Stage("lds", "evaluation/lds/{key}", "diffcredit.evaluation.lds:lds_job", version=3, folder=True,
          report=("lds.rst", "Evaluation", "LDS"), counted=True),
    Stage("removal_sets", "evaluation/removal/{key}.json", "diffcredit.evaluation.counterfactual:removal_sets_job",
          checkpoint=True),
    Stage("counterfactual", "evaluation/counterfactual/{key}",
          "diffcredit.evaluation.counterfactual:counterfactual_job", version=3, folder=True,
          report=("counterfactual.rst", "Evaluation", "counterfactual"), waits_for="removal_sets", counted=True),
    # the run's fixed-name tables: its one node's outputs besides the keyed stamp
    Stage("summary", "summary/{key}.json", "diffcredit.summary:summary_job", version=3),
)}

KEY_VERSIONS = {s.key_name: s.version for s in STAGES.values()}


def get(name: str) -> Stage:
    try:
        return STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; known: {sorted(STAGES)}") from None
