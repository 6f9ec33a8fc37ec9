"""Plan nodes of the estimates: each estimator entry's design, the models and scores
of its coalitions, and the estimate."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..config import ConfigError
from ..keys import canonical_json, files_sha256, sha256_hex


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
    max_budget: int = 0  # an adaptive budget's cap; masks are then its first round's
    training_noise: int = 0  # the design's first rows also trained with another seed

    @property
    def label(self) -> str:
        rep = f"-seed+{self.replicate}" if self.replicate else ""
        design = f"-design-seed{self.seed}" if self.seed else ""
        size = len(self.masks)  # the budget, or the fixed size of a loo / exact design
        if self.max_budget:
            size = f"{size}to{self.max_budget}"
        corrected = f"+retrain{self.retrains}" if self.retrains else ""
        noise = f"+noise{self.training_noise}" if self.training_noise else ""
        return (f"{self.method}{'-shrunk' if self.shrink else ''}-{self.scheme}-{size}{design}-{self.strategy}"
                f"{corrected}{noise}{rep}")


class EstimateNodes:
    def _members(self, row) -> tuple[str, ...]:
        return tuple(n for n, m in zip(self.names, row) if m)

    def _add_estimators(self) -> list[PlannedEstimate]:
        self._adaptive: dict[str, dict] = {}  # adaptive node key -> its entry, schedule and rounds so far
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
        """The design, coalition models, scores and estimate node of one estimator entry
        (an adaptive one's: its first round and the node that will take its last)."""
        if e.get("target"):
            return self._add_adaptive(e, where)
        scheme, strategy, masks = self._design(e, where)
        retrains = e.get("retrains", 0)
        noise = e.get("training_noise", 0)
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
        if noise:
            spec["training_noise"] = noise
            again = [self.model_key(self._members(r), strategy, rep + 1) for r in masks[:noise]]
            parents["again"] = [self.score_key(m) for m in again]
            parents["again_models"] = again
        key = self.add("shapley_estimate", spec, parents)
        return PlannedEstimate(e["method"], scheme, e["budget"], e["seed"], e["n_boot"], e["shrink"], strategy,
                               design_key, key, masks, rep, retrains, training_noise=noise)

    def _design(self, e: dict, where: str) -> tuple[str, str, np.ndarray]:
        """An entry's scheme, strategy and design, refused when the estimate could not be made."""
        from ..coalitions import sample_design
        from ..coalitions import validate as validate_design
        from ..estimators import check_shrink, get_method
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
        # A sampled design can still be degenerate (repeated coalitions). The check is a fit,
        # costly at hundreds of players, so its success is remembered by the design's content
        # and the estimators' code.
        design = canonical_json({"masks": sha256_hex(np.packbits(masks, axis=1).tobytes()), "shape": masks.shape,
                                 "method": e["method"], "code": _estimator_code()})
        try:
            self._cache.get_memo(f"identified:{sha256_hex(design)}", lambda: _fits(masks, e["method"]))
        except ValueError as exc:
            raise ConfigError(f"invalid config: {where}: budget {e['budget']} is too small: {exc}") from None
        if e.get("retrains", 0):
            self._check_retrains(e, where, strategy, masks)
        if e.get("training_noise", 0):
            self._check_training_noise(e, where, masks)
        return scheme, strategy, masks

    def _check_training_noise(self, e: dict, where: str, masks: np.ndarray) -> None:
        """Rows trained again need intervals to go into, and are rows of the design."""
        k = e["training_noise"]
        if k < 2:
            raise ConfigError(f"invalid config: {where}: training_noise: {k} gives the spread of training one "
                              "degree of freedom; train at least 2 rows again (6 or more for a usable interval)")
        if k > len(masks):
            raise ConfigError(f"invalid config: {where}: training_noise: {k} is more than the design's {len(masks)} "
                              "coalitions; train fewer again")
        if not e["n_boot"]:
            raise ConfigError(f"invalid config: {where}: training_noise widens the intervals, but n_boot is 0 "
                              "(no intervals); set n_boot or drop training_noise")
        if e.get("retrains", 0):
            raise ConfigError(f"invalid config: {where}: training_noise with retrains is not supported: the "
                              "correction's residuals already hold the retrained rows' training randomness; "
                              "drop one")

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

    def _add_adaptive(self, e: dict, where: str) -> PlannedEstimate:
        """An adaptive entry: its first round (an estimate and its checkpoint) and the node
        that takes the last round's values; later rounds join as checkpoints say."""
        from ..estimators import DETERMINISTIC_METHODS
        from ..estimators.adaptive import check_target, schedule

        target = {k: v for k, v in e["target"].items() if k != "max_budget" and v is not None}
        cap = e["target"]["max_budget"]
        here = f"{where}.target"
        if e["method"] in DETERMINISTIC_METHODS:
            raise ConfigError(f"invalid config: {here}: {e['method']} has a fixed design, so more coalitions "
                              "cannot narrow its intervals; use a sampling method (kernelshap, stratified, ...)")
        if not e["n_boot"]:
            raise ConfigError(f"invalid config: {here}: needs intervals, but n_boot is 0")
        try:
            check_target(target, self.names[:len(self.all_shards)], self.properties)  # canaries are not judged
            rounds = schedule(e["budget"], e.get("retrains", 0), cap)
        except ValueError as exc:
            raise ConfigError(f"invalid config: {here}: {exc}") from None
        plain = {**e, "target": None}
        self._design({**plain, "budget": rounds[-1][0], "retrains": rounds[-1][1]}, f"{here}.max_budget")
        first = self.add_estimator({**plain, "budget": rounds[0][0], "retrains": rounds[0][1]}, where)
        check = self.add("estimate_round", self._round_spec(target), {"values": first.key})
        key = self.add("adaptive_estimate", {"target": target, "max_budget": cap}, {"rounds": [check]},
                       {"schedule": rounds})
        self._adaptive.setdefault(key, {"entry": plain, "where": where, "target": target, "schedule": rounds,
                                        "estimates": [first.key], "rounds": [check]})
        self._load_rounds(key)
        return replace(first, key=key, max_budget=cap)

    def _load_rounds(self, key: str) -> None:
        """Follow an adaptive node's rounds as far as their checkpoints exist: a round that
        misses the target adds the next; one that meets it, or the last, gives the values."""
        from ..artifacts import CorruptArtifactError, read_json, verify_file

        a = self._adaptive[key]
        while "values" not in self._dynamic.get(key, {}):
            try:
                met = read_json(verify_file(self.nodes[a["rounds"][-1]].path))["met"]
            except (OSError, ValueError, KeyError, CorruptArtifactError):
                return
            done = len(a["rounds"])
            if met or done == len(a["schedule"]):
                self._dynamic[key] = {"rounds": list(a["rounds"]), "values": a["estimates"][-1]}
                return
            budget, retrains = a["schedule"][done]
            est = self.add_estimator({**a["entry"], "budget": budget, "retrains": retrains}, a["where"])
            a["estimates"].append(est.key)
            a["rounds"].append(self.add("estimate_round", self._round_spec(a["target"]), {"values": est.key}))
            self._dynamic[key] = {"rounds": list(a["rounds"])}

    def _round_spec(self, target: dict) -> dict:
        """A round checkpoint's spec: the target, judged on the real contributors only."""
        canaries = [c["name"] for c in self.canaries]
        return {"target": target, **({"canaries": canaries} if canaries else {})}


@functools.lru_cache(maxsize=1)
def _estimator_code() -> str:
    """sha256 of the estimators' source files, which decide whether a design fits."""
    from .. import estimators

    folder = Path(estimators.__file__).parent
    return files_sha256(folder.glob("*.py"), folder)


def _fits(masks: np.ndarray, method: str) -> bool:
    """True when `method` can estimate from the design `masks`; raises ValueError otherwise."""
    from ..estimators import estimate

    estimate(masks, np.zeros(len(masks)), 0.0, 0.0, method, n_boot=0)
    return True
