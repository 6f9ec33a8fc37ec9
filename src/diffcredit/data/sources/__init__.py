"""The data sources by the name `data.source` gives them, each imported on first use.

A new source is a module here with a `base.Source` subclass, and one line below.
"""

from __future__ import annotations

from ...registry import Registry

SOURCES = registry = Registry("data.source", {
    "digits": f"{__name__}.digits:Digits",
    "cifar100": f"{__name__}.cifar100:Cifar100",
    "folder": f"{__name__}.folder:Folder",
})
DEFAULT_SOURCE = "digits"  # when data.source is unset


def source_names() -> list[str]:
    """The registered names, in registration order."""
    return list(SOURCES.entries)


def get_source(name: str):
    """The source called `name` (a `base.Source`); ValueError when unknown."""
    return SOURCES.get(name)
