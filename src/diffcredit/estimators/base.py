"""What an estimation method is: its point estimator and the facts the rest of
the code asks about it (designs, minimum budgets, efficiency, shrinkage, bootstrap)."""

from __future__ import annotations

import numpy as np


class IdentificationError(ValueError):
    """The design does not determine the values (too few or degenerate coalitions)."""


# The schemes whose designs are complementary pairs (row 2k+1 the complement of
# row 2k); the others draw or list single coalitions.
PAIRED_SCHEMES = ("kernel_paired", "leverage", "stratified")


class Method:
    """One estimation method; a subclass per module, named in `methods.ESTIMATORS`."""

    name: str
    # Designs (coalitions.SCHEMES) it can estimate from, in the order errors list them.
    schemes: tuple[str, ...]
    default_scheme: str
    # Its values sum to v(full) - v(empty) (Shapley values).
    efficient: bool = False
    # A linear regression fit: `parts` gives its sampling error, so shrink=True works.
    shrinkable: bool = False
    # How the intervals are made: "rows" resamples rows (whole pairs in paired
    # designs); "wild" keeps the design and flips the signs of the residuals
    # (needs `parts`); "wild_refit" does the same with the residuals of the linear
    # fit named `base` and refits the whole method on each replicate; None: no
    # sampling error, so intervals have zero width.
    bootstrap: str | None = "rows"
    base: str | None = None  # for "wild_refit": the linear method whose residuals are flipped
    # At most this many resamples per prefix in the convergence diagnostic (a fit
    # that costs a good fraction of a second); None: as many as the estimate's.
    convergence_boot: int | None = None

    @property
    def deterministic(self) -> bool:
        return self.bootstrap is None

    def point(self, masks: np.ndarray, values: np.ndarray, v_empty: float, v_full: float) -> np.ndarray:
        """One value per player from a checked design (bool masks, float values).

        Raises:
            IdentificationError: the design does not determine the values.
        """
        raise NotImplementedError

    def parts(self, masks, values, v_empty, v_full):
        """For a linear fit: theta (the values are (v_full - v_empty) / n + B theta,
        B the zero-sum basis) and (residuals, leverages, P) with theta = P y."""
        raise NotImplementedError(f"method {self.name!r} is not a linear fit")

    def min_budget(self, scheme: str, n: int) -> int:
        """Smallest number of rows of a `scheme` design from which `point` can work
        (necessary, not sufficient: a random design this size may still fail).
        `scheme` is one of `schemes`, n at least 2."""
        raise NotImplementedError

    def min_rows(self, n: int, paired: bool) -> tuple[int, tuple[str, ...]]:
        """Fewest rows a design of n players can have for `point` to work, whatever
        scheme it came from: the smallest `min_budget` among the method's schemes
        that are paired (or not) as the design is (among all of them if none
        is), and those schemes."""
        matching = tuple(s for s in self.schemes if (s in PAIRED_SCHEMES) == paired) or self.schemes
        return min(self.min_budget(s, n) for s in matching), matching

    def scheme_for(self, paired: bool) -> str:
        """The scheme a design of unknown origin is taken to come from, by whether
        its rows are complementary pairs: convergence starts its prefixes at that
        scheme's minimum budget."""
        return self.default_scheme
