"""Model families behind a registry.

A family is one module with one `Family` subclass; adding one is that module plus
a line in FAMILIES. Modules are imported on first use, so parsing the workflow
does not import torch.
"""

from __future__ import annotations

import importlib

from .base import Family

# name -> "module:class", imported lazily.
FAMILIES = {
    "ddpm": "diffcredit.families.ddpm:DDPM",
}

_loaded: dict[str, Family] = {}


def get_family(name: str) -> Family:
    """The family called `name`."""
    family = _loaded.get(name)
    if family is None:
        if name not in FAMILIES:
            raise ValueError(f"unknown model.family {name!r}; known: {sorted(FAMILIES)}")
        module, cls = FAMILIES[name].split(":")
        family = _loaded[name] = getattr(importlib.import_module(module), cls)()
    return family
