"""Attribution baselines: per-sample attribution methods of the field, aggregated to
contributors, written in the values format of the Shapley estimators.

A method turns features of the training items (per contributor shard) and of the full
model's generated samples (the targets) into one credit per contributor. Gradient
methods (TRAK, D-TRAK, DAS, the influence-function variants) featurize with
gradients.py; similarity methods compare images or embeddings. Adding one is a module
plus a line in METHODS. A method's options (its config keys besides `method`) are its
class's `schema`, which the config's validation reads through `registry`; the modules
a method's class lives in do not import torch at top level.
"""

from __future__ import annotations

from ..registry import Registry
from .base import Method

METHODS = {
    "trak": "diffcredit.attribution.trak:TRAK",
    "dtrak": "diffcredit.attribution.trak:DTRAK",
    "relative_if": "diffcredit.attribution.trak:RelativeIF",
    "renormalized_if": "diffcredit.attribution.trak:RenormalizedIF",
    "das": "diffcredit.attribution.das:DAS",
    "pixel_similarity": "diffcredit.attribution.similarity:PixelSimilarity",
    "clip_similarity": "diffcredit.attribution.similarity:ClipSimilarity",
}

_registry = registry = Registry("attribution method", METHODS)


def get_method(name: str) -> Method:
    return _registry.get(name)
