"""The estimation methods by name. Adding one is its module (a `Method`
subclass), a line in ESTIMATORS and its test; everything else asks the record.

The constants below are derived from the records, for the code that imports them.
"""

from __future__ import annotations

from ..registry import Registry
from .base import Method

# name -> "module:class", in the order errors and tables list them.
ESTIMATORS = {
    "kernelshap": "diffcredit.estimators.kernelshap:KernelSHAP",
    "leverage": "diffcredit.estimators.leverage:Leverage",
    "stratified": "diffcredit.estimators.stratified:Stratified",
    "banzhaf": "diffcredit.estimators.banzhaf:Banzhaf",
    "loo": "diffcredit.estimators.loo:LeaveOneOut",
    "exact": "diffcredit.estimators.exact:Exact",
    "tree": "diffcredit.estimators.tree:TreeSurrogate",
    "stratified_tree": "diffcredit.estimators.tree:StratifiedTree",
}

_registry = Registry("estimator method", ESTIMATORS)


def get_method(name: str) -> Method:
    """The record of the method called `name`.

    Raises:
        ValueError: unknown method.
    """
    if name not in ESTIMATORS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(ESTIMATORS)}")
    return _registry.get(name)


METHODS = tuple(ESTIMATORS)
_RECORDS = [get_method(name) for name in METHODS]
# Methods whose values satisfy efficiency: they sum to v(full) - v(empty).
SHAPLEY_METHODS = tuple(r.name for r in _RECORDS if r.efficient)
# Methods that accept shrink=True.
SHRINKABLE_METHODS = tuple(r.name for r in _RECORDS if r.shrinkable)
# Methods without sampling error: their intervals have zero width.
DETERMINISTIC_METHODS = tuple(r.name for r in _RECORDS if r.deterministic)
DEFAULT_SCHEME = {r.name: r.default_scheme for r in _RECORDS}
# Which designs each method can estimate from.
COMPATIBLE_SCHEMES = {r.name: r.schemes for r in _RECORDS}
# The designs the efficient methods estimate from (what evaluations.fidelity accepts).
SHAPLEY_SCHEMES = tuple(dict.fromkeys(s for r in _RECORDS if r.efficient for s in r.schemes))
