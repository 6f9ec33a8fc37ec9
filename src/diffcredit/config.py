"""Config validation: a JSON schema (workflow/schemas/) that also fills defaults.

Sections whose keys depend on a plug-in carry `x-plugin` in the main schema: their
common keys are there, and each plug-in's own keys are a fragment of JSON-schema
properties on its class (a family's `schema` for `model`, its `generate_schema` for
`generate`, an attribution method's `schema` for its entry), found through the
plug-in's registry:

    x-plugin:
      registry: diffcredit.families   # a module with `registry` (a registry.Registry)
      attribute: schema               # the plug-in class's fragment
      by: family                      # the key naming the plug-in: in the section, or
                                      # from the config's root when it starts with /
      noun: family                    # what messages call a plug-in
      term: key                       # what they call its keys (default: key)
      inherited: true                 # keys of the default plug-in are dropped, not
                                      # refused, under another one (see below)

`validate` checks the config against the main schema, then each such section against
its plug-in's fragment (filling its defaults, refusing unknown keys) and refuses a key
of another plug-in, naming the plug-ins that take it. `inherited` serves mappings that
Snakemake merges key by key: config.yaml and configs/tiny.yaml describe the default
family (ddpm), and a later --configfile can override their `model` keys but not remove
them, so under another family a key of the default family is dropped (with a warning
when it is not at its default value); any other family's key is refused. Fragments
are read without importing torch.
"""

from __future__ import annotations

import copy
import importlib
import math
import os
import re
import warnings
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """The config is invalid; the message names the key and the problem."""


def _validator_with_defaults():
    from jsonschema import Draft7Validator, validators

    base_properties = Draft7Validator.VALIDATORS["properties"]

    base_items = Draft7Validator.VALIDATORS["items"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
                elif name in instance:
                    instance[name] = _as_number(instance[name], sub)
        yield from base_properties(validator, props, instance, schema)

    def items(validator, sub, instance, schema):
        if isinstance(instance, list) and isinstance(sub, dict):
            instance[:] = [_as_number(x, sub) for x in instance]
        yield from base_items(validator, sub, instance, schema)

    return validators.extend(Draft7Validator, {"properties": properties, "items": items})


# YAML 1.2's floats. Snakemake reads config files as YAML 1.1, where a float needs a dot
# ("1.0e-4"), so the 1e-4 that most people write arrives as text.
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def _as_number(value, sub):
    """`value` as the number its schema node asks for: text in YAML 1.2's float syntax
    read as a float, and an integral float as an int where only integers are allowed
    (so 20.0 and 1e4 give the keys that 20 and 10000 give)."""
    if not isinstance(sub, dict):
        return value
    types = sub.get("type")
    types = set(types) if isinstance(types, list) else {types}
    numeric = types & {"number", "integer"}
    if not numeric:
        return value
    if isinstance(value, str) and "string" not in types and _FLOAT.fullmatch(value.strip()):
        value = float(value)
    if (isinstance(value, float) and "number" not in types and math.isfinite(value)
            and value.is_integer()):
        value = int(value)
    return value


def load_schema(path: str | Path) -> dict:
    with open(path) as f:
        return with_registry_enums(yaml.safe_load(f))


def with_registry_enums(schema):
    """The schema with every `x-enum: module:NAME` (a sequence of names, or a function
    returning one) turned into an `enum` of those names, after the node's own `enum`
    values (e.g. null): lists of registered plug-ins are written once, in the registry."""
    if isinstance(schema, list):
        return [with_registry_enums(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: with_registry_enums(v) for k, v in schema.items() if k != "x-enum"}
    if "x-enum" in schema:
        module, name = schema["x-enum"].split(":")
        names = getattr(importlib.import_module(module), name)
        out["enum"] = [*schema.get("enum", []), *(names() if callable(names) else names)]
    return out


def validate(config: dict, schema: dict | str | Path) -> dict:
    """A validated copy of `config` with defaults filled in: the main schema, then the
    plug-in fragments of its `x-plugin` sections."""
    schema = load_schema(schema) if not isinstance(schema, dict) else with_registry_enums(schema)
    config = copy.deepcopy(dict(config))
    for section in ("estimators", "attributions"):  # a bare name is {method: name}
        if isinstance(config.get(section), list):
            config[section] = [{"method": x} if isinstance(x, str) else x for x in config[section]]
    cls = _validator_with_defaults()
    errors = [(list(e.absolute_path), _message(e)) for e in cls(schema).iter_errors(config)]
    for path, section in _plugin_sections(schema):
        for where, instance in _instances(config, path):
            if isinstance(instance, dict):  # else the main schema said so
                errors += _plugin_errors(cls, config, where, instance, section)
    errors += _expand_paths(config, schema)
    for path in _nodes(schema, lambda node: node.get("$ref") == "#/definitions/training"):
        for where, recipe in _instances(config, path):
            _warn_recipe(where, recipe)
    flagged = {tuple(path) for path, _ in errors}
    errors += [e for e in _number_errors(config) if tuple(e[0]) not in flagged]
    if errors:
        lines = []
        for path, message in sorted(dict.fromkeys((tuple(p), m) for p, m in errors), key=_error_order):
            where = ".".join(str(p) for p in path) or "(top level)"
            lines.append(f"  {message}" if message.startswith(where + " ") else f"  {where}: {message}")
        raise ConfigError("invalid config:\n" + "\n".join(lines))
    return config


def _expand_paths(config, schema: dict, where: tuple = ()) -> list:
    """Paths (schema keys marked `x-path`) read as a shell user expects: a leading ~ is
    the home folder and $NAME or ${NAME} an environment variable, expanded where the
    config is read (a literal ./~ or ./$SCRATCH folder is never what was meant). A
    variable that is not set is an error naming it."""
    errors = []
    if isinstance(config, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in config or not isinstance(sub, dict):
                continue
            if sub.get("x-path") and isinstance(config[key], str):
                config[key], unset = _expand_path(config[key])
                control = [c for c in config[key] if ord(c) < 32 or ord(c) == 127]
                if control:
                    errors.append(([*where, key], f"{config[key]!r} holds the control character {control[0]!r}, "
                                                  "which no shell command or file listing shows as written; remove "
                                                  "it (a line break inside quotes, a pasted tab)"))
                elif unset:
                    errors.append(([*where, key], f"{config[key]!r} names the environment variable(s) "
                                                  f"{', '.join(unset)}, which are not set here; set them (on "
                                                  "every node that runs jobs) or write the path out"))
            else:
                errors += _expand_paths(config[key], sub, (*where, key))
    elif isinstance(config, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(config):
            errors += _expand_paths(item, schema["items"], (*where, i))
    for branch in schema.get("oneOf", []) + schema.get("anyOf", []):
        if isinstance(branch, dict):
            errors += _expand_paths(config, branch, where)
    return errors


_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _expand_path(value: str) -> tuple[str, list[str]]:
    """`value` with ~ and the environment variables that are set expanded, and the names
    of those that are not."""
    if value.startswith("~"):
        value = os.path.expanduser(value)
    unset = list(dict.fromkeys(a or b for a, b in _VARIABLE.findall(value) if (a or b) not in os.environ))
    return (value if unset else os.path.expandvars(value)), unset


SEED_LIMIT = 2**32  # numpy's and torch's seeds: non-negative and below 2**32
MIN_DRAWS = 40  # fewer resamples than this cannot place a 95% interval's 2.5% tails
MAX_DRAWS = 100_000  # past this, the tails' Monte Carlo error is far below the interval's own


def _number_errors(config, path: tuple = ()) -> list:
    """What the schema cannot say about numbers, anywhere in the config (plug-in keys
    too): every float finite, every seed in numpy's range, every resample count 0 (off)
    or enough for a 95% interval."""
    errors = []
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    for key, value in items:
        where = (*path, key)
        if isinstance(value, (dict, list)):
            errors += _number_errors(value, where)
            if isinstance(value, list) and key == "seeds":
                errors += [e for i, v in enumerate(value) for e in _seed_error((*where, i), v)]
            continue
        if isinstance(value, float) and not math.isfinite(value):
            errors.append((list(where), f"must be a finite number, got {value}"))
        elif isinstance(key, str) and (key == "seed" or key.endswith("_seed")):
            errors += _seed_error(where, value)
        elif key in ("n_boot", "image_bootstrap") and isinstance(value, int) and 0 < value < MIN_DRAWS:
            errors.append((list(where), f"{value} resamples cannot make a 95% interval; use 0 (no interval) "
                                        f"or at least {MIN_DRAWS}"))
        elif key in ("n_boot", "image_bootstrap") and isinstance(value, int) and value > MAX_DRAWS:
            errors.append((list(where), f"{value} resamples: past {MAX_DRAWS} a 95% interval's ends move by "
                                        "less than the interval's own sampling error; use fewer"))
    return errors


def _seed_error(where: tuple, value) -> list:
    if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value < SEED_LIMIT:
        return [(list(where), f"a seed must be from 0 to 2**32 - 1, got {value}")]
    return []


def _message(error) -> str:
    """The schema's message; for a value that fits none of several forms (anyOf, oneOf),
    what each form says (only the forms of the value's type, where there are such),
    not "is not valid under any of the given schemas"; for text
    that YAML read as a boolean or a number, how to keep it text."""
    if error.validator == "additionalProperties" and error.validator_value is False:
        # jsonschema names the patterns, not the keys, when the node has patternProperties
        patterns = error.schema.get("patternProperties", {})
        extra = [k for k in error.instance if k not in error.schema.get("properties", {})
                 and not any(re.search(p, str(k)) for p in patterns)]
        return (f"Additional properties are not allowed ({', '.join(map(repr, extra))} "
                f"{'was' if len(extra) == 1 else 'were'} unexpected)")
    if error.validator == "type" and error.instance is None and "object" in _types(error.validator_value):
        return ("is empty: YAML reads a key with nothing after it as null; indent its keys under it, write {} "
                "or remove the line")
    if error.validator == "type" and _yaml_scalar_for_text(error):
        return (f"{error.message}: YAML reads unquoted yes, no, on, off, true and false as booleans and "
                "unquoted digits as numbers; put the value in quotes")
    if error.validator not in ("anyOf", "oneOf") or not error.context:
        return error.message
    own = [e for e in error.context if not e.path]
    # A value of one form's type that breaks that form's other rules (a number out of
    # range where a number or a mapping is allowed) is told only that form's rules.
    wrong_type = {e.relative_schema_path[0] for e in own if e.validator == "type"}
    right_type = [e for e in own if e.relative_schema_path[0] not in wrong_type]
    seen = dict.fromkeys(e.message for e in (right_type or own))
    return " and ".join(seen) if seen else error.message


def _types(value) -> list:
    return value if isinstance(value, list) else [value]


def _yaml_scalar_for_text(error) -> bool:
    """A key that takes text given a boolean or a number (YAML's reading of no, on, 1...)."""
    return "string" in _types(error.validator_value) and isinstance(error.instance, (bool, int, float))


def _error_order(error):
    return [str(p) for p in error[0]], error[1]


def _plugin_sections(schema: dict, path: tuple = ()):
    """(path, section schema) of every schema node with `x-plugin`, through `properties`
    and `items`; "*" in a path stands for every entry of a list."""
    if not isinstance(schema, dict):
        return
    if "x-plugin" in schema:
        yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from _plugin_sections(sub, (*path, name))
    if isinstance(schema.get("items"), dict):
        yield from _plugin_sections(schema["items"], (*path, "*"))


def _nodes(schema: dict, match, path: tuple = ()):
    """The paths (as `_plugin_sections` gives them) of the schema nodes `match` accepts."""
    if not isinstance(schema, dict):
        return
    if match(schema):
        yield path
    for name, sub in (schema.get("properties") or {}).items():
        yield from _nodes(sub, match, (*path, name))
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], match, (*path, "*"))


def _warn_recipe(where: list, recipe) -> None:
    """What a training recipe's schema cannot say: a warmup that outlasts the training
    never lets the learning rate reach lr. Some reference recipes do it on purpose
    (configs/artbench.yaml follows one), so it is said, not refused."""
    if not isinstance(recipe, dict):
        return
    steps, warmup = recipe.get("steps"), recipe.get("warmup_steps")
    if isinstance(steps, int) and isinstance(warmup, int) and 0 < steps <= warmup:
        key = ".".join(map(str, [*where, "warmup_steps"]))
        warnings.warn(f"{key}: {warmup} warmup steps are not fewer than the {steps} steps: the learning rate "
                      f"rises to {steps / warmup:.0%} of lr and training ends; use fewer warmup steps unless that is "
                      "meant", UserWarning, stacklevel=3)


def _instances(config, path: tuple, where: tuple = ()):
    """(concrete path, value) of the config's values at `path`."""
    if not path:
        yield list(where), config
    elif path[0] == "*":
        if isinstance(config, list):
            for i, item in enumerate(config):
                yield from _instances(item, path[1:], (*where, i))
    elif isinstance(config, dict) and path[0] in config:
        yield from _instances(config[path[0]], path[1:], (*where, path[0]))


def _plugin_errors(cls, config: dict, where: list, instance: dict, section: dict) -> list:
    """Errors of one plug-in section: its keys against the chosen plug-in's fragment
    (defaults filled in place) and the keys of other plug-ins."""
    spec = section["x-plugin"]
    registry = importlib.import_module(spec["registry"]).registry
    by = spec["by"]
    if by.startswith("/"):
        by_path, chosen = by.strip("/").split("/"), config
        for part in by_path:
            chosen = chosen.get(part) if isinstance(chosen, dict) else None
    else:
        by_path, chosen = [*where, by], instance.get(by)
    if not isinstance(chosen, str):
        return []  # missing or not a string: the main schema says so
    try:
        plugin = registry.get(chosen)
    except ValueError as exc:
        return [] if by.startswith("/") else [(by_path, str(exc))]  # reported once, where it is named
    fragments = {name: getattr(registry.get(name), spec["attribute"]) for name in registry.entries}
    common = section.get("properties") or {}
    own = {**fragments[chosen], **{k: {} for k in common}}
    inherited = (common.get(by) or {}).get("default") if spec.get("inherited") else None
    errors, foreign = [], {}
    for key in [k for k in instance if k not in own]:
        owners = [name for name, frag in fragments.items() if key in frag]
        if not owners:
            continue  # unknown everywhere: additionalProperties says so
        path = [*where, key]
        which = (f"{'.'.join(map(str, path))} is {_a(spec.get('term', 'key'))} of "
                 f"{_owners(registry, owners, spec['noun'])}")
        if inherited in owners:  # from the base config files; the chosen plug-in ignores it
            value = instance.pop(key)
            if value != fragments[inherited][key].get("default"):
                warnings.warn(f"{which}, which {chosen} ignores (set by an earlier config file?)", stacklevel=2)
            continue
        foreign[key] = {}
        errors.append((path, f"{which}, not of {chosen}{_kind_of(plugin, registry, owners, spec['noun'])}"))
    schema = {"type": "object", "additionalProperties": False, "properties": {**own, **foreign}}
    errors += [([*where, *e.absolute_path], _message(e)) for e in cls(schema).iter_errors(instance)]
    return errors + _expand_paths(instance, schema, tuple(where))


def _a(term: str) -> str:
    return f"{'an' if term[0] in 'aeiou' else 'a'} {term}"


def _owners(registry, owners: list[str], noun: str) -> str:
    """"family sd_lora", "families ddpm, ldm", "the similarity methods a, b"."""
    kinds = {getattr(registry.get(o), "kind", None) for o in owners}
    kind = f"{kinds.pop()} " if len(kinds) == 1 and None not in kinds else ""
    if len(owners) == 1:
        return f"{kind}{noun} {owners[0]}"
    nouns = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{'the ' if kind else ''}{kind}{nouns} {', '.join(owners)}"


def _kind_of(plugin, registry, owners: list[str], noun: str) -> str:
    """" (a gradient method)" when the chosen plug-in's kind differs from the owners'."""
    kind = getattr(plugin, "kind", None)
    if kind is None or kind == getattr(registry.get(owners[0]), "kind", None):
        return ""
    return f" ({_a(f'{kind} {noun}')})"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (a key that a merge,
    `<<: *anchor`, brings in may be given again: that is what merges are for)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ConfigError(
                    f"line {key_node.start_mark.line + 1}: key {key!r} is given twice in one mapping "
                    f"(first on line {seen[key] + 1}); keep one"
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path) -> dict:
    """A config file as a dict; a missing file, a YAML error, a duplicate key or a
    top level that is not a mapping is a ConfigError naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                          f"{exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    try:
        obj = yaml.load(text, Loader=_StrictLoader)
    except ConfigError as exc:
        raise ConfigError(f"{path}, {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: not valid YAML ({problem}); check the indentation there") from None
    if obj is None:
        raise ConfigError(f"config file {path} is empty (Snakemake refuses an empty config file too); add a key "
                          "or leave the file out")
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys (e.g. 'results: ...'), "
                          f"not a {type(obj).__name__}")
    return obj


def deep_update(base: dict, override: dict) -> dict:
    """Merge `override` into a copy of `base` the way Snakemake merges config files."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
