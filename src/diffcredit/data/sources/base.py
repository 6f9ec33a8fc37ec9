"""What the data code asks of a source, and the split shared by labelled sources."""

from __future__ import annotations

import numpy as np

from ..contributors import Contributor, DataError


# The keys of the labelled sources (digits, cifar100): how their classes become contributors.
LABELLED_SCHEMA = {
    "by": {"enum": ["class", "split"], "default": "class",
           "description": "one contributor per class, or `groups` stratified seeded groups"},
    "groups": {"type": "integer", "minimum": 1, "default": 1,
               "description": "groups per class (by class) or number of groups (by split)"},
    "classes": {"type": ["array", "null"], "items": {"type": "integer"}, "uniqueItems": True, "default": None,
                "description": "keep only these classes"},
    "per_class": {"type": ["integer", "null"], "minimum": 1, "default": None,
                  "description": "keep at most this many images per class"},
    "split_seed": {"type": "integer", "default": 0},
    "shares": {"type": ["array", "null"], "items": {"type": "number", "exclusiveMinimum": 0}, "default": None,
               "description": "by: split: the groups' relative sizes (e.g. [2, 1, 1, 0.25]); default equal"},
}


class Source:
    """One data source. The data code asks these and nothing else; `spec` is the
    `data` (or `reference`) section of the config. `schema`: its own keys of the
    `data` section (JSON-schema properties with defaults)."""

    schema: dict = {}

    def describe(self, spec: dict, cache) -> list[Contributor]:
        """The contributors of `spec`, in any order, before the common checks.
        `cache` is a HashCache for results that are slow to compute."""
        raise NotImplementedError

    def describe_reference(self, spec: dict, cache) -> tuple[list[Contributor], bool]:
        """The image groups of a reference set from this source and whether they
        carry class labels."""
        raise NotImplementedError

    def image_shape(self, spec: dict) -> dict:
        """{"resolution", "channels"} of the decoded images."""
        raise NotImplementedError

    def load_items(self, spec: dict, contributor: Contributor) -> tuple[np.ndarray, np.ndarray]:
        """A contributor's items as uint8 (N, C, H, W) and int labels, in the order
        of `contributor.sources`."""
        raise NotImplementedError


class LabelledSource(Source):
    """A built-in dataset of class-labelled images of one shape, held as arrays.
    Its contributors' `sources` are row indices into `arrays`."""

    resolution: int
    channels: int

    def arrays(self, spec: dict) -> tuple[np.ndarray, np.ndarray]:
        """All images as uint8 (N, C, H, W) and their int64 labels."""
        raise NotImplementedError

    def describe_reference(self, spec, cache):
        return self.describe({**spec, "by": "class", "groups": 1}, cache), True

    def image_shape(self, spec):
        return {"resolution": self.resolution, "channels": self.channels}

    def load_items(self, spec, contributor):
        images, labels = self.arrays(spec)
        return images[contributor.sources], labels[contributor.sources]


def split_labelled(spec: dict, hashes: list, labels: np.ndarray, n_classes: int, class_name) -> list[Contributor]:
    """Contributors of a labelled dataset: one per class (`groups` > 1 splits each
    class), or `groups` stratified seeded groups (`by: split`)."""
    classes = spec.get("classes")
    if classes is None:
        classes = list(range(n_classes))
    bad = sorted(set(classes) - set(range(n_classes)))
    if bad:
        raise DataError(f"data.classes has class indices outside 0..{n_classes - 1}: {bad}")
    per_class = spec.get("per_class")
    by = spec.get("by", "class")
    groups = int(spec.get("groups", 1))
    seed = int(spec.get("split_seed", 0))
    short = {class_name(c): int(np.sum(labels == c)) for c in sorted(set(classes))
             if per_class and np.sum(labels == c) < per_class}
    if short:
        raise DataError(f"data.per_class is {per_class}, but {len(short)} class(es) hold fewer images "
                        f"({_fewest(short)}); lower per_class or leave it out to keep every image")
    kept = {}
    for c in sorted(set(classes)):
        idx = np.flatnonzero(labels == c)
        # Permute within the class so subsets and groups are seeded, not file-ordered.
        idx = idx[np.random.default_rng([seed, c]).permutation(len(idx))]
        kept[c] = idx[: int(per_class)] if per_class else idx
    check_groups(by, groups, {class_name(c): len(idx) for c, idx in kept.items()})
    shares = spec.get("shares")
    if shares is not None and (by != "split" or len(shares) != groups):
        raise DataError(f"data.shares gives the relative sizes of the groups of by: split, one per group; got "
                        f"{len(shares)} shares for by: {by} with {groups} group(s)")
    members: dict[str, list[int]] = {}
    for c, idx in kept.items():
        if shares is None:
            parts = np.array_split(idx, groups)
        else:  # every class split in the same proportions
            cuts = np.rint(np.cumsum(shares)[:-1] / np.sum(shares) * len(idx)).astype(int)
            parts = np.split(idx, cuts)
        for g, part in enumerate(parts):
            if by == "class":
                name = class_name(c) if groups == 1 else f"{class_name(c)}-{g}"
            else:
                name = f"group{g}"
            members.setdefault(name, []).extend(part.tolist())
    if shares is not None:
        empty = [f"group{g}" for g in range(groups) if not members.get(f"group{g}")]
        if empty:
            raise DataError(f"data.shares leaves {', '.join(empty)} without images; raise its share or keep more "
                            "images per class")
    out = []
    for name, rows in members.items():
        rows = sorted(rows)
        out.append(Contributor(name, [hashes[i] for i in rows], [int(labels[i]) for i in rows], rows))
    return out


def _fewest(sizes: dict[str, int]) -> str:
    """"a has 3, b has 5, ..." for the five smallest of `sizes`."""
    listed = ", ".join(f"{name} has {n}" for name, n in sorted(sizes.items(), key=lambda kv: kv[1])[:5])
    return listed + (", ..." if len(sizes) > 5 else "")


def check_groups(by: str, groups: int, sizes: dict[str, int]) -> None:
    """Refuse a split that leaves a contributor empty.

    np.array_split gives part g of n items at least one item exactly when g < n. So
    with by: class, contributor <class>-g is empty when its class has at most g items;
    with by: split, group g (part g of every class) is empty when every class has.
    """
    if not sizes:
        return
    where = "after data.classes and data.per_class"
    if by == "class" and groups > 1:
        short = {name: n for name, n in sizes.items() if n < groups}
        if short:
            listed = _fewest(short)
            raise DataError(
                f"data.by: class with groups: {groups} splits each class into {groups} contributors, so every "
                f"class needs at least {groups} items, but {len(short)} class(es) have fewer ({where}): {listed}; "
                f"lower data.groups to at most {min(short.values())} or keep more items per class"
            )
    if by == "split":
        largest = max(sizes, key=sizes.get)
        if sizes[largest] < groups:
            raise DataError(
                f"data.by: split with groups: {groups} gives group g the g-th of {groups} parts of every class, "
                f"so it needs a class of at least {groups} items, but the largest, {largest}, has "
                f"{sizes[largest]} ({where}); lower data.groups to at most {sizes[largest]}"
            )
