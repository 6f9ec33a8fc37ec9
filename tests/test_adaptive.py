"""Adaptive budgets: the rounds' schedule, the target check, and how the plan follows
the rounds' checkpoints."""

import math

import numpy as np
import pandas as pd
import pytest
from test_plan import make_plan

from diffcredit.artifacts import write_json
from diffcredit.config import ConfigError
from diffcredit.estimators.adaptive import check_target, round_record, schedule


def test_rounds_double_up_to_the_cap_and_keep_the_share_of_retrains():
    assert schedule(8, 2, 40) == [(8, 2), (16, 4), (32, 8), (40, 10)]
    assert schedule(6, 0, 12) == [(6, 0), (12, 0)]
    assert schedule(6, 3, 13) == [(6, 3), (12, 6), (13, 6)]  # floor(3 * 13 / 6)
    with pytest.raises(ValueError, match="must exceed"):
        schedule(8, 0, 8)


def _table(values, half, prop="p"):
    values, half = np.asarray(values, float), np.asarray(half, float)
    return pd.DataFrame({"property": prop, "contributor": [f"c{i}" for i in range(len(values))], "value": values,
                         "ci_low": values - half, "ci_high": values + half})


def test_a_round_meets_the_target_by_each_criterion():
    t = _table([0.0, 1.0, 3.0], [0.2, 0.4, 0.3])
    sd = np.std([0.0, 1.0, 3.0])
    rec = round_record(t, {"half_width": 0.4})["properties"]["p"]
    assert rec["half_width"] == pytest.approx(0.4) and rec["met"]
    assert not round_record(t, {"half_width": 0.39})["met"]
    assert round_record(t, {"relative": 0.4 / sd + 1e-9})["met"]
    assert not round_record(t, {"relative": 0.4 / sd - 1e-9})["met"]
    # c0 [-0.2, 0.2], c1 [0.6, 1.4], c2 [2.7, 3.3]: every neighbour apart
    rec = round_record(t, {"order": "all"})["properties"]["p"]
    assert rec["met"] and rec["order"] == ["c2", "c1", "c0"]
    close = _table([0.0, 0.5, 3.0], [0.3, 0.3, 0.3])  # c0 and c1 overlap
    assert not round_record(close, {"order": "all"})["met"]
    assert round_record(close, {"order": ["c0", "c2"]})["met"]  # those two are apart
    # every criterion must hold, for every property
    both = pd.concat([t, _table([0.0, 1.0, 3.0], [0.2, 2.0, 0.3], prop="q")])
    assert round_record(both, {"half_width": {"p": 0.5, "q": 2.5}})["met"]
    assert not round_record(both, {"half_width": {"p": 0.5, "q": 1.5}})["met"]
    assert not round_record(t, {"half_width": 1.0, "relative": 0.1})["met"]


def test_missing_intervals_or_equal_values_never_meet_a_target():
    t = _table([0.0, 1.0], [math.nan, 0.1])
    rec = round_record(t, {"half_width": 10.0, "order": "all"})
    assert not rec["met"] and rec["properties"]["p"]["half_width"] is None
    flat = _table([1.0, 1.0], [0.1, 0.1])
    rec = round_record(flat, {"relative": 100.0})
    assert not rec["met"] and rec["properties"]["p"]["relative"] is None


@pytest.mark.parametrize("target, needle", [
    ({}, "at least one of"),
    ({"order": ["c0", "zz"]}, "'zz'"),
    ({"half_width": {"p": 1.0, "r": 1.0}}, "properties \\['r'\\]"),
    ({"half_width": {"q": 1.0}}, "no width for \\['p'\\]"),
])
def test_a_target_that_cannot_be_checked_is_refused(target, needle):
    with pytest.raises(ValueError, match=needle):
        check_target(target, ["c0", "c1"], ["p", "q"])


ADAPTIVE = {"method": "stratified", "budget": 12, "retrains": 5, "target": {"relative": 0.5, "max_budget": 40}}


SIX = {"data": {"classes": list(range(6))}}  # 62 coalitions: room for several rounds


def _finish_round(plan, key, met):
    write_json(plan.nodes[key].path, {"met": met, "budget": 0, "retrains": 0, "properties": {}}, seal=True)


def test_the_plan_follows_the_rounds_checkpoints(tmp_path):
    """Round 0 is planned; a round that misses the target adds the next (the same
    estimate as a plain entry of that budget); one that meets it gives the values;
    raising max_budget later keeps every round made."""
    plan = make_plan(tmp_path, **SIX, estimators=[ADAPTIVE])
    (est,) = plan.estimators
    assert est.label == "stratified-stratified-12to40-sft+retrain5"
    assert plan.nodes[est.key].rule == "adaptive_estimate" and len(est.masks) == 12
    (first,) = plan.keys("estimate_round")
    assert plan.parent_keys(est.key) == [first]
    assert len(plan.keys("shapley_estimate")) == 1

    _finish_round(plan, first, met=False)
    plan.load_checkpoints()
    rounds = plan.keys("estimate_round")
    assert len(rounds) == 2 and plan.parent_keys(est.key) == rounds
    second = plan.nodes[rounds[1]].parents["values"]
    plain = make_plan(tmp_path, **SIX, estimators=[{**ADAPTIVE, "target": None, "budget": 24, "retrains": 10}])
    assert second == plain.estimators[0].key

    _finish_round(plan, rounds[1], met=True)
    plan.load_checkpoints()
    assert plan.parent_keys(est.key) == [*rounds, second]  # the values: the meeting round's
    assert plan.inputs(est.key)["values"] == plan.nodes[second].path

    # A fresh plan finds the same, straight from the checkpoints.
    again = make_plan(tmp_path, **SIX, estimators=[ADAPTIVE])
    assert again.inputs(est.key) == plan.inputs(est.key)
    # A larger cap is another node, over the same rounds.
    larger = make_plan(tmp_path, **SIX, estimators=[{**ADAPTIVE, "target": {"relative": 0.5, "max_budget": 60}}])
    assert larger.estimators[0].key != est.key
    assert larger.parent_keys(larger.estimators[0].key)[:2] == rounds


def test_the_last_round_gives_the_values_whether_or_not_it_meets_the_target(tmp_path):
    plan = make_plan(tmp_path, **SIX, estimators=[{**ADAPTIVE, "target": {"order": "all", "max_budget": 24}}])
    key = plan.estimators[0].key
    _finish_round(plan, plan.keys("estimate_round")[0], met=False)
    plan.load_checkpoints()
    last = plan.keys("estimate_round")[1]
    assert "values" not in plan.inputs(key)
    _finish_round(plan, last, met=False)
    plan.load_checkpoints()
    assert plan.inputs(key)["values"] == plan.nodes[plan.nodes[last].parents["values"]].path
    assert len(plan.keys("estimate_round")) == 2


@pytest.mark.parametrize("entry, needle", [
    ({"method": "exact", "scheme": None}, "fixed design"),
    ({"n_boot": 0}, "n_boot is 0"),
    ({"target": {"max_budget": 40}}, "at least one of"),
    ({"target": {"relative": 0.5, "max_budget": 12}}, "must exceed"),
    ({"target": {"order": ["nobody", "else"], "max_budget": 40}}, "not contributors"),
    ({"target": {"relative": 0.5, "max_budget": 10**6}}, "target.max_budget"),
])
def test_an_adaptive_entry_that_cannot_work_is_refused(tmp_path, entry, needle):
    with pytest.raises(ConfigError, match=needle):
        make_plan(tmp_path, **SIX, estimators=[{**ADAPTIVE, **entry}])


def test_canaries_widen_neither_the_spread_nor_the_order():
    t = _table([0.0, 1.0, 3.0, 40.0], [0.2, 0.4, 0.3, 0.1])
    t.loc[3, "contributor"] = "canary-uniform"  # an outlier that would inflate the sd
    sd = np.std([0.0, 1.0, 3.0])
    rec = round_record(t, {"relative": 0.4 / sd + 1e-9, "order": "all"}, exclude=("canary-uniform",))
    assert rec["met"] and rec["properties"]["p"]["spread"] == pytest.approx(sd)
    assert rec["properties"]["p"]["order"] == ["c2", "c1", "c0"]
