"""Plan nodes of the estimates: each estimator entry's design, the models and scores
of its coalitions, and the estimate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ConfigError


@dataclass(frozen=True)
class PlannedEstimate:
    """One estimator entry of the config, as planned."""

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
    retrains: int = 0  # the design's first rows also retrained: a corrected estimate

    @property
    def label(self) -> str:
        rep = f"-seed+{self.replicate}" if self.replicate else ""
        design = f"-design-seed{self.seed}" if self.seed else ""
        size = len(self.masks)  # the budget, or the fixed size of a loo / exact design
        corrected = f"+retrain{self.retrains}" if self.retrains else ""
        return (f"{self.method}{'-shrunk' if self.shrink else ''}-{self.scheme}-{size}{design}-{self.strategy}"
                f"{corrected}{rep}")


class EstimateNodes:
    def _members(self, row) -> tuple[str, ...]:
        return tuple(n for n, m in zip(self.names, row) if m)

    def _add_estimators(self) -> list[PlannedEstimate]:
        out = []
        for i, e in enumerate(self.cfg["estimators"]):
            est = self.add_estimator(e, f"estimators[{i}]")
            for j, other in enumerate(out):
                if other.key == est.key:
                    raise ConfigError(f"invalid config: estimators[{i}] repeats estimators[{j}] "
                                      "(same method, design and options); remove one")
            out.append(est)
        return out

    def add_estimator(self, e: dict, where: str) -> PlannedEstimate:
        """The design, coalition models, scores and estimate node of one estimator entry."""
        from ..coalitions import sample_design
        from ..coalitions import validate as validate_design
        from ..estimators import check_shrink, estimate, get_method
        from ..strategies import get_strategy

        scheme = e["scheme"] or get_method(e["method"]).default_scheme
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
        retrains = e.get("retrains", 0)
        if retrains:
            self._check_retrains(e, where, strategy, masks)
        design_spec = {"scheme": scheme, "budget": e["budget"], "seed": e["seed"], "players": self.names}
        design_key = self.add("coalition_sample", design_spec, {})
        rep = e.get("replicate", 0)
        models = [self.model_key(self._members(r), strategy, rep) for r in masks]
        rows = [self.score_key(m) for m in models]
        anchors = [self.score_key(self.model_key((), strategy, rep)),
                   self.score_key(self.model_key(self.names, strategy, rep))]
        spec = {"method": e["method"], "scheme": scheme, "budget": e["budget"], "seed": e["seed"],
                "n_boot": e["n_boot"], "shrink": e["shrink"], "strategy": strategy, "properties": self.properties}
        if rep:
            spec["replicate"] = rep
        parents = {"design": design_key, "empty": anchors[0], "full": anchors[1], "rows": rows, "models": models}
        if retrains:
            spec["retrains"] = retrains
            retrained = [self.model_key(self._members(r), "retrain") for r in masks[:retrains]]
            parents["retrained"] = [self.score_key(m) for m in retrained]
            parents["retrained_models"] = retrained
            parents["retrained_empty"] = self.score_key(self.model_key((), "retrain"))
            parents["retrained_full"] = self.score_key(self.model_key(self.names, "retrain"))
        key = self.add("shapley_estimate", spec, parents)
        return PlannedEstimate(e["method"], scheme, e["budget"], e["seed"], e["n_boot"], e["shrink"], strategy,
                               design_key, key, masks, rep, retrains)

    def _check_retrains(self, e: dict, where: str, strategy: str, masks: np.ndarray) -> None:
        """A corrected estimate needs a cheap strategy, a Shapley method and retrained rows
        that leave the correction enough degrees of freedom."""
        from ..estimators import SHAPLEY_METHODS
        from ..estimators.correction import check_paired_rows

        k = e["retrains"]
        if strategy == "retrain":
            raise ConfigError(f"invalid config: {where}: retrains: {k} corrects a cheap strategy's values, but the "
                              "strategy is already retrain; drop retrains or pick sft, ft or ga")
        if e["method"] not in SHAPLEY_METHODS:
            raise ConfigError(f"invalid config: {where}: retrains needs a Shapley method ({', '.join(SHAPLEY_METHODS)}), "
                              f"not {e['method']!r}")
        if k > len(masks):
            raise ConfigError(f"invalid config: {where}: retrains: {k} is more than the design's {len(masks)} "
                              "coalitions; raise the budget or retrain fewer")
        try:
            check_paired_rows(masks, np.arange(k))
        except ValueError as exc:
            raise ConfigError(f"invalid config: {where}: retrains: {k}: {exc}") from None
