"""Config validation: a JSON schema (workflow/schemas/) that also fills defaults."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """The config is invalid; the message names the key and the problem."""


def _validator_with_defaults():
    from jsonschema import Draft7Validator, validators

    base_properties = Draft7Validator.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base_properties(validator, props, instance, schema)

    return validators.extend(Draft7Validator, {"properties": properties})


def load_schema(path: str | Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def validate(config: dict, schema: dict | str | Path) -> dict:
    """A validated copy of `config` with defaults filled in."""
    if not isinstance(schema, dict):
        schema = load_schema(schema)
    config = copy.deepcopy(dict(config))
    validator = _validator_with_defaults()(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
            lines.append(f"  {where}: {e.message}")
        raise ConfigError("invalid config:\n" + "\n".join(lines))
    return config


def load_yaml(path: str | Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f) or {}


def deep_update(base: dict, override: dict) -> dict:
    """Merge `override` into a copy of `base` the way Snakemake merges config files."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
