"""What an attribution method provides.

Parse time: `featurizer` returns the keyed spec of the features it reads (methods that
read the same features share them: TRAK and the influence-function variants), and
`variants` the keyed spec and label of each score it reports (one per lambda of a
sweep). Job time: `scores` turns the features of every contributor's items and of the
targets into a credit per (noise seed, contributor): positive means the contributor
helps the full model generate what it generates.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np


class Method:
    name: str = ""
    kind: str = "gradient"  # "gradient": features per item; "similarity": compared with the targets per shard
    # Its options, the config keys it takes besides `method` (JSON-schema properties;
    # config.validate fills their defaults and refuses the options of other methods).
    schema: ClassVar[dict] = {
        "aggregate": {"enum": ["sum", "mean"], "default": "sum",
                      "description": "a contributor's score: the sum (or mean) over its items"},
    }

    @property
    def options(self) -> tuple[str, ...]:
        """The config keys it takes besides `method`."""
        return tuple(self.schema)

    @property
    def reads_model(self) -> bool:
        """Its features are the full model's gradients (else the items' own embeddings)."""
        return self.kind == "gradient"

    def runtime(self, entry: dict, context: dict) -> dict:
        """Settings its feature jobs need that do not change the features (file paths)."""
        return {}

    def featurizer(self, entry: dict, context: dict) -> dict:
        """The keyed spec of the features, from the config entry and the run's context
        ({"n_items", "n_trainable", "num_train_timesteps", "cfg"}); ValueError when impossible."""
        raise NotImplementedError

    def variants(self, entry: dict) -> list[dict]:
        """One {"label", "spec"} per reported score."""
        return [{"label": self.name, "spec": {"aggregate": entry["aggregate"]}}]

    def scores(self, train: list[dict], target: dict, spec: dict) -> np.ndarray:
        """(n_seeds, n_contributors) credits; `train` holds each contributor's feature
        arrays, `target` the targets' (gradient methods)."""
        raise NotImplementedError


def aggregate(item_scores: np.ndarray, sizes: list[int], how: str) -> np.ndarray:
    """(..., n_items) -> (..., n_contributors): the sum (or mean) over each contributor's items."""
    bounds = np.cumsum([0, *sizes])
    parts = [item_scores[..., a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    if how == "sum":
        return np.stack([p.sum(-1) for p in parts], axis=-1)
    if how == "mean":
        return np.stack([p.mean(-1) for p in parts], axis=-1)
    raise ValueError(f"unknown aggregate {how!r}; known: sum, mean")


def timestep_grid(num_train_timesteps: int, k: int) -> list[int]:
    """K uniform timesteps 0, T/K, ..., as D-TRAK takes them."""
    if not 1 <= k <= num_train_timesteps:
        raise ValueError(f"timesteps {k} must lie in 1 .. {num_train_timesteps} (the model's training timesteps)")
    return [i * num_train_timesteps // k for i in range(k)]
