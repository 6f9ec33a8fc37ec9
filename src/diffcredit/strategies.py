"""How a coalition's model is made, in a registry.

A strategy names the model it starts from, the training recipe it uses (a config
section), which data it trains on, and the direction of training. Several
strategies can coexist in one run; models they share are one artifact.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Strategy:
    name: str
    start: str  # "init", "full" or "pruned"
    recipe: str  # config section of the training recipe
    data: str  # "members" (the coalition) or "removed" (everyone else)
    ascent: bool = False
    description: str = ""
    trains: bool = True  # False: the start model conditioned on the coalition, no training


STRATEGIES = {
    s.name: s
    for s in (
        Strategy("sft", "pruned", "fine_tune.training", "members",
                 description="fine-tune the pruned model on the coalition (sparsified fine-tuning)"),
        Strategy("ft", "full", "fine_tune.training", "members",
                 description="fine-tune the unpruned full model on the coalition"),
        Strategy("retrain", "init", "train_full", "members",
                 description="train from scratch with train_full's recipe: the ground truth"),
        Strategy("ga", "pruned", "fine_tune.ga", "removed", ascent=True,
                 description="gradient ascent on the contributors left out, from the pruned model"),
        Strategy("proxy", "full", "", "members", trains=False,
                 description="no training: the full conditional model sampled with the coalition's labels only"),
    )
}


# The cheap games that stand in for retraining (what evaluations.fidelity compares).
CHEAP_STRATEGIES = tuple(name for name, s in STRATEGIES.items() if s.start != "init")


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; known: {sorted(STRATEGIES)}") from None
