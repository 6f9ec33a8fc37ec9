"""The whole workflow as a table of content-addressed nodes, built from a config.

A Plan is built when the Snakefile is parsed (and again by every cluster job,
which re-parses it), so it only describes: contributor hashes come from a cache
keyed by (path, size, mtime); no model or image is loaded, torch is not imported.
Each concern adds its nodes in its own module (data, models, scoring, estimates,
attributions, evaluations, summary); the stage records (diffcredit.stages) give
every node's key namespace, path and resources. Where the artifacts live: the
`output` of each record in stages/__init__.py.
"""

from __future__ import annotations

from pathlib import Path

from .. import data as data_mod
from ..config import ConfigError, validate
from ..stages import STAGES
from .attributions import AttributionNodes, PlannedAttribution
from .data import DataNodes
from .estimates import EstimateNodes, PlannedEstimate
from .evaluations import EvaluationNodes
from .models import ModelNodes
from .resources import Resources
from .scoring import ScoringNodes
from .summary import SummaryNodes
from .table import Node, NodeTable

__all__ = ["Node", "Plan", "PlannedAttribution", "PlannedEstimate"]


def _results_folder(value: str) -> Path:
    """The results folder, refused when empty or when it or a parent is a file."""
    if not value.strip():
        raise ConfigError("results is empty: give the folder for the artifacts and tables, e.g. 'results'")
    path = Path(value)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise ConfigError(f"results {value!r}: {p} is a file, not a folder; choose another results folder")
    return path


class Plan(NodeTable, DataNodes, ModelNodes, ScoringNodes, EstimateNodes, AttributionNodes, EvaluationNodes,
           SummaryNodes, Resources):
    """The node table of a config. `read_only`: build it without writing anything
    (status and gc), reading the hash cache but never saving it."""

    def __init__(self, config: dict, schema: dict | str | Path, read_only: bool = False):
        from ..families import get_family

        cfg = validate(config, schema)
        self.cfg = cfg
        self.results = _results_folder(cfg["results"])
        self._init_table(str(self.results))
        self.threads = cfg["threads"]
        self.train_threads = cfg["train_threads"]
        self.device = cfg["device"]
        self._score_keys: dict = {}
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
        self.extra_targets = [k for s in STAGES.values() for k in s.plan_nodes(self)]
        self._cache.flush()

    def load_checkpoints(self) -> bool:
        """Add the nodes that checkpoints written since the plan was built make known:
        an adaptive estimate's next rounds, the counterfactual's retrains. True when the
        counterfactual's retrains are known."""
        for key in self._adaptive:
            self._load_rounds(key)
        return self._load_counterfactual()
