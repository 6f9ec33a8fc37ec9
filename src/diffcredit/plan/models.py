"""Plan nodes of the models: v(empty), v(N), the pruned model, and the model that
stands for each coalition under each strategy (retrain replicates included)."""

from __future__ import annotations

from ..config import ConfigError

# Keys of training sections that change how a run is checkpointed, not what it computes.
_NOT_IN_KEY = {"checkpoint_every"}
# Recipe keys added later stay out of the key at their default, so that adding them
# moved no existing artifact.
_LATER_DEFAULTS = {"schedule": "constant"}


def recipe(section: dict) -> dict:
    """The keyed part of a training section."""
    return {k: v for k, v in section.items()
            if k not in _NOT_IN_KEY and not (k in _LATER_DEFAULTS and v == _LATER_DEFAULTS[k])}


def _section(cfg: dict, dotted: str) -> dict:
    out = cfg
    for part in dotted.split("."):
        out = out[part]
    return out


class ModelNodes:
    def _train_job(self, section: dict, members, desc: str, **more) -> dict:
        return {"training": section, "members": list(members), "desc": desc, "family": self.family.name,
                "family_runtime": self.family_runtime, "device": self.device, "precision": self.cfg["precision"],
                **self._condition_labels(members), **more}

    def _condition_mode(self, labelled: bool) -> str | None:
        """What the model is conditioned on (data.condition), or None for an unconditional family."""
        kinds, asked = self.family.condition_kinds, self.cfg["data"].get("condition", "auto")
        if asked == "auto":
            if not kinds:
                return None
            return "contributor" if kinds[0] == "class" and not labelled else kinds[0]
        if asked not in kinds:
            can = f"takes data.condition {' or '.join(kinds)}" if kinds else "is not conditional"
            raise ConfigError(f"invalid config: data.condition: {asked} does not apply to model.family "
                              f"{self.family.name}, which {can}")
        if asked == "class" and not labelled:
            raise ConfigError("invalid config: data.condition: class needs labelled data, and this source's images "
                              "have no labels; use data.condition: contributor")
        return asked

    def _condition_labels(self, members) -> dict:
        """For data.condition: contributor, each member shard's label: the contributor's
        index among every player's shard, by key (content), so a rename changes nothing."""
        if not self.contributor_labels:
            return {}
        return {"condition_labels": {self.nodes[self.train_shards[m]].path: self.contributor_labels[m]
                                     for m in members}}

    def _add_models(self) -> None:
        cfg = self.cfg
        labels = {lab for c in self.contributors for lab in c.labels}
        labelled = bool(labels) and -1 not in labels  # -1: unlabelled
        self.condition_mode = self._condition_mode(labelled)
        try:
            classes = len(self.names) if self.condition_mode == "contributor" else max(labels) + 1 if labelled else 0
            data = {**self.shape, "captions": bool(cfg["data"].get("caption_column")), "classes": classes}
            self.model_spec = self.family.resolve(cfg["model"], data, self._cache)
            if self.condition_mode == "contributor":
                self.model_spec = {**self.model_spec, "condition": "contributor"}
            self.family_runtime = self.family.runtime(cfg["model"])
        except ValueError as exc:
            raise ConfigError(f"invalid config: {exc}") from None
        try:
            self.family.check_prune(self.model_spec, cfg["prune"]["ratio"])
        except ValueError as exc:
            raise ConfigError(f"invalid config: {exc}") from None
        self.n_parameters = self.family.estimate_parameters(self.model_spec)
        self.n_trainable = self.family.estimate_trainable(self.model_spec)
        self._model_keys: dict = {}
        self._labels_name_players = False  # checked once, by the first proxy model
        self.init_key = self.init_key_of(0)
        self._add_encoded()
        self.contributor_labels = {}  # data.condition: contributor: each player's label
        if self.condition_mode == "contributor":  # its training shard's rank by key (content)
            order = sorted(self.train_shards[n] for n in self.names)
            self.contributor_labels = {n: order.index(self.train_shards[n]) for n in self.names}
        self._add_shard_set()
        self.full_key = self._retrain(self.names, "train_full")
        prune = cfg["prune"]
        self.pruned_key = self.add(
            "prune",
            {"ratio": prune["ratio"], "importance": prune["importance"], "training": recipe(prune["training"])},
            {"start": self.full_key, "shards": self._shards_of(self.names)},
            self._train_job(prune["training"], self.names, "prune", ratio=prune["ratio"],
                            importance=prune["importance"], threads=self.train_threads),
        )
        self.coalitions: dict[str, tuple[str, ...]] = {}  # coalition model key -> members

    def init_key_of(self, seed: int = 0) -> str:
        """The untrained model; `seed` > 0 offsets the model's seed (another retrain replicate)."""
        spec = self.model_spec if not seed else {**self.model_spec, "seed": self.model_spec.get("seed", 0) + seed}
        return self.add("init_model", {"family": self.family.name, **spec}, {},
                        {"family": self.family.name, "family_runtime": self.family_runtime})

    def _retrain(self, members, stage: str, seed: int = 0) -> str:
        """Train `members` from scratch with train_full's recipe. Replicate `seed` > 0 offsets the
        model's and the recipe's seeds; replicate 0 is the artifact every other use shares."""
        section = dict(self.cfg["train_full"])
        if seed:
            section["seed"] = section["seed"] + seed
        threads = self.train_threads if stage == "train_full" else self.threads
        desc = "train_full" if stage == "train_full" else f"retrain[{len(members)}/{self.n}]"
        if seed:
            desc += f" seed+{seed}"
        return self.add(
            stage, {"strategy": "retrain", "recipe": recipe(section)},
            {"start": self.init_key_of(seed), "shards": self._shards_of(members)},
            self._train_job(section, members, desc, threads=threads), key_as="train_full",
        )

    def _conditioned(self, members, strategy: str, seed: int) -> str:
        """The full model conditioned on the coalition's labels or captions (strategy proxy)."""
        if not self.family.conditional:
            raise ConfigError(f"invalid config: strategy {strategy} samples the full model conditioned on a "
                              f"coalition's labels, and model.family {self.family.name} has no conditioning; use a "
                              "conditional family (ddpm_cond, ldm_cond, or a text family with per-image captions)")
        if seed:
            raise ConfigError(f"invalid config: strategy {strategy} trains nothing, so it has no training "
                              "randomness to replicate; drop training_noise for it")
        if self.condition_mode == "caption":
            if not self.cfg["data"].get("caption_column"):
                raise ConfigError(f"invalid config: strategy {strategy} samples a coalition's model from its members' "
                                  "own captions, and every image has the caption model.prompt; give per-image "
                                  "captions that tell contributors apart (data.caption_column)")
            return self.add("condition", {"strategy": strategy, "condition": "caption"},
                            {"start": self.full_key, "shards": sorted(self.shard_keys[m] for m in members)},
                            {"family": self.family.name, "family_runtime": self.family_runtime,
                             "members": list(members), "device": "cpu", "threads": self.threads,
                             "condition": "caption"})
        if not self._labels_name_players and self.condition_mode != "contributor":
            owners: dict[int, list[str]] = {}
            for c in self.contributors:
                for label in sorted(set(c.labels)):
                    owners.setdefault(label, []).append(c.name)
            shared = {label: names for label, names in owners.items() if len(names) > 1}
            if shared:
                label, names = next(iter(shared.items()))
                raise ConfigError(
                    f"invalid config: strategy {strategy} tells coalitions apart only by their labels, and "
                    f"{len(shared)} label(s) are held by several contributors (label {label}: "
                    f"{', '.join(names[:4])}); condition on the contributor (data.condition: contributor) or use "
                    "contributors that are classes (by: class)")
            if self.canaries:
                raise ConfigError(f"invalid config: strategy {strategy} tells coalitions apart only by their "
                                  "labels, and canaries carry the labels of the images they are made from; "
                                  "condition on the contributor (data.condition: contributor) or run the "
                                  "canaries with a training strategy (sft)")
            self._labels_name_players = True
        return self.add("condition", {"strategy": strategy}, {"start": self.full_key,
                                                              "shards": self._shards_of(members)},
                        {"family": self.family.name, "family_runtime": self.family_runtime,
                         "members": list(members), "device": "cpu", "threads": self.threads,
                         **self._condition_labels(members)})

    def model_key(self, members, strategy: str | None = None, seed: int = 0) -> str:
        """The key of the model that stands for coalition `members` under `strategy`
        (`seed` > 0: a replicate whose training seed is offset by `seed`; the empty and
        full coalitions of a fine-tuning strategy are its fixed anchors and have none)."""
        from ..strategies import get_strategy

        strategy = strategy or self.cfg["fine_tune"]["strategy"]
        members = tuple(members)
        cached = self._model_keys.get((strategy, members, seed))
        if cached is not None:
            return cached
        s = get_strategy(strategy)
        if seed and s.start != "init" and len(members) in (0, self.n):
            raise ValueError(f"{strategy}'s empty and full coalitions are its fixed anchors: no seed replicates")
        if not s.trains and self.condition_mode == "caption":
            # Prompts from the coalition's own captions, the anchors' too: none (the empty prompt) and all.
            key = self._conditioned(members, s.name, seed)
            if 0 < len(members) < self.n:
                self.coalitions[key] = members
        elif not members:
            key = self.init_key_of(seed)
        elif len(members) == self.n:
            key = self.full_key if not seed else self._retrain(members, "train_full", seed)
        else:
            if s.start == "init":
                key = self._retrain(members, "fine_tune", seed)
            elif not s.trains:
                key = self._conditioned(members, s.name, seed)
            else:
                trained = members if s.data == "members" else tuple(n for n in self.names if n not in members)
                section = _section(self.cfg, s.recipe)
                if seed:
                    section = {**section, "seed": section["seed"] + seed}
                desc = f"{s.name}[{len(members)}/{self.n}]" + (f" seed+{seed}" if seed else "")
                start = {"full": self.full_key, "pruned": self.pruned_key}[s.start]
                key = self.add(
                    "fine_tune", {"strategy": s.name, "recipe": recipe(section)},
                    {"start": start, "shards": self._shards_of(trained)},
                    self._train_job(section, trained, desc, ascent=s.ascent, threads=self.threads),
                )
            self.coalitions[key] = members
        self._model_keys[(strategy, members, seed)] = key
        return key
