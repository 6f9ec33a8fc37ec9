"""Plan nodes of the evaluations against retraining (the config's `evaluations:`):
fidelity, LDS, counterfactual (whose retrains join once its removal sets exist)."""

from __future__ import annotations

from ..config import ConfigError
from .estimates import PlannedEstimate


class EvaluationNodes:
    def _add_evaluations(self) -> None:
        """Retraining ground truth (the config's `evaluations:`): fidelity, LDS, counterfactual."""
        ev = self.cfg["evaluations"]
        self.evaluations: dict[str, str] = {}  # name -> node key
        self.fidelity_estimators: list[PlannedEstimate] = []
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
        from ..strategies import get_strategy

        base = {k: f[k] for k in ("method", "scheme", "budget", "seed", "n_boot")}
        ests = [self.add_estimator({**base, "shrink": False, "strategy": s}, f"evaluations.fidelity ({s})")
                for s in f["strategies"]]
        ests += [self.add_estimator({**base, "shrink": False, "strategy": s, "retrains": k},
                                    f"evaluations.fidelity ({s}, retrains {k})")
                 for s in f["strategies"] for k in f["retrains"]]
        ests += [self.add_estimator({**base, "shrink": False, "strategy": "retrain", "replicate": r},
                                    "evaluations.fidelity (retrain)") for r in range(f["retrain_replicates"])]
        self.fidelity_estimators = ests
        layout, models, setup = [], [], []
        for est in ests:
            keys = [self.model_key(self._members(r), est.strategy, est.replicate) for r in est.masks]
            rows = len(keys)
            keys += [self.model_key(self._members(r), "retrain") for r in est.masks[:est.retrains]]
            start = get_strategy(est.strategy).start
            layout.append({"label": est.label, "strategy": est.strategy, "replicate": est.replicate,
                           "retrains": est.retrains, "rows": rows, "models": len(keys), "setup": start == "pruned",
                           "sizes": [int(r.sum()) for r in est.masks]})
            models += keys
            if start == "pruned":
                setup.append(self.pruned_key)
        spec = {"layout": [(x["strategy"], x["replicate"]) for x in layout], "properties": self.properties}
        self.evaluations["fidelity"] = self.add(
            "fidelity", spec,
            {"values": [e.key for e in ests], "rows": [k for e in ests for k in self.nodes[e.key].parents["rows"]],
             "models": models, "setup": sorted(set(setup))},
            {"layout": layout},
        )

    def _add_lds(self, lds: dict) -> None:
        from ..evaluation import sample_subsets

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
            "lds", spec, {"values": [e.key for e in self.methods], "scores": scores},
            {"labels": [e.label for e in self.methods]},
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
            "removal_sets", {"fraction": c["fraction"], "players": self.names, "properties": self.properties},
            {"values": [e.key for e in methods]}, labels,
        )
        # The checkpoint runs after the other evaluations: Snakemake 9 updating the DAG after a
        # checkpoint while a job the summary needs is still running can drop the summary.
        self._after[removal] = {"after": [self.evaluations[n] for n in ("fidelity", "lds") if n in self.evaluations]}
        self.evaluations["counterfactual"] = self.add(
            "counterfactual", {"seeds": c["seeds"]}, {"removal": removal}, labels,
        )
        self._load_counterfactual()

    def _load_counterfactual(self) -> bool:
        """Once the removal sets exist (a checkpoint), add their retrains; True when they do."""
        from ..artifacts import CorruptArtifactError, read_json, verify_file

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
