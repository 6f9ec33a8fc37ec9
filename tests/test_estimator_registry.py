"""The estimator registry: each method's record, the constants derived from the
records, and the config schema's lists of methods and schemes."""

import itertools
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from diffcredit.coalitions import SCHEMES, min_budget, sample_design, validate
from diffcredit.estimators import (
    COMPATIBLE_SCHEMES,
    DEFAULT_SCHEME,
    DETERMINISTIC_METHODS,
    ESTIMATORS,
    METHODS,
    SHAPLEY_METHODS,
    SHRINKABLE_METHODS,
    BootstrapWarning,
    IdentificationError,
    Method,
    estimate,
    get_method,
)
from diffcredit.estimators.common import zero_sum_basis

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
PAIRS = [(method, scheme) for method in METHODS for scheme in get_method(method).schemes]
# Designs of complementary pairs (test_coalitions.py checks it).
PAIRED_SCHEMES = ("kernel_paired", "leverage", "stratified")


def test_records_are_consistent():
    assert METHODS == tuple(ESTIMATORS)
    for name in METHODS:
        record = get_method(name)
        assert isinstance(record, Method) and record.name == name
        assert record.schemes and set(record.schemes) <= set(SCHEMES)
        assert len(set(record.schemes)) == len(record.schemes)
        assert record.default_scheme in record.schemes
        assert record.bootstrap in ("rows", "wild", "wild_refit", None)
        if record.bootstrap == "wild_refit":
            assert get_method(record.base).bootstrap == "wild"
        # Shrinkage and the wild bootstrap need the fit's parts; no sampling
        # error, nothing to shrink.
        if record.shrinkable or record.bootstrap == "wild":
            assert type(record).parts is not Method.parts
        if record.deterministic:
            assert not record.shrinkable
    assert get_method("kernelshap") is get_method("kernelshap")  # loaded once


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method 'shap'; choose one of kernelshap, leverage"):
        get_method("shap")


def test_derived_constants_ask_the_records():
    records = [get_method(name) for name in METHODS]
    assert SHAPLEY_METHODS == tuple(r.name for r in records if r.efficient)
    assert SHRINKABLE_METHODS == tuple(r.name for r in records if r.shrinkable)
    assert DETERMINISTIC_METHODS == tuple(r.name for r in records if r.deterministic)
    assert DEFAULT_SCHEME == {r.name: r.default_scheme for r in records}
    assert COMPATIBLE_SCHEMES == {r.name: r.schemes for r in records}
    # The values the code used before the registry.
    assert SHAPLEY_METHODS == ("kernelshap", "leverage", "stratified", "exact", "tree", "stratified_tree")
    assert SHRINKABLE_METHODS == ("kernelshap", "leverage", "stratified")
    assert DETERMINISTIC_METHODS == ("loo", "exact")
    assert DEFAULT_SCHEME["kernelshap"] == "kernel_paired"


def test_parts_are_the_fit_behind_the_point_estimate():
    """A linear fit's values are (v_full - v_empty) / n + B theta."""
    n = 6
    for name in SHRINKABLE_METHODS:
        record = get_method(name)
        masks = sample_design(n, 40, record.default_scheme, seed=1)
        values = np.sin(masks @ np.arange(1.0, n + 1))
        theta, (residual, leverage, projector) = record.parts(masks, values, 0.5, 2.0)
        assert residual.shape == leverage.shape == (len(masks),)
        assert projector.shape == (n - 1, len(masks))
        np.testing.assert_allclose(record.point(masks, values, 0.5, 2.0), 1.5 / n + zero_sum_basis(n) @ theta)


# ------------------------------------------------------------------ budgets ----


def _built(method, scheme, n):
    """Designs of exactly the minimum budget that the scheme can draw but rarely
    does (so that 100 seeds may miss them): the stratified method's bound on the
    i.i.d. designs needs them (and stratified_tree, which fits it first), and
    banzhaf's needs two complementary rows."""
    if method == "banzhaf":  # a coalition and its complement
        row = np.arange(n) < n // 2
        return [np.array([row, ~row])]
    if method not in ("stratified", "stratified_tree") or scheme not in ("kernel", "kernel_paired"):
        return []
    singletons = np.eye(n, dtype=bool)
    if scheme == "kernel":
        return [singletons]
    if n % 2:  # n pairs: each singleton with its complement
        return [np.array([row for s in singletons for row in (s, ~s)])]
    # n - 1 pairs of the middle size
    middle = sample_design(n, 2**n - 2, "exact", 0)
    middle = middle[(middle.sum(axis=1) == n // 2) & middle[:, 0]]
    return [np.array([row for s in middle[list(chosen)] for row in (s, ~s)])
            for chosen in itertools.combinations(range(len(middle)), n - 1)]


@pytest.mark.parametrize("method, scheme", PAIRS)
@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_min_budget_is_where_estimation_starts(method, scheme, n):
    """At its minimum budget a method estimates from some design of the scheme;
    one whole unit below (a row, or a pair in paired designs) from none, and
    `validate` refuses anything below."""
    record = get_method(method)
    budget = min_budget(scheme, method, n)
    assert budget == record.min_budget(scheme, n) >= 1
    weights = np.random.default_rng(n).normal(size=n)

    def works(masks):
        try:
            estimate(masks, masks @ weights, 0.0, weights.sum(), method, n_boot=0)
            return True
        except IdentificationError:
            return False

    built = _built(method, scheme, n)
    sampled = [sample_design(n, budget, scheme, seed) for seed in range(100)]
    assert all(len(m) == budget for m in built + sampled)
    masks = next((m for m in sampled + built if works(m)), None)
    assert masks is not None, f"no design of {budget} rows identifies {method} on {scheme}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BootstrapWarning)  # few rows to resample
        result = estimate(masks, masks @ weights, 0.0, weights.sum(), method, n_boot=20,
                          shrink=record.shrinkable)
    if record.efficient:
        assert result["value"].sum() == pytest.approx(weights.sum(), abs=1e-9)
    if budget > 1:
        with pytest.raises(ValueError, match="too small"):
            validate(n, budget - 1, scheme, method)
    # Below the minimum nothing identifies the values.
    if record.deterministic:
        below = [sample_design(n, budget, scheme, 0)[:-1]]
    else:
        unit = 2 if scheme in PAIRED_SCHEMES else 1
        if budget - unit < 1:
            return
        below = [sample_design(n, budget - unit, scheme, seed) for seed in range(100)]
    assert not any(works(m) for m in below)


# ------------------------------------------------------------------ schema ----


def test_schema_lists_the_registered_methods_and_schemes():
    """The schema names no method or scheme itself (the registry does, through
    `x-enum`), and the loaded schema accepts exactly the registered ones."""
    from diffcredit.config import load_schema

    raw = yaml.safe_load(SCHEMA.read_text())["properties"]
    for section in (raw["estimators"]["items"]["properties"], raw["evaluations"]["properties"]["fidelity"]["properties"]):
        assert "x-enum" in section["method"] and "enum" not in section["method"]
        assert "x-enum" in section["scheme"] and section["scheme"]["enum"] == [None]
    schema = load_schema(SCHEMA)["properties"]
    entry = schema["estimators"]["items"]["properties"]
    assert sorted(entry["method"]["enum"]) == sorted(METHODS)
    assert entry["method"]["default"] in METHODS
    assert sorted(s for s in entry["scheme"]["enum"] if s is not None) == sorted(SCHEMES)
    # Fidelity compares efficient values across strategies: the Shapley methods
    # and the schemes they can estimate from.
    fidelity = schema["evaluations"]["properties"]["fidelity"]["properties"]
    assert sorted(fidelity["method"]["enum"]) == sorted(SHAPLEY_METHODS)
    assert fidelity["method"]["default"] in SHAPLEY_METHODS
    schemes = {s for m in SHAPLEY_METHODS for s in get_method(m).schemes}
    assert sorted(s for s in fidelity["scheme"]["enum"] if s is not None) == sorted(schemes)


def test_a_config_naming_an_unregistered_method_is_refused_with_the_registered_ones():
    from diffcredit.config import ConfigError, validate

    with pytest.raises(ConfigError, match="estimators.0.method: 'tmc' is not one of") as exc:
        validate({"estimators": [{"method": "tmc"}]}, SCHEMA)
    for name in METHODS:
        assert repr(name) in str(exc.value)
