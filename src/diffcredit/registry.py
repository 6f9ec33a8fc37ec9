"""Plug-ins named by a string, imported on first use (parsing the workflow must
not import torch)."""

from __future__ import annotations

import importlib


class Registry:
    def __init__(self, kind: str, entries: dict[str, str]):
        self.kind = kind  # how the config names it, for errors
        self.entries = entries  # name -> "module:class"
        self._loaded: dict = {}

    def get(self, name: str):
        """An instance of the plug-in called `name`."""
        obj = self._loaded.get(name)
        if obj is None:
            if name not in self.entries:
                raise ValueError(f"unknown {self.kind} {name!r}; known: {sorted(self.entries)}")
            module, cls = self.entries[name].split(":")
            obj = self._loaded[name] = getattr(importlib.import_module(module), cls)()
        return obj
