"""The whole workflow as content-addressed artifacts, computed from a config.

A Plan is built when the Snakefile is parsed (and again by every cluster job,
which re-parses it), so it only describes: contributor hashes come from a cache
keyed by (path, size, mtime); no model or image is loaded.

Every expensive artifact lives at a path named by its key (see keys.py):

    data/shards/{shard}.npz            one contributor's items
    data/{data}/manifest.parquet       contributors, counts, hashes
    models/init/{key}/                 the untrained model: v(empty)
    models/full/{key}/                 trained on all data: v(N)
    models/pruned/{key}/               pruned full model fine-tuned on all data
    models/classifier/{key}/           the scoring classifier
    coalitions/{key}/model/            one coalition's model
    coalitions/{model}/samples/{key}.npz
    coalitions/{model}/scores/{property}-{key}.json
    designs/{key}.parquet              one estimator's coalitions
    values/{key}/                      values, plots and diagnostics
    scratch/{key}/                     checkpoints of unfinished training
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import data as data_mod
from .config import ConfigError, validate
from .keys import artifact_key

# Training keys that change how a run is checkpointed, not what it computes.
_NOT_IN_KEY = {"checkpoint_every"}


def _training_spec(section: dict) -> dict:
    return {k: v for k, v in section.items() if k not in _NOT_IN_KEY}


@dataclass(frozen=True)
class Estimator:
    method: str
    scheme: str
    budget: int
    seed: int
    n_boot: int
    shrink: bool
    design_key: str
    key: str
    masks: np.ndarray  # (budget, n) bool, rows in design order

    @property
    def label(self) -> str:
        return f"{self.method}{'-shrunk' if self.shrink else ''}-{self.scheme}-{self.budget}"


class Plan:
    """Keys and paths of every artifact a config asks for."""

    def __init__(self, config: dict, schema: dict | str | Path):
        cfg = validate(config, schema)
        self.cfg = cfg
        self._model_keys: dict = {}
        self._generate_keys: dict = {}
        self._score_keys: dict = {}
        self.results = Path(cfg["results"])
        self._results_str = str(self.results)
        self.threads = cfg["threads"]
        self.train_threads = cfg["train_threads"]
        self.strategy = cfg["fine_tune"]["strategy"]
        self.properties = list(cfg["properties"])
        self._check_properties()

        cache = data_mod.HashCache(self.results / ".cache" / "hashes.json")
        try:
            contributors = data_mod.describe(cfg["data"], cache)
        except data_mod.DataError as exc:
            raise ConfigError(str(exc)) from None
        self.contributors = contributors
        self.names = [c.name for c in contributors]
        self.n = len(contributors)

        # Data: one shard per contributor, keyed by its content and the transform.
        self.transform = self._transform_spec()
        self.shard_keys = {
            c.name: artifact_key("data", self.transform, {"content": c.content_hash}) for c in contributors
        }
        self.data_key = artifact_key("data", self.transform, {"shards": sorted(self.shard_keys.values())})
        all_items = [h for c in contributors for h in c.item_hashes]
        self.reference_hash = data_mod.combine_hashes(all_items)

        # Models.
        from .models import scheduler_config, unet_config

        d = cfg["data"]
        resolution, channels = (8, 1) if d["source"] == "digits" else (d["resolution"], d["channels"])
        try:
            self.unet_config = unet_config(cfg["model"], resolution, channels)
        except ValueError as exc:
            raise ConfigError(f"invalid config: {exc}") from None
        self.scheduler_config = scheduler_config(cfg["model"])
        self.init_spec = {"unet": self.unet_config, "scheduler": self.scheduler_config, "seed": cfg["model"]["seed"]}
        self.init_key = artifact_key("init_model", self.init_spec)
        self.train_spec = _training_spec(cfg["train_full"])
        self.full_key = self._retrain_key(self.names, stage="train_full")
        self.prune_spec = {
            "ratio": cfg["prune"]["ratio"],
            "importance": cfg["prune"]["importance"],
            "training": _training_spec(cfg["prune"]["training"]),
        }
        self.pruned_key = artifact_key(
            "prune", self.prune_spec, {"full": self.full_key, "shards": self._shards_of(self.names)}
        )
        self.classifier_spec = {k: v for k, v in cfg["classifier"].items() if k != "min_accuracy"}
        self.classifier_key = artifact_key(
            "classifier", self.classifier_spec, {"items": self.reference_hash, "transform": self.transform}
        )
        self.generate_spec = dict(cfg["generate"])
        self.generate_spec.pop("batch_size")  # batching does not change the images

        # Coalitions: every estimator's design, deduplicated through the keys.
        self.estimators = self._estimators()
        self.coalitions: dict[str, tuple[str, ...]] = {}  # model key -> members
        for est in self.estimators:
            for row in est.masks:
                members = tuple(n for n, m in zip(self.names, row) if m)
                self.coalitions.setdefault(self.model_key(members), members)
        self.evaluated = {self.init_key: (), self.full_key: tuple(self.names), **self.coalitions}

    # ------------------------------------------------------------ validation

    def _check_properties(self) -> None:
        from .properties import PROPERTIES

        unknown = [p for p in self.properties if p not in PROPERTIES]
        if unknown:
            raise ConfigError(f"unknown properties {unknown}; known: {sorted(PROPERTIES)}")

    def _transform_spec(self) -> dict:
        d = self.cfg["data"]
        if d["source"] == "digits":
            return {"source": "digits"}
        return {"source": "folder", "resolution": d["resolution"], "channels": d["channels"]}

    def _estimators(self) -> list[Estimator]:
        from .coalitions import sample_design
        from .coalitions import validate as validate_design
        from .estimators import DEFAULT_SCHEME, check_shrink, estimate

        out = []
        for i, e in enumerate(self.cfg["estimators"]):
            scheme = e["scheme"] or DEFAULT_SCHEME[e["method"]]
            try:
                check_shrink(e["method"], e["shrink"])
                validate_design(self.n, e["budget"], scheme, e["method"])
            except ValueError as exc:
                raise ConfigError(f"invalid config: estimators[{i}]: {exc}") from None
            masks = sample_design(self.n, e["budget"], scheme, e["seed"])
            try:  # a sampled design can still be degenerate (repeated coalitions)
                estimate(masks, np.zeros(len(masks)), 0.0, 0.0, e["method"], n_boot=0)
            except ValueError as exc:
                raise ConfigError(
                    f"invalid config: estimators[{i}]: budget {e['budget']} is too small: {exc}"
                ) from None
            design_spec = {"scheme": scheme, "budget": e["budget"], "seed": e["seed"], "players": self.names}
            design_key = artifact_key("design", design_spec)
            score_keys = {
                p: [self.score_key(self.model_key(self._members(row)), p) for row in masks] for p in self.properties
            }
            anchors = {
                p: [self.score_key(self.init_key, p), self.score_key(self.full_key, p)] for p in self.properties
            }
            key = artifact_key(
                "estimate",
                {"method": e["method"], "seed": e["seed"], "n_boot": e["n_boot"], "shrink": e["shrink"],
                 "properties": self.properties},
                {"design": design_key, "scores": score_keys, "anchors": anchors},
            )
            out.append(Estimator(e["method"], scheme, e["budget"], e["seed"], e["n_boot"], e["shrink"],
                                 design_key, key, masks))
        return out

    # ------------------------------------------------------------ keys

    def _members(self, row) -> tuple[str, ...]:
        return tuple(n for n, m in zip(self.names, row) if m)

    def _shards_of(self, members) -> list[str]:
        return sorted(self.shard_keys[m] for m in members)

    def _retrain_key(self, members, stage: str) -> str:
        """Training from the untrained model on `members`: depends on their data only."""
        return artifact_key(stage, {"strategy": "retrain", **self.train_spec}, {
            "start": self.init_key,
            "shards": self._shards_of(members),
        })

    def model_key(self, members) -> str:
        """The key of the model that stands for coalition `members`."""
        members = tuple(members)
        key = self._model_keys.get(members)
        if key is None:
            key = self._model_keys[members] = self._compute_model_key(members)
        return key

    def _compute_model_key(self, members: tuple) -> str:
        if not members:
            return self.init_key
        if set(members) == set(self.names):
            return self.full_key
        if self.strategy == "retrain":
            return self._retrain_key(members, stage="fine_tune")
        spec = {"strategy": "sft", **_training_spec(self.cfg["fine_tune"]["training"])}
        return artifact_key("fine_tune", spec, {"start": self.pruned_key, "shards": self._shards_of(members)})

    def generate_key(self, model_key: str) -> str:
        key = self._generate_keys.get(model_key)
        if key is None:
            key = self._generate_keys[model_key] = artifact_key("generate", self.generate_spec, {"model": model_key})
        return key

    def score_key(self, model_key: str, prop: str) -> str:
        key = self._score_keys.get((model_key, prop))
        if key is None:
            key = self._score_keys[(model_key, prop)] = artifact_key(
                "score",
                {"property": prop},
                {"samples": self.generate_key(model_key), "classifier": self.classifier_key},
            )
        return key

    # ------------------------------------------------------------ paths

    def path(self, *parts) -> str:
        return os.path.join(self._results_str, *parts)

    def shard_path(self, name: str) -> str:
        return self.path("data", "shards", f"{self.shard_keys[name]}.npz")

    def manifest_path(self) -> str:
        return self.path("data", self.data_key, "manifest.parquet")

    def model_dir(self, key: str) -> str:
        if key == self.init_key:
            return self.path("models", "init", key)
        if key == self.full_key:
            return self.path("models", "full", key)
        if key == self.pruned_key:
            return self.path("models", "pruned", key)
        if key in self.coalitions:
            return self.path("coalitions", key, "model")
        raise KeyError(f"no model with key {key} in this plan")

    def classifier_dir(self) -> str:
        return self.path("models", "classifier", self.classifier_key)

    def samples_path(self, model_key: str) -> str:
        return self.path("coalitions", model_key, "samples", f"{self.generate_key(model_key)}.npz")

    def score_path(self, model_key: str, prop: str) -> str:
        return self.path("coalitions", model_key, "scores", f"{prop}-{self.score_key(model_key, prop)}.json")

    def design_path(self, est: Estimator) -> str:
        return self.path("designs", f"{est.design_key}.parquet")

    def values_dir(self, est: Estimator) -> str:
        return self.path("values", est.key)

    def scratch_dir(self, key: str) -> str:
        return self.path("scratch", key)

    def estimator(self, key: str) -> Estimator:
        for est in self.estimators:
            if est.key == key:
                return est
        raise KeyError(f"no estimate with key {key} in this plan")

    def design(self, design_key: str) -> Estimator:
        for est in self.estimators:
            if est.design_key == design_key:
                return est
        raise KeyError(f"no design with key {design_key} in this plan")

    def score_paths(self, est: Estimator) -> dict:
        """Per property: the anchors' and every design row's score file."""
        out = {}
        for p in self.properties:
            out[f"empty_{p}"] = self.score_path(self.init_key, p)
            out[f"full_{p}"] = self.score_path(self.full_key, p)
            out[f"rows_{p}"] = [self.score_path(self.model_key(self._members(r)), p) for r in est.masks]
        return out

    # ------------------------------------------------------------ job specs

    def training_section(self, key: str) -> dict:
        """The training recipe (with checkpointing) of a model key."""
        if key == self.full_key or (self.strategy == "retrain" and key in self.coalitions):
            return self.cfg["train_full"]
        if key == self.pruned_key:
            return self.cfg["prune"]["training"]
        return self.cfg["fine_tune"]["training"]

    def start_dir(self, key: str) -> str:
        if key == self.full_key or self.strategy == "retrain":
            return self.model_dir(self.init_key)
        if key == self.pruned_key:
            return self.model_dir(self.full_key)
        return self.model_dir(self.pruned_key)

    def members_of(self, key: str) -> tuple[str, ...]:
        if key == self.pruned_key:
            return tuple(self.names)
        return self.evaluated[key]

    def shard_spec(self, shard_key: str) -> dict:
        for c in self.contributors:
            if self.shard_keys[c.name] == shard_key:
                return {
                    "data": self.cfg["data"],
                    "name": c.name,
                    "content_hash": c.content_hash,
                    "cache": self.path(".cache", "hashes.json"),
                }
        raise KeyError(f"no contributor shard with key {shard_key} in this plan")

    def manifest_spec(self) -> dict:
        rows = [
            {
                "contributor": c.name,
                "n_items": c.n_items,
                "content_hash": c.content_hash,
                "shard": self.shard_path(c.name),
            }
            for c in self.contributors
        ]
        return {"rows": rows}

    def train_job_spec(self, key: str) -> dict:
        members = self.members_of(key)
        spec = {"training": self.training_section(key), "members": list(members)}
        if key == self.pruned_key:
            spec.update(ratio=self.prune_spec["ratio"], importance=self.prune_spec["importance"], desc="prune")
        else:
            spec["desc"] = "train_full" if key == self.full_key else f"fine_tune[{len(members)}/{self.n}]"
        return spec

    def design_spec(self, design_key: str) -> dict:
        est = self.design(design_key)
        return {"players": self.names, "scheme": est.scheme, "budget": est.budget, "seed": est.seed}

    def estimate_spec(self, est: Estimator) -> dict:
        return {
            "method": est.method,
            "scheme": est.scheme,
            "budget": est.budget,
            "seed": est.seed,
            "n_boot": est.n_boot,
            "shrink": est.shrink,
            "properties": self.properties,
        }

    def targets(self) -> list[str]:
        return [self.values_dir(e) for e in self.estimators]
