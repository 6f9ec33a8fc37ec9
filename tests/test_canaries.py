"""Canaries: how they are made, planned and checked."""

import numpy as np
import pandas as pd
import pytest
from test_plan import make_plan

from diffcredit.canaries import KINDS, check, make, resolve
from diffcredit.config import ConfigError

SIZES = {"a": 40, "b": 60, "c": 80}


def test_entries_are_resolved_with_sizes_names_and_strengths():
    found = resolve([{"kind": "duplicate", "of": "b"}, {"kind": "noise"}, {"kind": "noise", "strength": 0.5},
                     {"kind": "subsample"}, {"kind": "uniform", "size": 7, "name": "junk"}], SIZES)
    assert [c["name"] for c in found] == ["canary-duplicate-b", "canary-noise", "canary-noise-2",
                                          "canary-subsample", "junk"]
    assert [c["size"] for c in found] == [60, 60, 60, 15, 7]  # the original's; the median; a quarter of it
    assert [c["strength"] for c in found] == [0.0, KINDS["noise"].default_strength, 0.5, 0.0, 0.0]


@pytest.mark.parametrize("entry, needle", [
    ({"kind": "duplicate"}, "needs 'of'"),
    ({"kind": "duplicate", "of": "z"}, "got 'z'"),
    ({"kind": "duplicate", "of": "a", "size": 3}, "drop 'size'"),
    ({"kind": "noise", "of": "a"}, "duplicate only"),
    ({"kind": "uniform", "size": 181}, "exceeds the 180 real images"),
    ({"kind": "subsample", "size": 60}, "not smaller than the median"),
    ({"kind": "noise", "name": "b"}, "is taken"),
    ({"kind": "wobble"}, "unknown kind"),
])
def test_a_canary_that_cannot_be_made_is_refused(entry, needle):
    with pytest.raises(ValueError, match=needle):
        resolve([entry], SIZES)


def test_each_kind_makes_what_it_says():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 1, 8, 8), dtype=np.uint8)
    images[:, :, :, :4] = 128  # a flat half, for the blur
    labels = np.arange(50) % 5
    copy, copy_labels, _ = make({"kind": "duplicate", "size": 50, "strength": 0.0, "seed": 0}, images, labels)
    assert np.array_equal(copy, images) and np.array_equal(copy_labels, labels)
    sub, sub_labels, _ = make({"kind": "subsample", "size": 10, "strength": 0.0, "seed": 3}, images, labels)
    rows = [int(np.flatnonzero((images == s).all(axis=(1, 2, 3)))[0]) for s in sub]
    assert len(set(rows)) == 10 and np.array_equal(sub_labels, labels[rows])
    noisy, _, _ = make({"kind": "noise", "size": 50, "strength": 0.1, "seed": 0}, images, labels)
    diff = (noisy.astype(float) - images[np.sort(np.random.default_rng(0).choice(50, 50, replace=False))]) / 255
    assert 0.07 < diff[(images > 60) & (images < 195)].std() < 0.11  # clipping aside, sd 0.1 of the range
    blurred, _, _ = make({"kind": "blur", "size": 50, "strength": 1.5, "seed": 0}, images, labels)
    assert blurred.astype(float).std(axis=(2, 3)).mean() < 0.7 * images.astype(float).std(axis=(2, 3)).mean()
    again, _, _ = make({"kind": "blur", "size": 50, "strength": 1.5, "seed": 0}, images, labels)
    assert np.array_equal(again, blurred)  # seeded
    junk, _, _ = make({"kind": "uniform", "size": 20, "strength": 0.0, "seed": 0}, images, labels)
    assert junk.shape == (20, 1, 8, 8) and abs(junk.mean() - 127.5) < 8


def _values(credits: dict, half=0.1, higher=True, prop="q"):
    sign = 1.0 if higher else -1.0
    v = {k: sign * c for k, c in credits.items()}
    return pd.DataFrame({"property": prop, "contributor": list(v), "value": list(v.values()),
                         "ci_low": [x - half for x in v.values()], "ci_high": [x + half for x in v.values()],
                         "higher_is_better": higher, "credit": list(credits.values())})


@pytest.mark.parametrize("higher", [True, False])
def test_checks_say_what_holds_in_credit_terms(higher):
    canaries = resolve([{"kind": "duplicate", "of": "a"}, {"kind": "noise"}, {"kind": "subsample"}], SIZES)
    ok = _values({"a": 0.5, "b": 0.3, "c": 0.2, "canary-duplicate-a": 0.62, "canary-noise": -0.1,
                  "canary-subsample": 0.1}, higher=higher)
    found = check(ok, canaries, lambda p: True).set_index("canary")
    assert found["holds"].all() and len(found) == 3
    # Decided: the noise's interval (up to 0.0) lies below every real lower end (c's, 0.1);
    # the subsample's (up to 0.2) not below the median real lower end (b's, 0.2).
    assert found.loc["canary-noise", "decided"] is True and found.loc["canary-subsample", "decided"] is False
    assert found.loc["canary-duplicate-a", "decided"] is None
    wide = check(_values({"a": 0.5, "b": 0.3, "c": 0.2, "canary-duplicate-a": 0.62, "canary-noise": -0.1,
                          "canary-subsample": 0.1}, half=0.2, higher=higher), canaries, lambda p: True)
    noise = wide.set_index("canary").loc["canary-noise"]
    assert noise["holds"] and noise["decided"] is False  # below in value, not beyond the noise
    assert "its interval's upper end 0.1, the real contributors' lowest lower end 0" in noise["detail"]
    bad = _values({"a": 0.5, "b": 0.3, "c": 0.2, "canary-duplicate-a": 0.75, "canary-noise": 0.25,
                   "canary-subsample": 0.35}, higher=higher)
    found = check(bad, canaries, lambda p: True).set_index("canary")
    assert not found["holds"].any()
    assert "lowest real contributor 0.2 (c)" in found.loc["canary-noise", "detail"]
    # A diversity property expects nothing of noise: noise can add variety.
    assert list(check(bad, canaries, lambda p: False)["kind"]) == ["duplicate", "subsample"]


@pytest.mark.parametrize("higher", [True, False])
def test_a_ladder_of_one_kind_is_checked_step_by_step(higher):
    """Blurs of the same images at sigma 0.5, 1 and 2: each stronger step is expected below
    the weaker one for a quality property (two rows), decided where the intervals part;
    a blur of other images (another seed) is on no ladder; diversity expects nothing."""
    canaries = resolve([{"kind": "blur", "strength": s, "name": f"b{s}"} for s in (2.0, 0.5, 1.0)]
                       + [{"kind": "blur", "strength": 3.0, "seed": 1, "name": "other"}], SIZES)
    values = _values({"a": 0.5, "b": 0.3, "c": 0.2, "b0.5": 0.1, "b1.0": 0.05, "b2.0": -0.3, "other": 0.4},
                     higher=higher)
    found = check(values, canaries, lambda p: True)
    steps = found[found["expectation"].str.startswith("below b")].set_index("canary")
    assert list(steps.index) == ["b1.0", "b2.0"]
    assert steps["holds"].all()
    assert not steps.loc["b1.0", "decided"] and steps.loc["b2.0", "decided"]
    assert steps.loc["b2.0", "expectation"] == "below b1.0: the same images, blur 2 against 1"
    assert "b1.0 0.05; its interval's upper end -0.2, b1.0's lower end -0.05" in steps.loc["b2.0", "detail"]
    swapped = _values({"a": 0.5, "b": 0.3, "c": 0.2, "b0.5": 0.1, "b1.0": 0.15, "b2.0": -0.3, "other": 0.4},
                      higher=higher)
    steps = check(swapped, canaries, lambda p: True).set_index("canary")
    assert not steps[steps["expectation"].str.startswith("below b0.5")]["holds"].any()
    assert check(values, canaries, lambda p: False).empty


def test_canaries_are_players_after_the_real_contributors(tmp_path):
    canaries = [{"kind": "duplicate", "of": "digit1"}, {"kind": "uniform", "size": 20}]
    plan = make_plan(tmp_path, canaries=canaries, estimators=[{"method": "stratified", "budget": 12}])
    plain = make_plan(tmp_path / "plain")
    assert plan.names == [*plain.names, "canary-duplicate-digit1", "canary-uniform"]
    dup, junk = (plan.nodes[plan.shard_keys[n]] for n in plan.names[-2:])
    assert dup.rule == junk.rule == "canary_shard"
    assert dup.parents["shards"] == [plan.shard_keys["digit1"]] and junk.parents["shards"] == plan.all_shards
    # The real data, the reference and the classifier do not see them.
    assert plan.all_shards == [plain.shard_keys[n] for n in plain.names]
    assert plan.reference_key == plain.reference_key
    assert plan.networks == plain.networks
    # The full model trains on them: they are players.
    assert plan.full_key != plain.full_key
    with pytest.raises(ConfigError, match="canaries\\[0\\]: duplicate needs 'of'"):
        make_plan(tmp_path, canaries=[{"kind": "duplicate"}])


def test_without_intervals_a_copy_is_not_checked():
    canaries = resolve([{"kind": "duplicate", "of": "a"}], SIZES)
    t = _values({"a": 0.5, "b": 0.3, "c": 0.2, "canary-duplicate-a": 0.51}, half=float("nan"))
    (row,) = check(t, canaries, lambda p: True).itertuples()
    assert row.holds is None and "cannot be checked" in row.detail


def test_a_canary_is_keyed_by_what_it_is_made_of_not_by_names(tmp_path):
    entry = {"kind": "duplicate", "of": "digit1"}
    named = make_plan(tmp_path, canaries=[{**entry, "name": "copy"}], estimators=[{"method": "stratified",
                                                                                    "budget": 10}])
    plain = make_plan(tmp_path, canaries=[entry], estimators=[{"method": "stratified", "budget": 10}])
    assert named.shard_keys["copy"] == plain.shard_keys["canary-duplicate-digit1"]
    assert named.full_key == plain.full_key  # renaming it retrains nothing
    blurred = make_plan(tmp_path, canaries=[{**entry, "strength": 0.1}], estimators=[{"method": "stratified",
                                                                                      "budget": 10}])
    assert blurred.shard_keys["canary-duplicate-digit1"] != plain.shard_keys["canary-duplicate-digit1"]


def test_a_subsample_of_small_contributors_has_at_least_one_image():
    (c,) = resolve([{"kind": "subsample"}], {"a": 3, "b": 3, "c": 2})
    assert c["size"] == 1
