"""Feature extractors behind a registry.

An extractor turns uint8 images into named arrays in one pass; properties are cheap
functions of those arrays and of the reference statistics, which the extractor
also defines. Adding one is a module plus a line in EXTRACTORS.
"""

from __future__ import annotations

from ..registry import Registry
from .base import Extractor

EXTRACTORS = {
    "classifier": "diffcredit.extractors.classifier:Classifier",
    "inception": "diffcredit.extractors.inception:Inception",
}

_registry = Registry("feature extractor", EXTRACTORS)


def get_extractor(name: str) -> Extractor:
    return _registry.get(name)
