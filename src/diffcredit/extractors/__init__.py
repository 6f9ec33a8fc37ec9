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
    "clip": "diffcredit.extractors.clip:CLIP",
    "blip": "diffcredit.extractors.blip:BLIP",
    "aesthetic": "diffcredit.extractors.aesthetic:Aesthetic",
    "diversity": "diffcredit.extractors.diversity:Diversity",
}

_registry = Registry("feature extractor", EXTRACTORS)


def get_extractor(name: str) -> Extractor:
    return _registry.get(name)


def in_order(names, specs: dict) -> list[str]:
    """`names` and every extractor they derive from, each after the one it uses."""
    out: list[str] = []

    def visit(name, seen=()):
        if name in out:
            return
        if name in seen:
            raise ValueError(f"extractors derive from each other in a cycle: {seen}")
        used = get_extractor(name).uses(specs[name])
        if used:
            visit(used, (*seen, name))
        out.append(name)

    for n in names:
        visit(n)
    return out
