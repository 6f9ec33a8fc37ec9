"""An adaptive budget: rounds of growing designs until the intervals meet a target.

Round r estimates from the design's first budget * 2**r coalitions (the last round
from max_budget), with retrains in the same proportion. Designs are prefix-stable
(coalitions.py), so every round holds the previous round's coalitions and retrains:
a round adds models, it never replaces them. A round's estimate is an estimate of
its own (its key does not depend on the cap), so raising max_budget later reruns
none of the rounds already made.

A target is met when, for every property, each criterion given holds:
- half_width: the widest 95% interval's half-width is at most this (property units);
- relative: the widest half-width over the standard deviation of the values across
  contributors is at most this;
- order: sorted by value, no two neighbours among the named contributors (or all)
  have overlapping intervals.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

CRITERIA = ("half_width", "relative", "order")


def schedule(budget: int, retrains: int, max_budget: int) -> list[tuple[int, int]]:
    """(coalitions, retrains) of every round: doubling from `budget`, the last at
    `max_budget`; retrains keep the first round's share of the coalitions."""
    if max_budget <= budget:
        raise ValueError(f"max_budget {max_budget} must exceed the first round's budget {budget}")
    sizes = []
    b = budget
    while b < max_budget:
        sizes.append(b)
        b *= 2
    sizes.append(max_budget)
    return [(b, min(b, math.floor(retrains * b / budget))) for b in sizes]


def check_target(target: dict, players: list[str], properties: list[str]) -> None:
    """Raises ValueError for a target without a criterion, or naming unknown
    contributors or properties."""
    if not any(target.get(c) is not None for c in CRITERIA):
        raise ValueError(f"give at least one of {', '.join(CRITERIA)} besides max_budget")
    width = target.get("half_width")
    if isinstance(width, dict):
        unknown = sorted(set(width) - set(properties))
        missing = [p for p in properties if p not in width]
        if unknown:
            raise ValueError(f"half_width names properties {unknown} that the run does not estimate; "
                             f"its properties: {properties}")
        if missing:
            raise ValueError(f"half_width gives no width for {missing}; give one per property, or one number")
    order = target.get("order")
    if isinstance(order, list):
        unknown = [c for c in order if c not in players]
        if unknown:
            raise ValueError(f"order names {unknown}, which are not contributors; known: {players}")


def _ordered(t: pd.DataFrame) -> bool:
    """Sorted by value, every neighbour's interval lies wholly above the one before."""
    t = t.sort_values("value")
    low, high = t["ci_low"].to_numpy(float), t["ci_high"].to_numpy(float)
    return bool(np.all(low[1:] > high[:-1]))


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no NaN or infinity


def round_record(table: pd.DataFrame, target: dict, exclude: tuple = ()) -> dict:
    """Whether a round's values table meets `target`, with what was measured per
    property. A missing interval (NaN) meets no criterion; nor does `relative` when
    every contributor has the same value. `exclude`: contributors left out (canaries,
    whose outlying values would widen the spread the target is relative to)."""
    out, met = {}, True
    table = table[~table["contributor"].isin(exclude)]
    for prop, t in table.groupby("property", sort=False):
        half = float(np.max((t["ci_high"] - t["ci_low"]).to_numpy(float) / 2))
        spread = float(np.std(t["value"].to_numpy(float)))
        relative = half / spread if spread > 0 else math.inf
        rec = {"half_width": _finite(half), "spread": _finite(spread), "relative": _finite(relative)}
        checks = {}
        width = target.get("half_width")
        if width is not None:
            limit = width[prop] if isinstance(width, dict) else width
            checks["half_width"] = bool(half <= limit)
        if target.get("relative") is not None:
            checks["relative"] = bool(relative <= target["relative"])
        order = target.get("order")
        if order is not None:
            named = t if order == "all" else t[t["contributor"].isin(order)]
            rec["order"] = named.sort_values("value", ascending=False)["contributor"].tolist()
            checks["order"] = _ordered(named)
        rec.update({f"{c}_met": v for c, v in checks.items()})
        rec["met"] = all(checks.values())
        met = met and rec["met"]
        out[str(prop)] = rec
    return {"met": bool(met), "properties": out}
