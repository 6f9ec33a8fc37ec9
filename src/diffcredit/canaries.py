"""Canaries: synthetic contributors made from the user's own images, with a known
expected place among the credits. They are extra players of the game (they change
every contributor's value), so a run with canaries is an audit of the method on this
data, not the run to pay from.

A kind is one record in KINDS: what it is made from (one contributor, or a seeded
sample of the pooled real images), how its images are made, and what its credit is
expected to be. Images are uint8 (N, C, H, W); strengths are in units of the full
pixel range (noise) or pixels (blur).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd


def _jitter(images: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    if sd <= 0:
        return images.copy()
    noisy = images.astype(np.float64) / 255.0 + rng.normal(0.0, sd, images.shape)
    return np.clip(np.rint(noisy * 255.0), 0, 255).astype(np.uint8)


def _blur(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    out = gaussian_filter(images.astype(np.float64), sigma=(0, 0, sigma, sigma), mode="nearest")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _uniform(images: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, images.shape, dtype=np.uint8)


def _same(images: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    return images.copy()


@dataclass(frozen=True)
class Kind:
    name: str
    pooled: bool  # made from a sample of the pooled real images (else from the contributor `of`)
    make: Callable  # (images, strength, rng) -> images
    expectation: str  # what the check tests, in words
    quality_only: bool  # expected only for properties that judge image quality
    default_strength: float = 0.0


KINDS = {k.name: k for k in (
    Kind("duplicate", False, _jitter, "its credit equals its original's: their intervals overlap", False),
    Kind("noise", True, _jitter, "below every real contributor (Gaussian noise on real images)", True, 0.3),
    Kind("blur", True, _blur, "below every real contributor (blurred real images)", True, 1.5),
    Kind("uniform", True, _uniform, "below every real contributor (images of uniform noise)", True),
    Kind("subsample", True, _same, "below the median real contributor (a random share of the real images, "
                                   "smaller than the median contributor)", False),
)}


# Kinds whose strength degrades the same images more: several of one kind, made alike
# but for the strength, form a ladder whose order is known.
LADDER_KINDS = ("noise", "blur")


def kind_names() -> list[str]:
    return list(KINDS)


def resolve(entries: list[dict], sizes: dict[str, int]) -> list[dict]:
    """Each canary entry with its name, size, strength and seed filled in.

    `sizes`: the real contributors' numbers of images.

    Raises:
        ValueError: an unknown kind or contributor, a name taken, a size out of range.
    """
    out, names = [], set(sizes)
    median = int(np.median(list(sizes.values())))
    for i, e in enumerate(entries):
        where = f"canaries[{i}]"
        kind = KINDS.get(e["kind"])
        if kind is None:
            raise ValueError(f"{where}: unknown kind {e['kind']!r}; choose one of {', '.join(KINDS)}")
        of = e.get("of")
        if kind.pooled and of is not None:
            raise ValueError(f"{where}: {kind.name} is made from the pooled images; 'of' applies to duplicate only")
        if not kind.pooled and of not in sizes:
            raise ValueError(f"{where}: duplicate needs 'of', one of the contributors {sorted(sizes)}; got {of!r}")
        size = sizes[of] if not kind.pooled else e.get("size") or (max(1, median // 4) if kind.name == "subsample"
                                                                   else median)
        total = sum(sizes.values())
        if kind.pooled and size > total:
            raise ValueError(f"{where}: size {size} exceeds the {total} real images")
        if kind.name == "subsample" and size >= median:
            raise ValueError(f"{where}: a subsample of {size} images is not smaller than the median contributor "
                             f"({median}), so it has no expected place; give a smaller size")
        if not kind.pooled and e.get("size") is not None:
            raise ValueError(f"{where}: a duplicate has its original's size; drop 'size'")
        strength = e.get("strength")
        strength = kind.default_strength if strength is None else strength
        default = f"canary-{kind.name}" + (f"-{of}" if of else "")
        name = e.get("name") or default
        if name in names:
            name = e.get("name") or f"{default}-{i}"
        if name in names:
            raise ValueError(f"{where}: name {name!r} is taken; give the canary another name")
        names.add(name)
        out.append({"name": name, "kind": kind.name, "of": of, "size": int(size), "strength": float(strength),
                    "seed": int(e.get("seed", 0))})
    return out


def make(canary: dict, images: np.ndarray, labels: np.ndarray, captions: np.ndarray | None = None):
    """The canary's images, labels and captions from its source arrays (its original's,
    or every real contributor's pooled in name order)."""
    kind = KINDS[canary["kind"]]
    rng = np.random.default_rng(canary["seed"])
    idx = np.arange(len(images)) if not kind.pooled else np.sort(rng.choice(len(images), canary["size"],
                                                                            replace=False))
    made = kind.make(images[idx], canary["strength"], rng)
    return made, labels[idx], None if captions is None else captions[idx]


def check(values: pd.DataFrame, canaries: list[dict], quality: Callable[[str], bool]) -> pd.DataFrame:
    """Per property and canary of one estimate's values table (credit: positive helps):
    the expectation, whether it holds, whether the intervals decide it, and the numbers.
    `quality(property)`: whether the property judges image quality (else only duplicate
    and subsample are expected). An order (below every real contributor, below the
    median one) is decided when the canary's interval lies below the other side's
    lower ends (every real contributor's, or their median); a duplicate's equality is
    what its intervals say, so decided is empty for it."""
    planted = {c["name"] for c in canaries}
    rows = []
    for prop, t in values.groupby("property", sort=False):
        t = t.set_index("contributor")
        real = t[~t.index.isin(planted)]
        sign = 1.0 if bool(t["higher_is_better"].iloc[0]) else -1.0
        lows = np.minimum(sign * real["ci_low"], sign * real["ci_high"])  # the real credits' lower ends

        def interval(who, t=t, sign=sign):  # the credit's interval
            return sorted((sign * t.loc[who, "ci_low"], sign * t.loc[who, "ci_high"]))

        for c in canaries:
            kind = KINDS[c["kind"]]
            if (kind.quality_only and not quality(prop)) or c["name"] not in t.index:
                continue
            credit = float(t.loc[c["name"], "credit"])
            low, high = interval(c["name"])
            decided = None
            if kind.name == "duplicate":
                other = float(t.loc[c["of"], "credit"])
                o_low, o_high = interval(c["of"])
                finite = np.isfinite([low, high, o_low, o_high]).all()
                holds = bool(low <= o_high and o_low <= high) if finite else None  # no intervals: not checked
                detail = f"credit {credit:.4g} [{low:.4g}, {high:.4g}]; {c['of']} {other:.4g} [{o_low:.4g}, {o_high:.4g}]"
                if not finite:
                    detail += "; without intervals (n_boot: 0) a copy cannot be checked"
            else:
                if kind.name == "subsample":
                    median = float(real["credit"].median())
                    holds, bound = credit < median, float(lows.median())
                    detail = f"credit {credit:.4g}; median real contributor {median:.4g}"
                else:
                    lowest = float(real["credit"].min())
                    holds, bound = credit < lowest, float(lows.min())
                    detail = f"credit {credit:.4g}; lowest real contributor {lowest:.4g} ({real['credit'].idxmin()})"
                if np.isfinite([high, bound]).all():
                    decided = bool(high < bound)
                    which = "median lower end" if kind.name == "subsample" else "lowest lower end"
                    detail += (f"; its interval's upper end {high + 0.0:.4g}, the real contributors' {which} "
                               f"{bound + 0.0:.4g}")
            rows.append({"property": prop, "canary": c["name"], "kind": c["kind"], "expectation": kind.expectation,
                         "holds": None if holds is None else bool(holds), "decided": decided, "credit": credit,
                         "detail": detail})
        if quality(prop):
            rows += _ladder_rows(prop, t, canaries, interval)
    return pd.DataFrame(rows, columns=["property", "canary", "kind", "expectation", "holds", "decided", "credit",
                                       "detail"])


def _ladder_rows(prop: str, t: pd.DataFrame, canaries: list[dict], interval: Callable) -> list[dict]:
    """A ladder: canaries of one degrading kind (noise, blur) made alike but for their
    strength. Each step's stronger canary is expected below the weaker one, for a
    property that judges quality; decided when its interval lies below the weaker one's."""
    rows = []
    ladders: dict[tuple, list[dict]] = {}
    for c in canaries:
        if c["kind"] in LADDER_KINDS and c["name"] in t.index:
            ladders.setdefault((c["kind"], c["size"], c["seed"]), []).append(c)
    for (kind, _, _), steps in ladders.items():
        steps = sorted(steps, key=lambda c: c["strength"])
        for weak, strong in zip(steps, steps[1:]):
            if strong["strength"] == weak["strength"]:
                continue
            credit, other = float(t.loc[strong["name"], "credit"]), float(t.loc[weak["name"], "credit"])
            (_, high), (low, _) = interval(strong["name"]), interval(weak["name"])
            finite = bool(np.isfinite([high, low]).all())
            rows.append({
                "property": prop, "canary": strong["name"], "kind": kind,
                "expectation": f"below {weak['name']}: the same images, {kind} {strong['strength']:g} against "
                               f"{weak['strength']:g}",
                "holds": bool(credit < other), "decided": bool(high < low) if finite else None, "credit": credit,
                "detail": f"credit {credit:.4g}; {weak['name']} {other:.4g}"
                          + (f"; its interval's upper end {high + 0.0:.4g}, {weak['name']}'s lower end {low + 0.0:.4g}"
                             if finite else "")})
    return rows
