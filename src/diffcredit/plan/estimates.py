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

    @property
    def label(self) -> str:
        rep = f"-seed+{self.replicate}" if self.replicate else ""
        design = f"-design-seed{self.seed}" if self.seed else ""
        size = len(self.masks)  # the budget, or the fixed size of a loo / exact design
        return f"{self.method}{'-shrunk' if self.shrink else ''}-{self.scheme}-{size}{design}-{self.strategy}{rep}"


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
        design_spec = {"scheme": scheme, "budget": e["budget"], "seed": e["seed"], "players": self.names}
        design_key = self.add("coalition_sample", design_spec, {})
        rep = e.get("replicate", 0)
        rows = [self.score_key(self.model_key(self._members(r), strategy, rep)) for r in masks]
        anchors = [self.score_key(self.model_key((), strategy, rep)),
                   self.score_key(self.model_key(self.names, strategy, rep))]
        spec = {"method": e["method"], "scheme": scheme, "budget": e["budget"], "seed": e["seed"],
                "n_boot": e["n_boot"], "shrink": e["shrink"], "strategy": strategy, "properties": self.properties}
        if rep:
            spec["replicate"] = rep
        key = self.add("shapley_estimate", spec,
                       {"design": design_key, "empty": anchors[0], "full": anchors[1], "rows": rows})
        return PlannedEstimate(e["method"], scheme, e["budget"], e["seed"], e["n_boot"], e["shrink"], strategy,
                               design_key, key, masks, rep)
