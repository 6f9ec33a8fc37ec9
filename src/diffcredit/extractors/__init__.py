"""Feature extractors behind a registry.

An extractor turns uint8 images into named arrays in one pass; properties are cheap
functions of those arrays and of the reference statistics, which the extractor
also defines. Adding one is a module plus a line in EXTRACTORS.
"""

from __future__ import annotations

import importlib

from .base import Extractor

EXTRACTORS = {
    "classifier": "diffcredit.extractors.classifier:Classifier",
    "inception": "diffcredit.extractors.inception:Inception",
}

_loaded: dict[str, Extractor] = {}


def get_extractor(name: str) -> Extractor:
    ext = _loaded.get(name)
    if ext is None:
        if name not in EXTRACTORS:
            raise ValueError(f"unknown feature extractor {name!r}; known: {sorted(EXTRACTORS)}")
        module, cls = EXTRACTORS[name].split(":")
        ext = _loaded[name] = getattr(importlib.import_module(module), cls)()
    return ext
