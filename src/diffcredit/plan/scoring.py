"""Plan nodes that score a model: samples, features (every extractor the properties
need, in one job), the networks trained extractors need, reference statistics, and
the properties. Plug-ins say what they need; nothing here names one."""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError


class ScoringNodes:
    def _resolve_extractors(self) -> None:
        from ..extractors import get_extractor
        from ..properties import get as get_property

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
            bad = [p.name for p in props
                   if p.needs_reference_features or not get_extractor(p.extractor).stats_reference]
            if bad:
                raise ConfigError(
                    f"invalid config: properties {bad} need reference images, but reference.source is "
                    "'stats' (a mean and covariance of Inception pool3 features only)"
                )
        # What the jobs need besides the keyed specs (file paths), per extractor.
        self.extractor_runtime = {n: get_extractor(n).runtime(feats.get(n, {})) for n in self.extractor_specs}
        self._add_networks()
        self._add_reference_stats()
        self._resolve_generate()
        self.features_spec = {"extractors": self.extractor_specs}
        # `own` draws are keyed as before the option existed, so their scores stay where they were;
        # without replicates the draws change nothing.
        scores = self.cfg["scores"]
        drop = scores["image_draws"] == "own" or not scores["image_bootstrap"]
        options = {k: v for k, v in scores.items() if not (k == "image_draws" and drop)}
        self.score_spec = {"properties": sorted(self.properties), "options": options}

    def _add_networks(self) -> None:
        """The networks of trained extractors, learnt from the labelled reference images
        (or, unlabelled, from the contributors as classes)."""
        from ..extractors import get_extractor

        self.networks = {}
        for name, spec in self.extractor_specs.items():
            ext = get_extractor(name)
            if not ext.trained:
                continue
            parents = ({"reference": self.reference_key} if self.reference["labelled"]
                       else {"shards": self.all_shards})
            settings = self.cfg["features"].get(name, {})
            self.networks[name] = self.add(
                "train_classifier", spec, parents,
                {**ext.training_settings(settings), "device": self.device, "threads": self.train_threads},
            )
            folder = Path(self.nodes[self.networks[name]].path)
            if folder.is_dir():  # trained before: still acceptable under today's settings?
                try:
                    ext.check_network(settings, folder)
                except (ValueError, OSError) as exc:
                    raise ConfigError(f"invalid config: features.{name}: {exc}") from None

    def _add_reference_stats(self) -> None:
        from ..extractors import get_extractor, in_order

        for name, spec in self.extractor_specs.items():
            if not get_extractor(name).has_reference:
                continue
            chain = in_order([name], self.extractor_specs)
            job = {"extractor": name, "runtime": {n: self.extractor_runtime[n] for n in chain},
                   "specs": {n: self.extractor_specs[n] for n in chain}, "device": self.device,
                   "batch_size": self.cfg["features"]["batch_size"], "threads": self.train_threads}
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
            self.reference_stats[name] = self.add("reference_stats", keyed, parents, job)

    def _resolve_generate(self) -> None:
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
            "generate", self.generate_spec, {"model": model},
            {**run, "family": self.family.name, "family_runtime": self.family_runtime,
             "batch_size": self.cfg["generate"]["batch_size"]}, mkey=model,
        )
        features = self.add(
            "features", self.features_spec, {"samples": samples, **self.networks},
            {**run, "batch_size": self.cfg["features"]["batch_size"], "runtime": self.extractor_runtime}, mkey=model,
        )
        return self.add(
            "score", self.score_spec,
            {"features": features, **{f"reference_{n}": k for n, k in self.reference_stats.items()}}, mkey=model,
        )
