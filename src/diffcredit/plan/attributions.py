"""Plan nodes of the attribution baselines: features per (method's featurizer,
contributor shard) and of the full model's samples, then one attribute node per
reported variant (docs/attribution.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError
from ..keys import artifact_key


@dataclass(frozen=True)
class PlannedAttribution:
    method: str
    label: str
    key: str  # the attribute node: values in the estimators' format


class AttributionNodes:
    def _add_attributions(self) -> None:
        from ..attribution import get_method

        self.attributions: list[PlannedAttribution] = []
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
            runtime = method.runtime(entry, context)
            train = [self._attribution_features(method, fspec, "train", n, runtime) for n in self.names]
            target = self._attribution_features(method, fspec, "target", samples, runtime)
            parents = {"train": train, "target": target, "scores": full_score}
            for v in variants:
                spec = {"method": method.name, "variant": v["spec"], "players": self.names,
                        "properties": self.properties}
                if artifact_key("attribute", spec, parents) in self.nodes:
                    raise ConfigError(f"invalid config: {where} repeats an earlier attribution "
                                      "(same method and options); remove one")
                label = v["label"] if v["label"] not in labels else f"{v['label']}#{i}"
                labels[label] = i
                key = self.add("attribute", spec, parents, {"label": label})
                self.attributions.append(PlannedAttribution(method.name, label, key))

    def _attribution_features(self, method, fspec: dict, role: str, item, runtime: dict) -> str:
        """The features node of one contributor's items (`item` a name) or of the targets
        (`item` a samples key). Methods that read the model's gradients featurize what the
        model trains on (encoded shards of latent families), with the full model as a parent."""
        if role == "train":
            items = (self.train_shards if method.reads_model else self.shard_keys)[item]
        else:
            items = item
        parents = {"model": self.full_key, "source": items} if method.reads_model else {"source": items}
        job = {"method": method.name, "role": role, "device": self.device, "threads": self.threads,
               "batch_size": self.cfg["features"]["batch_size"], "method_runtime": runtime}
        if method.reads_model:
            job.update(family=self.family.name, family_runtime=self.family_runtime, memory_mb=2048,
                       generate=self.generate_spec, encode_spec=self.family.encode_spec(self.model_spec),
                       **(self._condition_labels([item]) if role == "train" else {}))
        return self.add("attribution_features", {**fspec, "role": role}, parents, job)
