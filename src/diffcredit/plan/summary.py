"""The summary node (the run's fixed-name tables) and the views that read the table."""

from __future__ import annotations

import numpy as np


class SummaryNodes:
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
        job = {}
        if self.canaries:
            from ..properties import get as get_property

            self.summary_outputs["canaries"] = self.path("canaries.csv")
            job = {"canaries": self.canaries, "quality": {p: get_property(p).quality for p in self.properties}}
        self.summary_key = self.add(
            "summary", {"tables": sorted(self.summary_outputs)}, parents,
            {"outputs": self.summary_outputs, "labels": [e.label for e in self.estimators + self.attributions],
             "members": [list(self.coalitions.get(m, self.names if m == self.full_key else ())) for m in models],
             **job},
        )

    @property
    def evaluated(self) -> list[str]:
        """Every model that is generated from: the anchors and the coalitions."""
        return [self.nodes[self.nodes[s].parents["model"]].key for s in self.keys("generate")]

    def model_dir(self, key: str) -> str:
        return self.nodes[key].path

    def values_dir(self, est) -> str:
        return self.nodes[est.key].path

    def design_path(self, est) -> str:
        return self.nodes[est.design_key].path

    def targets(self) -> list[str]:
        return [self.nodes[self.manifest_key].path, *self.summary_outputs.values(), self.nodes[self.summary_key].path,
                *(self.nodes[k].path for k in self.extra_targets)]
