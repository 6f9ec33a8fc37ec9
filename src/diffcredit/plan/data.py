"""Plan nodes of the data: one shard per contributor, the manifest, the encoded shards
of latent families, and the reference images."""

from __future__ import annotations

from pathlib import Path

from .. import data as data_mod
from ..config import ConfigError
from ..data.contributors import relative_note


def data_folders(data: dict) -> dict[str, str]:
    """The folders a `data` section reads images from, by the key that names them."""
    folders = {"data.root": data["root"]} if data.get("root") else {}
    folders.update({f"data.contributors {c.get('name')}": c["path"] for c in data.get("contributors") or []})
    return folders


class DataNodes:
    def _add_data(self) -> None:
        d = self.cfg["data"]
        self._check_results_outside(d)
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
                "prepare_shard", self.transform, {"content": c.content_hash},
                {"data": d, "name": c.name, "content_hash": c.content_hash, "cache": cache_path},
            )
        self.all_shards = [self.shard_keys[n] for n in self.names]  # the real data (not the canaries)
        rows = [{"contributor": c.name, "n_items": c.n_items, "content_hash": c.content_hash} for c in contributors]
        self.manifest_key = self.add("prepare_data", {"rows": rows}, {"shards": self.all_shards})
        self._add_canaries()

    def _add_canaries(self) -> None:
        """Canaries join the players after the real contributors, each a shard made from
        its original's shard or from the pooled real shards."""
        from ..canaries import resolve

        try:
            self.canaries = resolve(self.cfg["canaries"], {c.name: c.n_items for c in self.contributors})
        except ValueError as exc:
            raise ConfigError(f"invalid config: {exc}") from None
        for c in self.canaries:
            sources = [self.shard_keys[c["of"]]] if c["of"] else self.all_shards
            # Keyed by what it is made of (the parent shards cover the original), not by names.
            keyed = {k: c[k] for k in ("kind", "size", "strength", "seed")}
            self.shard_keys[c["name"]] = self.add("canary_shard", {**keyed, **self.transform}, {"shards": sources},
                                                  {"name": c["name"]})
            self.names.append(c["name"])
        self.n = len(self.names)

    def _check_results_outside(self, d: dict) -> None:
        """A results folder inside a data folder would be read as a contributor (or as
        images of one), and its artifacts would change the data they were made from."""
        results = self.results.expanduser().resolve()
        if results == Path(results.anchor):
            raise ConfigError(f"invalid config: results {self.results} is the file system's root: a run would put "
                              "its folders among the system's; choose a folder of its own")
        for what, folder in data_folders(d).items():
            if results.is_relative_to(Path(folder).expanduser().resolve()):
                raise ConfigError(f"invalid config: results {self.results} is inside {what} {folder}: its "
                                  "artifacts would be read as images; choose a results folder outside the data")

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
            self.train_shards[name] = self.add("encode", spec, {"shard": self.shard_keys[name]}, job)

    def _add_shard_set(self) -> None:
        """The stamp that every training shard exists, which unfinished training jobs wait
        for instead of each member's shard (`rule_inputs`)."""
        self.shard_set_key = self.add("shard_set", {}, {"shards": sorted(set(self.train_shards.values()))})

    def _add_reference(self) -> None:
        ref = self.cfg["reference"]
        if ref == "data" or (isinstance(ref, dict) and ref.get("source") == "data"):
            labels = {lab for c in self.contributors for lab in c.labels}
            self.reference = {"source": "data", "labelled": -1 not in labels, "n_classes": len(labels - {-1}),
                              "n_contributors": len(self.all_shards), "stats_file": None}
            self.reference_key = self.add("reference_data", {"source": "data", **self.transform},
                                          {"shards": self.all_shards})
            return
        if ref["source"] == "stats":
            path = Path(ref.get("file") or "")
            if not path.is_file():
                raise ConfigError(f"reference.file {path} does not exist{relative_note(path)}: give a .npz with mu "
                                  "and sigma")
            from ..artifacts import file_sha256

            digest = self._cache.get_or_compute(path, lambda: {"sha256": file_sha256(path)})
            self.reference = {"source": "stats", "labelled": False, "n_classes": 0, "n_contributors": len(self.all_shards),
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
                          "n_contributors": len(self.all_shards), "stats_file": None}
        self.reference_key = self.add(
            "reference_data",
            {"source": ref["source"], **self.transform,
             "content": data_mod.combine_hashes([f"{h}:{lab}" for h, lab in zip(items, labels)])},
            {}, {"reference": ref, **self.shape, "cache": self.path(".cache", "hashes.json")},
        )
