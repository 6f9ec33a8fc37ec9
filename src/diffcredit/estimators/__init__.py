"""Value estimators from an evaluated coalition design.

Every estimator takes the design (boolean masks, one row per coalition), the
property v(S) measured for each row, and the two anchors v(empty) and v(full),
and returns one value per contributor with a 95% bootstrap interval
(`estimate`, in estimation.py, which also documents shrinkage).

Each method is one module with one `Method` subclass (base.py): its point
estimator and what the rest of the code asks about it (compatible designs,
default design, minimum budget per design, efficiency, shrinkage, bootstrap).
methods.py maps names to them; adding a method is its module, a line there and
its test.

* ``kernelshap`` (kernelshap.py): constrained least squares, Covert & Lee (2021).
* ``leverage`` (leverage.py): Leverage SHAP, Musco & Witter (2025).
* ``stratified`` (stratified.py): the regression within coalition-size strata.
* ``banzhaf`` (banzhaf.py): maximum sample reuse, Wang & Jia (2023).
* ``loo`` (loo.py): leave-one-out, v(full) - v(N \\ {i}).
* ``exact`` (exact.py): exact Shapley values from all 2^n - 2 coalitions.
* ``tree`` (tree.py): exact Shapley values of a boosted-tree surrogate (Lu et al., 2026).
* ``stratified_tree`` (tree.py): ``stratified`` plus the trees on its residuals.
"""

from .base import IdentificationError, Method
from .common import check_design, is_paired
from .estimation import CI_LEVEL, BootstrapWarning, check_shrink, estimate
from .methods import (
    COMPATIBLE_SCHEMES,
    DEFAULT_SCHEME,
    DETERMINISTIC_METHODS,
    ESTIMATORS,
    METHODS,
    SHAPLEY_METHODS,
    SHRINKABLE_METHODS,
    get_method,
)

__all__ = [
    "BootstrapWarning",
    "CI_LEVEL",
    "COMPATIBLE_SCHEMES",
    "DEFAULT_SCHEME",
    "DETERMINISTIC_METHODS",
    "ESTIMATORS",
    "IdentificationError",
    "METHODS",
    "Method",
    "SHAPLEY_METHODS",
    "SHRINKABLE_METHODS",
    "check_design",
    "check_shrink",
    "estimate",
    "get_method",
    "is_paired",
]
