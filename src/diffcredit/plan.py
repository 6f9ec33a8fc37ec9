"""The whole workflow as a table of content-addressed nodes, built from a config.

A Plan is built when the Snakefile is parsed (and again by every cluster job,
which re-parses it), so it only describes: contributor hashes come from a cache
keyed by (path, size, mtime); no model or image is loaded, torch is not imported.

Every node is (rule, key, path, spec, parents): the rule that makes it, its key
(see keys.py: the stage, the spec and the parents' keys), where it lives, what its
key covers, and the nodes it is made from. `job` holds what the job needs besides
(threads, batch sizes, checkpoint intervals, file paths): settings that do not
change the result and so stay out of the key. Small functions below add the nodes
of each stage; the rules, `status` and `gc` all read the same table.

    data/shards/{key}.npz                 one contributor's items
    data/encoded/{key}.npz                a shard encoded by a latent family's encoders
    data/{key}/manifest.parquet           contributors, counts, hashes
    data/reference/{key}.npz              the reference images
    models/init/{key}/                    the untrained model: v(empty)
    models/full/{key}/                    trained on all data: v(N)
    models/pruned/{key}/                  pruned full model fine-tuned on all data
    models/classifier/{key}/              the classifier feature extractor
    coalitions/{key}/model/               one coalition's model (any strategy)
    coalitions/{model}/samples/{key}.npz
    coalitions/{model}/features/{key}.npz
    coalitions/{model}/scores/{key}.json
    references/{key}.npz                  reference statistics of one extractor
    designs/{key}.parquet                 one estimator's coalitions
    values/{key}/                         values, plots and diagnostics
    scratch/{key}/                        checkpoints of unfinished training
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import data as data_mod
from .config import ConfigError, validate
from .keys import artifact_key

# Keys of training sections that change how a run is checkpointed, not what it computes.
_NOT_IN_KEY = {"checkpoint_every"}
# Rules whose jobs run on a GPU when the config's device is one.
TRAINING_RULES = ("train_full", "prune", "fine_tune")
GPU_RULES = ("encode", "train_full", "prune", "fine_tune", "generate", "features", "reference_stats",
             "attribution_features")


@dataclass(frozen=True)
class Node:
    rule: str
    key: str
    path: str
    spec: dict
    parents: dict  # role -> key, or list of keys
    job: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Estimator:
    method: str
    scheme: str
    budget: int
    seed: int
    n_boot: int
    shrink: bool
    strategy: str
    design_key: str
    key: str
    masks: np.ndarray  # (budget, n) bool, rows in design order
    replicate: int = 0  # retrain's seed replicate (fidelity's noise floor)

    @property
    def label(self) -> str:
        rep = f"-seed+{self.replicate}" if self.replicate else ""
        design = f"-design-seed{self.seed}" if self.seed else ""
        size = len(self.masks)  # the budget, or the fixed size of a loo / exact design
        return f"{self.method}{'-shrunk' if self.shrink else ''}-{self.scheme}-{size}{design}-{self.strategy}{rep}"



@dataclass(frozen=True)
class Attribution:
    method: str
    label: str
    key: str  # the attribute node: values in the estimators' format


# Recipe keys added later stay out of the key at their default, so that adding them
# moved no existing artifact.
_LATER_DEFAULTS = {"schedule": "constant"}


def _recipe(section: dict) -> dict:
    return {k: v for k, v in section.items()
            if k not in _NOT_IN_KEY and not (k in _LATER_DEFAULTS and v == _LATER_DEFAULTS[k])}


def _section(cfg: dict, dotted: str) -> dict:
    out = cfg
    for part in dotted.split("."):
        out = out[part]
    return out


def _results_folder(value: str) -> Path:
    """The results folder, refused when empty or when it or a parent is a file."""
    if not value.strip():
        raise ConfigError("results is empty: give the folder for the artifacts and tables, e.g. 'results'")
    path = Path(value)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise ConfigError(f"results {value!r}: {p} is a file, not a folder; choose another results folder")
    return path


class Plan:
    """The node table of a config. `read_only`: build it without writing anything
    (status and gc), reading the hash cache but never saving it."""

    def __init__(self, config: dict, schema: dict | str | Path, read_only: bool = False):
        from .families import get_family

        cfg = validate(config, schema)
        self.cfg = cfg
        self.results = _results_folder(cfg["results"])
        self._results_str = str(self.results)
        self.threads = cfg["threads"]
        self.train_threads = cfg["train_threads"]
        self.device = cfg["device"]
        self.nodes: dict[str, Node] = {}
        self._by_rule: dict[str, list[str]] = {}
        self._model_keys: dict = {}
        self._score_keys: dict = {}
        self._dynamic: dict[str, dict] = {}  # node key -> parents known once a checkpoint ran
        self._after: dict[str, dict] = {}  # node key -> inputs that only order its job (not in its key)
        self._cache = data_mod.HashCache(self.results / ".cache" / "hashes.json", read_only=read_only)
        try:
            self.family = get_family(cfg["model"]["family"])
        except ValueError as exc:
            raise ConfigError(f"invalid config: {exc}") from None
        self.properties = list(cfg["properties"])
        self._add_data()
        self._add_reference()
        self._add_models()
        self._resolve_extractors()
        self.estimators = self._add_estimators()
        self._add_attributions()
        self._add_evaluations()
        self._add_summary()
        self._cache.flush()

    # ------------------------------------------------------------ the table

    def add(self, rule: str, stage: str, spec: dict, parents: dict, path, job: dict | None = None) -> str:
        """Add a node made by `rule`; its key covers `stage`, `spec` and `parents`."""
        key = artifact_key(stage, spec, parents)
        if key not in self.nodes:
            self.nodes[key] = Node(rule, key, path(key) if callable(path) else path, spec, parents, job or {})
            self._by_rule.setdefault(rule, []).append(key)
        return key

    def node(self, key: str, rule: str | None = None) -> Node:
        n = self.nodes.get(key)
        if n is None or (rule is not None and n.rule != rule):
            raise KeyError(f"no {rule or 'node'} with key {key} in this plan")
        return n

    def keys(self, rule: str) -> list[str]:
        return list(self._by_rule.get(rule, []))

    def path(self, *parts) -> str:
        return os.path.join(self._results_str, *parts)

    def inputs(self, key: str) -> dict:
        """role -> path (or list of paths) of a node's parents."""
        out = {}
        parents = {**self.nodes[key].parents, **self._dynamic.get(key, {}), **self._after.get(key, {})}
        for role, parent in parents.items():
            if isinstance(parent, list):
                out[role] = [self.nodes[p].path for p in parent]
            elif parent in self.nodes:
                out[role] = self.nodes[parent].path
        return out

    def job(self, key: str) -> dict:
        """Everything a job needs: its spec, inputs, output and unkeyed settings."""
        n = self.nodes[key]
        job = {"rule": n.rule, "key": key, "spec": n.spec, "inputs": self.inputs(key), "out": n.path, **n.job}
        if n.rule in TRAINING_RULES:
            job["scratch"] = self.scratch_dir(key)
        return job

    def scratch_dir(self, key: str) -> str:
        return self.path("scratch", key)

    # ------------------------------------------------------------ data

    def _add_data(self) -> None:
        d = self.cfg["data"]
        try:
            contributors = data_mod.describe(d, self._cache)
        except data_mod.DataError as exc:
            raise ConfigError(str(exc)) from None
        self.contributors = contributors
        self.names = [c.name for c in contributors]
        self.n = len(contributors)
        self.shape = data_mod.image_shape(d)
        self.transform = {"source": d["source"], **self.shape}
        cache_path = self.path(".cache", "hashes.json")
        self.shard_keys = {}
        for c in contributors:
            self.shard_keys[c.name] = self.add(
                "prepare_shard", "data", self.transform, {"content": c.content_hash},
                lambda k: self.path("data", "shards", f"{k}.npz"),
                {"data": d, "name": c.name, "content_hash": c.content_hash, "cache": cache_path},
            )
        self.all_shards = [self.shard_keys[n] for n in self.names]
        rows = [{"contributor": c.name, "n_items": c.n_items, "content_hash": c.content_hash} for c in contributors]
        self.manifest_key = self.add(
            "prepare_data", "manifest", {"rows": rows}, {"shards": self.all_shards},
            lambda k: self.path("data", k, "manifest.parquet"),
        )

    def _shards_of(self, members) -> list[str]:
        """What models of `members` train on: their shards, or their encoded shards."""
        return sorted(self.train_shards[m] for m in members)

    def _add_encoded(self) -> None:
        """Latent families train on every shard encoded once by their frozen encoders."""
        spec = self.family.encode_spec(self.model_spec)
        self.train_shards = dict(self.shard_keys)
        if spec is None:
            return
        job = {"family": self.family.name, "family_runtime": self.family_runtime, "device": self.device,
               "threads": self.threads, "batch_size": self.cfg["generate"]["batch_size"]}
        for name in self.names:
            self.train_shards[name] = self.add(
                "encode", "encode", spec, {"shard": self.shard_keys[name]},
                lambda k: self.path("data", "encoded", f"{k}.npz"), job,
            )

    # ------------------------------------------------------------ reference set

    def _add_reference(self) -> None:
        ref = self.cfg["reference"]
        if ref == "data" or (isinstance(ref, dict) and ref.get("source") == "data"):
            labels = {lab for c in self.contributors for lab in c.labels}
            self.reference = {"source": "data", "labelled": -1 not in labels, "n_classes": len(labels - {-1}),
                              "n_contributors": self.n, "stats_file": None}
            self.reference_key = self.add(
                "reference_data", "reference_data", {"source": "data", **self.transform},
                {"shards": self.all_shards}, lambda k: self.path("data", "reference", f"{k}.npz"),
            )
            return
        if ref["source"] == "stats":
            path = Path(ref.get("file") or "")
            if not path.is_file():
                raise ConfigError(f"reference.file {path} does not exist: give a .npz with mu and sigma")
            from .artifacts import file_sha256

            digest = self._cache.get_or_compute(path, lambda: {"sha256": file_sha256(path)})
            self.reference = {"source": "stats", "labelled": False, "n_classes": 0, "n_contributors": self.n,
                              "stats_file": str(path), "stats_sha256": digest["sha256"]}
            self.reference_key = None
            return
        try:
            groups, labelled = data_mod.describe_reference(ref, self._cache)
        except data_mod.DataError as exc:
            raise ConfigError(f"invalid config: reference: {exc}") from None
        items = [h for g in groups for h in g.item_hashes]
        labels = [lab for g in groups for lab in g.labels]
        self.reference = {"source": ref["source"], "labelled": labelled, "n_classes": len(set(labels) - {-1}),
                          "n_contributors": self.n, "stats_file": None}
        self.reference_key = self.add(
            "reference_data", "reference_data",
            {"source": ref["source"], **self.transform,
             "content": data_mod.combine_hashes([f"{h}:{lab}" for h, lab in zip(items, labels)])},
            {}, lambda k: self.path("data", "reference", f"{k}.npz"),
            {"reference": ref, **self.shape, "cache": self.path(".cache", "hashes.json")},
        )

    # ------------------------------------------------------------ models

    def _train_job(self, section: dict, members, desc: str, **more) -> dict:
        return {"training": section, "members": list(members), "desc": desc, "family": self.family.name,
                "family_runtime": self.family_runtime, "device": self.device, "precision": self.cfg["precision"],
                **more}

    def _add_models(self) -> None:
        cfg = self.cfg
        try:
            data = {**self.shape, "captions": bool(cfg["data"].get("caption_column"))}
            self.model_spec = self.family.resolve(cfg["model"], data, self._cache)
            self.family_runtime = self.family.runtime(cfg["model"])
        except ValueError as exc:
            raise ConfigError(f"invalid config: {exc}") from None
        self.n_parameters = self.family.estimate_parameters(self.model_spec)
        self.n_trainable = self.family.estimate_trainable(self.model_spec)
        self.init_key = self.add(
            "init_model", "init_model", {"family": self.family.name, **self.model_spec}, {},
            lambda k: self.path("models", "init", k),
            {"family": self.family.name, "family_runtime": self.family_runtime},
        )
        self._add_encoded()
        self.full_key = self._retrain(self.names, "train_full", lambda k: self.path("models", "full", k))
        prune = cfg["prune"]
        self.pruned_key = self.add(
            "prune", "prune",
            {"ratio": prune["ratio"], "importance": prune["importance"], "training": _recipe(prune["training"])},
            {"start": self.full_key, "shards": self._shards_of(self.names)},
            lambda k: self.path("models", "pruned", k),
            self._train_job(prune["training"], self.names, "prune", ratio=prune["ratio"],
                            importance=prune["importance"], threads=self.train_threads),
        )
        self.coalitions: dict[str, tuple[str, ...]] = {}  # coalition model key -> members

    def init_key_of(self, seed: int = 0) -> str:
        """The untrained model; `seed` > 0 offsets the model's seed (another retrain replicate)."""
        if not seed:
            return self.init_key
        spec = {**self.model_spec, "seed": self.model_spec.get("seed", 0) + seed}
        return self.add("init_model", "init_model", {"family": self.family.name, **spec}, {},
                        lambda k: self.path("models", "init", k),
                        {"family": self.family.name, "family_runtime": self.family_runtime})

    def _retrain(self, members, rule: str, path, seed: int = 0) -> str:
        """Train `members` from scratch with train_full's recipe. Replicate `seed` > 0 offsets the
        model's and the recipe's seeds; replicate 0 is the artifact every other use shares."""
        section = dict(self.cfg["train_full"])
        if seed:
            section["seed"] = section["seed"] + seed
        threads = self.train_threads if rule == "train_full" else self.threads
        desc = "train_full" if rule == "train_full" else f"retrain[{len(members)}/{self.n}]"
        if seed:
            desc += f" seed+{seed}"
        return self.add(
            rule, "train", {"strategy": "retrain", "recipe": _recipe(section)},
            {"start": self.init_key_of(seed), "shards": self._shards_of(members)}, path,
            self._train_job(section, members, desc, threads=threads),
        )

    def model_key(self, members, strategy: str | None = None, seed: int = 0) -> str:
        """The key of the model that stands for coalition `members` under `strategy`
        (`seed`: the retrain replicate; only the retrain strategy has replicates)."""
        from .strategies import get_strategy

        strategy = strategy or self.cfg["fine_tune"]["strategy"]
        members = tuple(members)
        if seed and strategy != "retrain":
            raise ValueError(f"only retrain has seed replicates, not {strategy}")
        cached = self._model_keys.get((strategy, members, seed))
        if cached is not None:
            return cached
        if not members:
            key = self.init_key_of(seed)
        elif len(members) == self.n:
            key = self.full_key if not seed else self._retrain(
                members, "train_full", lambda k: self.path("models", "full", k), seed)
        else:
            s = get_strategy(strategy)
            path = lambda k: self.path("coalitions", k, "model")  # noqa: E731
            if s.start == "init":
                key = self._retrain(members, "fine_tune", path, seed)
            else:
                trained = members if s.data == "members" else tuple(n for n in self.names if n not in members)
                section = _section(self.cfg, s.recipe)
                start = {"full": self.full_key, "pruned": self.pruned_key}[s.start]
                key = self.add(
                    "fine_tune", "fine_tune", {"strategy": s.name, "recipe": _recipe(section)},
                    {"start": start, "shards": self._shards_of(trained)}, path,
                    self._train_job(section, trained, f"{s.name}[{len(members)}/{self.n}]", ascent=s.ascent,
                                    threads=self.threads),
                )
            self.coalitions[key] = members
        self._model_keys[(strategy, members, seed)] = key
        return key

    # ------------------------------------------------------------ features and scores

    def _resolve_extractors(self) -> None:
        from .extractors import get_extractor, in_order
        from .properties import get as get_property

        feats = self.cfg["features"]
        try:
            props = [get_property(p) for p in self.properties]
        except ValueError as exc:
            raise ConfigError(f"invalid config: {exc}") from None
        self.extractor_specs, self.reference_stats = {}, {}
        todo = sorted({p.extractor for p in props})
        while todo:  # the properties' extractors and those they derive from
            name = todo.pop(0)
            if name in self.extractor_specs:
                continue
            ext = get_extractor(name)
            try:
                spec = ext.resolve(feats.get(name, {}), self.reference, self._cache)
            except ValueError as exc:
                raise ConfigError(f"invalid config: features.{name}: {exc}") from None
            self.extractor_specs[name] = spec
            if ext.uses(spec):
                todo.append(ext.uses(spec))
        if self.reference["source"] == "stats":
            bad = [p.name for p in props if p.needs_reference_features or p.extractor not in ("inception", "aesthetic")]
            if bad:
                raise ConfigError(
                    f"invalid config: properties {bad} need reference images, but reference.source is "
                    "'stats' (a mean and covariance of Inception pool3 features only)"
                )
        # What the jobs need besides the keyed specs (file paths), per extractor.
        self.extractor_runtime = {n: get_extractor(n).runtime(feats.get(n, {})) for n in self.extractor_specs}
        self.networks = {}
        if "classifier" in self.extractor_specs:
            clf = feats["classifier"]
            parents = ({"reference": self.reference_key} if self.reference["labelled"]
                       else {"shards": self.all_shards})
            self.networks["classifier"] = self.add(
                "train_classifier", "classifier", self.extractor_specs["classifier"], parents,
                lambda k: self.path("models", "classifier", k),
                {"min_accuracy": clf["min_accuracy"], "device": self.device, "threads": self.train_threads},
            )
        for name, spec in self.extractor_specs.items():
            if not get_extractor(name).has_reference:
                continue
            chain = in_order([name], self.extractor_specs)
            job = {"extractor": name, "runtime": {n: self.extractor_runtime[n] for n in chain},
                   "specs": {n: self.extractor_specs[n] for n in chain}, "device": self.device,
                   "batch_size": feats["batch_size"], "threads": self.train_threads}
            parents = {}
            if self.reference_key:
                parents["images"] = self.reference_key
            for n in chain:
                if n in self.networks:
                    parents[n] = self.networks[n]
            keyed = {"extractor": name, **spec}
            if len(chain) > 1:  # what it derives from
                keyed["uses"] = {n: self.extractor_specs[n] for n in chain[:-1]}
            if self.reference["source"] == "stats":
                keyed = {**keyed, "stats_sha256": self.reference["stats_sha256"]}
                job["stats_file"] = self.reference["stats_file"]
            self.reference_stats[name] = self.add(
                "reference_stats", "reference_stats", keyed, parents,
                lambda k: self.path("references", f"{k}.npz"), job,
            )
        self.generate_spec = {k: v for k, v in self.cfg["generate"].items() if k != "batch_size"}
        try:
            self.generate_spec = self.family.resolve_generate(self.generate_spec, self.model_spec, self.cfg["model"])
        except ValueError as exc:
            raise ConfigError(f"invalid config: {exc}") from None
        steps = self.generate_spec.get("inference_steps")
        trained = self.model_spec.get("scheduler", {}).get("num_train_timesteps")
        if steps and trained and steps > trained:
            raise ConfigError(f"invalid config: generate.inference_steps {steps} exceeds the model's "
                              f"{trained} training timesteps (model.num_train_timesteps); lower it")
        self.features_spec = {"extractors": self.extractor_specs}
        self.score_spec = {"properties": sorted(self.properties), "options": self.cfg["scores"]}

    def score_key(self, model: str) -> str:
        """The score node of a model (its generate -> features -> score chain)."""
        key = self._score_keys.get(model)
        if key is None:
            key = self._score_keys[model] = self._add_scoring(model)
        return key

    def _add_scoring(self, model: str) -> str:
        """The generate -> features -> score chain of one model; returns the score key."""
        run = {"device": self.device, "precision": self.cfg["precision"], "threads": self.threads}
        samples = self.add(
            "generate", "generate", self.generate_spec, {"model": model},
            lambda k: self.path("coalitions", model, "samples", f"{k}.npz"),
            {**run, "family": self.family.name, "family_runtime": self.family_runtime,
             "batch_size": self.cfg["generate"]["batch_size"]},
        )
        features = self.add(
            "features", "features", self.features_spec, {"samples": samples, **self.networks},
            lambda k: self.path("coalitions", model, "features", f"{k}.npz"),
            {**run, "batch_size": self.cfg["features"]["batch_size"], "runtime": self.extractor_runtime},
        )
        return self.add(
            "score", "score", self.score_spec,
            {"features": features, **{f"reference_{n}": k for n, k in self.reference_stats.items()}},
            lambda k: self.path("coalitions", model, "scores", f"{k}.json"),
        )

    # ------------------------------------------------------------ estimators

    def _add_estimators(self) -> list[Estimator]:
        out = []
        for i, e in enumerate(self.cfg["estimators"]):
            est = self.add_estimator(e, f"estimators[{i}]")
            for j, other in enumerate(out):
                if other.key == est.key:
                    raise ConfigError(f"invalid config: estimators[{i}] repeats estimators[{j}] "
                                      "(same method, design and options); remove one")
            out.append(est)
        return out

    def add_estimator(self, e: dict, where: str) -> Estimator:
        """The design, coalition models, scores and estimate node of one estimator entry."""
        from .coalitions import sample_design
        from .coalitions import validate as validate_design
        from .estimators import DEFAULT_SCHEME, check_shrink, estimate
        from .strategies import get_strategy

        scheme = e["scheme"] or DEFAULT_SCHEME[e["method"]]
        strategy = e["strategy"] or self.cfg["fine_tune"]["strategy"]
        try:
            get_strategy(strategy)
            check_shrink(e["method"], e["shrink"])
            validate_design(self.n, e["budget"], scheme, e["method"])
            masks = sample_design(self.n, e["budget"], scheme, e["seed"])
        except ValueError as exc:
            raise ConfigError(f"invalid config: {where}: {exc}") from None
        try:  # a sampled design can still be degenerate (repeated coalitions)
            estimate(masks, np.zeros(len(masks)), 0.0, 0.0, e["method"], n_boot=0)
        except ValueError as exc:
            raise ConfigError(f"invalid config: {where}: budget {e['budget']} is too small: {exc}") from None
        design_spec = {"scheme": scheme, "budget": e["budget"], "seed": e["seed"], "players": self.names}
        design_key = self.add("coalition_sample", "design", design_spec, {},
                              lambda k: self.path("designs", f"{k}.parquet"))
        rep = e.get("replicate", 0)
        rows = [self.score_key(self.model_key(self._members(r), strategy, rep)) for r in masks]
        anchors = [self.score_key(self.model_key((), strategy, rep)),
                   self.score_key(self.model_key(self.names, strategy, rep))]
        spec = {"method": e["method"], "scheme": scheme, "budget": e["budget"], "seed": e["seed"],
                "n_boot": e["n_boot"], "shrink": e["shrink"], "strategy": strategy, "properties": self.properties}
        if rep:
            spec["replicate"] = rep
        key = self.add("shapley_estimate", "estimate", spec,
                       {"design": design_key, "empty": anchors[0], "full": anchors[1], "rows": rows},
                       lambda k: self.path("values", k))
        return Estimator(e["method"], scheme, e["budget"], e["seed"], e["n_boot"], e["shrink"], strategy,
                         design_key, key, masks, rep)

    # ------------------------------------------------------------ attribution baselines

    def _add_attributions(self) -> None:
        """Features per (method's featurizer, contributor shard) and of the full model's
        samples, then one attribute node per reported variant (docs/attribution.md)."""
        from .attribution import get_method

        self.attributions: list[Attribution] = []
        entries = self.cfg["attributions"]
        if not entries:
            return
        full_score = self.score_key(self.full_key)
        samples = self.nodes[self.nodes[full_score].parents["features"]].parents["samples"]
        context = {"n_items": sum(c.n_items for c in self.contributors), "n_trainable": self.n_trainable,
                   "num_train_timesteps": self.model_spec.get("scheduler", {}).get("num_train_timesteps", 1000),
                   "cfg": self.cfg, "cache": self._cache}
        labels: dict[str, int] = {}
        for i, entry in enumerate(entries):
            where = f"attributions[{i}] ({entry['method']})"
            method = get_method(entry["method"])
            try:
                fspec = method.featurizer(entry, context)
                variants = method.variants(entry)
            except ValueError as exc:
                raise ConfigError(f"invalid config: {where}: {exc}") from None
            runtime = method.runtime(entry, context) if method.kind == "similarity" else None
            train = [self._attribution_features(method, fspec, "train", n, runtime) for n in self.names]
            target = self._attribution_features(method, fspec, "target", samples, runtime)
            for v in variants:
                spec = {"method": method.name, "variant": v["spec"], "players": self.names,
                        "properties": self.properties}
                key = artifact_key("attribute", spec, {"train": train, "target": target, "scores": full_score})
                if key in self.nodes:
                    raise ConfigError(f"invalid config: {where} repeats an earlier attribution "
                                      "(same method and options); remove one")
                label = v["label"] if v["label"] not in labels else f"{v['label']}#{i}"
                labels[label] = i
                self.add("attribute", "attribute", spec, {"train": train, "target": target, "scores": full_score},
                         lambda k: self.path("attributions", k), {"label": label})
                self.attributions.append(Attribution(method.name, label, key))

    def _attribution_features(self, method, fspec: dict, role: str, item, runtime=None) -> str:
        """The features node of one contributor's items (`item` a name) or of the targets
        (`item` a samples key)."""
        gradient = fspec["kind"] == "gradient"
        if role == "train":
            items = (self.train_shards if gradient else self.shard_keys)[item]
        else:
            items = item
        parents = {"model": self.full_key, "source": items} if gradient else {"source": items}
        job = {"method": method.name, "role": role, "device": self.device, "threads": self.threads,
               "batch_size": self.cfg["features"]["batch_size"], "method_runtime": runtime or {}}
        if gradient:
            job.update(family=self.family.name, family_runtime=self.family_runtime, memory_mb=2048,
                       generate=self.generate_spec, encode_spec=self.family.encode_spec(self.model_spec))
        key = self.add("attribution_features", "attribution_features", {**fspec, "role": role}, parents,
                       lambda k: self.path("attributions", "features", f"{k}.npz"), job)
        if gradient:
            self.nodes[key].job.setdefault("scratch", self.scratch_dir(key))
        return key

    def _members(self, row) -> tuple[str, ...]:
        return tuple(n for n, m in zip(self.names, row) if m)

    # ------------------------------------------------------------ evaluations

    def _add_evaluations(self) -> None:
        """Retraining ground truth (the config's `evaluations:`): fidelity, LDS, counterfactual."""
        ev = self.cfg["evaluations"]
        self.evaluations: dict[str, str] = {}  # name -> node key
        self.fidelity_estimators: list[Estimator] = []
        if "fidelity" in ev:
            self._add_fidelity(ev["fidelity"])
        # Every estimate and attribution in the run; LDS and counterfactual judge them all.
        self.methods = list({e.key: e for e in self.estimators + self.fidelity_estimators}.values())
        self.methods += self.attributions
        labels = [e.label for e in self.methods]
        shared = sorted({x for x in labels if labels.count(x) > 1})
        if shared and ("lds" in ev or "counterfactual" in ev):
            raise ConfigError(f"invalid config: evaluations: estimators {shared} appear twice in the LDS and "
                              "counterfactual tables (they differ only in settings the label does not show, such "
                              "as n_boot or a loo / exact budget, which leave the values as they are); keep one")
        if "lds" in ev:
            self._add_lds(ev["lds"])
        if "counterfactual" in ev:
            self._add_counterfactual(ev["counterfactual"])

    def _add_fidelity(self, f: dict) -> None:
        from .strategies import get_strategy

        base = {k: f[k] for k in ("method", "scheme", "budget", "seed", "n_boot")}
        ests = [self.add_estimator({**base, "shrink": False, "strategy": s}, f"evaluations.fidelity ({s})")
                for s in f["strategies"]]
        ests += [self.add_estimator({**base, "shrink": False, "strategy": "retrain", "replicate": r},
                                    "evaluations.fidelity (retrain)") for r in range(f["retrain_replicates"])]
        self.fidelity_estimators = ests
        layout, models, setup = [], [], []
        for est in ests:
            keys = [self.model_key(self._members(r), est.strategy, est.replicate) for r in est.masks]
            start = get_strategy(est.strategy).start
            layout.append({"label": est.label, "strategy": est.strategy, "replicate": est.replicate,
                           "rows": len(keys), "setup": start == "pruned"})
            models += keys
            if start == "pruned":
                setup.append(self.pruned_key)
        spec = {"layout": [(x["strategy"], x["replicate"]) for x in layout], "properties": self.properties}
        self.evaluations["fidelity"] = self.add(
            "fidelity", "fidelity", spec,
            {"values": [e.key for e in ests], "rows": [k for e in ests for k in self.nodes[e.key].parents["rows"]],
             "models": models, "setup": sorted(set(setup))},
            lambda k: self.path("evaluation", "fidelity", k), {"layout": layout},
        )

    def _add_lds(self, lds: dict) -> None:
        from .evaluation import sample_subsets

        alphas = lds["alpha"] if isinstance(lds["alpha"], list) else [lds["alpha"]]
        scores = []
        for a in alphas:
            try:
                masks = sample_subsets(self.n, a, lds["subsets"], lds["seed"])
            except ValueError as exc:
                raise ConfigError(f"invalid config: evaluations.lds: {exc}") from None
            for row in masks:
                scores += [self.score_key(self.model_key(self._members(row), "retrain", s)) for s in lds["seeds"]]
        spec = {"alphas": alphas, "subsets": lds["subsets"], "seed": lds["seed"], "seeds": lds["seeds"],
                "players": self.names, "properties": self.properties}
        self.evaluations["lds"] = self.add(
            "lds", "lds", spec, {"values": [e.key for e in self.methods], "scores": scores},
            lambda k: self.path("evaluation", "lds", k), {"labels": [e.label for e in self.methods]},
        )

    def _add_counterfactual(self, c: dict) -> None:
        methods = self.methods
        if c.get("methods"):
            known = {e.label: e for e in self.methods}
            unknown = [m for m in c["methods"] if m not in known]
            if unknown:
                raise ConfigError(f"invalid config: evaluations.counterfactual.methods: {unknown} are not methods "
                                  f"of this run; known: {sorted(known)}")
            methods = [known[m] for m in c["methods"]]
        labels = {"labels": [e.label for e in methods]}
        removal = self.add(
            "removal_sets", "removal_sets",
            {"fraction": c["fraction"], "players": self.names, "properties": self.properties},
            {"values": [e.key for e in methods]}, lambda k: self.path("evaluation", "removal", f"{k}.json"),
            labels,
        )
        # The checkpoint runs after the other evaluations: Snakemake 9 updating the DAG after a
        # checkpoint while a job the summary needs is still running can drop the summary.
        self._after[removal] = {"after": [self.evaluations[n] for n in ("fidelity", "lds") if n in self.evaluations]}
        self.evaluations["counterfactual"] = self.add(
            "counterfactual", "counterfactual", {"seeds": c["seeds"]}, {"removal": removal},
            lambda k: self.path("evaluation", "counterfactual", k), labels,
        )
        self.load_removal_sets()

    def load_removal_sets(self) -> bool:
        """Once the removal sets exist (a checkpoint), add their retrains; True when they do."""
        from .artifacts import CorruptArtifactError, read_json, verify_file

        key = self.evaluations.get("counterfactual")
        if key is None:
            return False
        if key in self._dynamic:
            return True
        path = self.nodes[self.nodes[key].parents["removal"]].path
        try:
            sets = read_json(verify_file(path))["sets"]
        except (OSError, ValueError, CorruptArtifactError):
            return False
        seeds = self.nodes[key].spec["seeds"]
        scores = [self.score_key(self.model_key([n for n in self.names if n not in s["removed"]], "retrain", seed))
                  for s in sets for seed in seeds]
        baseline = [self.score_key(self.model_key(self.names, "retrain", seed)) for seed in seeds]
        self._dynamic[key] = {"scores": scores, "baseline": baseline}
        return True

    # ------------------------------------------------------------ the summary tables

    def _add_summary(self) -> None:
        """The fixed-name tables of the run (values.csv, evaluation/*.csv, a sample grid)."""
        first = self.estimators[0]
        sizes = first.masks.sum(axis=1)
        picks = sorted({int(np.argmin(sizes)), int(np.argsort(sizes, kind="stable")[len(sizes) // 2]),
                        int(np.argmax(sizes))}, key=lambda i: sizes[i])
        models = [self.init_key, *(self.model_key(self._members(first.masks[i]), first.strategy) for i in picks),
                  self.full_key]
        features = [self.nodes[self.score_key(m)].parents["features"] for m in models]
        parents = {"values": [e.key for e in self.estimators + self.attributions],
                   "samples": [self.nodes[f].parents["samples"] for f in features], **self.evaluations}
        self.summary_outputs = {"values": self.path("values.csv"), "samples": self.path("report", "samples.png")}
        for name in self.evaluations:
            self.summary_outputs[name] = self.path("evaluation", f"{name}.csv")
        self.summary_key = self.add(
            "summary", "summary", {"tables": sorted(self.summary_outputs)}, parents,
            lambda k: self.path("summary", f"{k}.json"),
            {"outputs": self.summary_outputs, "labels": [e.label for e in self.estimators + self.attributions],
             "members": [list(self.coalitions.get(m, self.names if m == self.full_key else ())) for m in models]},
        )

    # ------------------------------------------------------------ views

    @property
    def evaluated(self) -> list[str]:
        """Every model that is generated from: the anchors and the coalitions."""
        return [self.nodes[self.nodes[s].parents["model"]].key for s in self.keys("generate")]

    def model_dir(self, key: str) -> str:
        return self.nodes[key].path

    def values_dir(self, est: Estimator) -> str:
        return self.nodes[est.key].path

    def design_path(self, est: Estimator) -> str:
        return self.nodes[est.design_key].path

    def targets(self) -> list[str]:
        return [self.nodes[self.manifest_key].path, *self.summary_outputs.values(), self.nodes[self.summary_key].path]

    def resources(self, rule: str) -> dict:
        """mem_mb and gpu of a rule's jobs, from the config and the model size."""
        from .devices import visible_gpus

        gpu = 0
        if rule in GPU_RULES and (self.device == "cuda" or (self.device == "auto" and visible_gpus() > 0)):
            gpu = 1
        mem = 1000
        if rule in ("init_model", "encode", "train_full", "prune", "fine_tune", "generate"):
            # Weights; gradients, Adam moments, EMA and checkpoint copies of what trains; activations.
            mem += 4 * (self.n_parameters + 5 * self.n_trainable) // 2**20 + 1500
        if rule == "attribution_features":
            mem += 4 * self.n_parameters // 2**20 + 2048 + 1500
        if rule in ("features", "reference_stats", "train_classifier"):
            mem += 2500 if "inception" in self.extractor_specs else 500
        return {"mem_mb": int(mem), "gpu": gpu}
