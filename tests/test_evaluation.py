"""Evaluations against retraining: LDS, fidelity, counterfactual removal, the summary
tables and the report. Numbers are checked against computations written out here."""

import base64
import io
import json
import math
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, planned, run, snakemake, write_config

from diffcredit import evaluation as ev
from diffcredit.status import load_plan
from diffcredit.summary import print_lds, print_summary

REPO = TINY.parents[1]


def _ranks(x):
    """Ranks 1..n of distinct values."""
    r = np.empty(len(x))
    r[np.argsort(x)] = np.arange(1, len(x) + 1)
    return r


def _spearman_by_hand(a, b):
    ra, rb = _ranks(np.asarray(a)), _ranks(np.asarray(b))
    n = len(a)
    return 1 - 6 * np.sum((ra - rb) ** 2) / (n * (n**2 - 1))  # no ties


# ---------------------------------------------------------------- unit


def test_subsets_are_distinct_of_the_right_size_and_prefix_stable():
    masks = ev.sample_subsets(10, 0.5, 40, seed=3)
    assert masks.shape == (40, 10) and (masks.sum(axis=1) == 5).all()
    assert len({tuple(r) for r in masks}) == 40
    np.testing.assert_array_equal(ev.sample_subsets(10, 0.5, 15, seed=3), masks[:15])
    assert not np.array_equal(ev.sample_subsets(10, 0.5, 15, seed=4), masks[:15])
    assert ev.sample_subsets(4, 0.01, 4, seed=0).sum(axis=1).tolist() == [1] * 4  # at least one member
    with pytest.raises(ValueError, match="at most 6"):
        ev.sample_subsets(4, 0.5, 7, seed=0)


def test_lds_of_an_additive_game_against_a_hand_computation():
    rng = np.random.default_rng(0)
    n, players = 8, [f"p{i}" for i in range(8)]
    w = rng.normal(size=n)
    masks = ev.sample_subsets(n, 0.5, 30, seed=1)
    truth = masks @ w
    # Retrained property: the additive truth plus seed noise (3 seeds).
    actual = np.stack([truth + rng.normal(scale=0.6, size=len(truth)) for _ in range(3)], axis=1)
    noisy = w + rng.normal(scale=0.3, size=n)  # an imperfect attribution
    got = ev.lds(pd.DataFrame({"contributor": players, "value": noisy}), masks, actual, players)
    per_seed = [100 * _spearman_by_hand(masks @ noisy, actual[:, j]) for j in range(3)]
    np.testing.assert_allclose(got["per_seed"], per_seed)
    mean, sd = np.mean(per_seed), np.std(per_seed, ddof=1)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert got["lds"] == pytest.approx(mean)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((mean - half, mean + half))
    # Exact values of a noise-free game rank every subset right.
    exact = ev.lds(pd.DataFrame({"contributor": players[::-1], "value": w[::-1]}), masks, truth[:, None], players)
    assert exact["lds"] == pytest.approx(100.0)


def test_lds_subset_interval_matches_scipy_bootstrap():
    from scipy import stats

    rng = np.random.default_rng(3)
    predicted = rng.normal(size=40)
    actual = np.stack([predicted + rng.normal(scale=1.0, size=40) for _ in range(2)], axis=1)
    low, high = ev.subset_bootstrap(predicted, actual, n_boot=4000, seed=0)

    def statistic(i):
        i = i.astype(int)
        return 100 * np.mean([stats.spearmanr(predicted[i], actual[i, j])[0] for j in range(2)])

    ref = stats.bootstrap((np.arange(40.0),), statistic, vectorized=False, n_resamples=4000,
                          method="percentile", random_state=1).confidence_interval
    assert low == pytest.approx(ref.low, abs=2.5) and high == pytest.approx(ref.high, abs=2.5)
    assert low < 100 * np.mean([stats.spearmanr(predicted, actual[:, j])[0] for j in range(2)]) < high
    # More subsets, a narrower interval; too few, none.
    wide = ev.subset_bootstrap(predicted[:10], actual[:10], n_boot=4000)
    assert wide[1] - wide[0] > high - low
    assert np.isnan(ev.subset_bootstrap(predicted[:2], actual[:2])).all()


def test_paired_lds_difference_separates_methods_whose_own_intervals_overlap():
    """Two predictions that differ on a few subsets: their unpaired intervals overlap (the
    subsets' luck moves both alike), the paired interval of the difference does not hold 0,
    and it matches a paired bootstrap computed directly with scipy."""
    from scipy import stats

    rng = np.random.default_rng(6)
    actual = rng.normal(size=(40, 1))
    good = actual[:, 0] + rng.normal(scale=0.5, size=40)
    worse = good + rng.normal(scale=0.7, size=40)  # the same predictions, blurred
    a, b = ev.subset_bootstrap(good, actual), ev.subset_bootstrap(worse, actual)
    assert b[1] > a[0]  # the unpaired intervals overlap
    low, high = ev.paired_subset_bootstrap(worse, good, actual, n_boot=4000)
    assert high < 0

    def statistic(i):
        i = i.astype(int)
        return 100 * (stats.spearmanr(worse[i], actual[i, 0])[0] - stats.spearmanr(good[i], actual[i, 0])[0])

    ref = stats.bootstrap((np.arange(40.0),), statistic, vectorized=False, n_resamples=4000,
                          method="percentile", random_state=2).confidence_interval
    assert low == pytest.approx(ref.low, abs=4) and high == pytest.approx(ref.high, abs=4)
    assert ev.paired_subset_bootstrap(good, good, actual) == (0.0, 0.0)


def test_one_seed_lds_prints_the_subset_interval():
    rng = np.random.default_rng(0)
    masks = ev.sample_subsets(6, 0.5, 12, 0)
    players = [f"p{i}" for i in range(6)]
    w = rng.normal(size=6)
    r = ev.lds(pd.DataFrame({"contributor": players, "value": w}), masks,
               (masks @ w + rng.normal(size=12))[:, None], players)
    assert np.isnan(r["ci_low"]) and r["subset_ci_low"] < r["lds"] < r["subset_ci_high"]
    table = pd.DataFrame([{"method": "m", "property": "q", "alpha": 0.5, "n_subsets": 12, "n_seeds": 1,
                           **{k: r[k] for k in ("lds", "ci_low", "ci_high", "subset_ci_low", "subset_ci_high")}}])
    out = io.StringIO()
    print_lds(table, out)
    assert "95% interval over the subsets (one seed)" in out.getvalue()
    assert out.getvalue().splitlines()[-1].split()[3:] == [
        f"{r[k]:.1f}" for k in ("lds", "subset_ci_low", "subset_ci_high")]


def test_value_comparison_and_interval_coverage():
    s = pd.DataFrame({"contributor": list("abcd"), "value": [1.0, 2.0, 3.0, 4.0],
                      "ci_low": [0.5, 1.9, 2.0, 4.5], "ci_high": [1.5, 2.1, 4.0, 5.0]})
    r = pd.DataFrame({"contributor": list("dcba"), "value": [4.2, 3.5, 2.5, 1.0]})
    got = ev.compare_values(s, r)
    truth = np.array([1.0, 2.5, 3.5, 4.2])
    assert got["coverage"] == pytest.approx(2 / 4)  # a: 1.0 in [0.5, 1.5]; c: 3.5 in [2, 4]; b, d out
    assert got["value_pearson"] == pytest.approx(np.corrcoef([1, 2, 3, 4], truth)[0, 1])
    # Widening needed: a 0, b 0.5 / 0.1 = 5, c 0.5 / 1 = 0.5, d 0.2 / 1; the 95% quantile of four is the largest.
    assert got["interval_scale"] == pytest.approx(5.0)
    assert got["value_rel_error"] == pytest.approx(np.linalg.norm(np.array([1, 2, 3, 4]) - truth)
                                                   / np.linalg.norm(truth))


def test_within_size_pearson_is_the_partial_correlation_given_size():
    rng = np.random.default_rng(3)
    sizes = np.array([1, 1, 1, 5, 5, 5, 5, 9, 9, 7])  # size 7 has one row: left out
    trend = 100.0 * (10 - sizes)
    a = trend + rng.normal(size=10)
    b = trend + rng.normal(size=10)
    # The size trend alone makes the plain correlation near 1; within sizes it is noise.
    assert ev.pearson(a, b) > 0.99
    keep = sizes != 7
    dummies = (sizes[keep, None] == np.unique(sizes[keep])[None, :]).astype(float)
    def residual(x):  # least squares on one indicator per size
        return x[keep] - dummies @ np.linalg.lstsq(dummies, x[keep], rcond=None)[0]
    expected = np.corrcoef(residual(a), residual(b))[0, 1]
    assert ev.pearson_within_size(a, b, sizes) == pytest.approx(expected)
    assert abs(expected) < 0.9
    # A game that also tracks the other within sizes: b less its size's mean, scaled.
    c = trend + 3.0 * (b - np.array([b[sizes == s].mean() for s in sizes]))
    assert ev.pearson_within_size(c, b, sizes) == pytest.approx(1.0)
    assert math.isnan(ev.pearson_within_size(a[2:5], b[2:5], sizes[2:5]))  # two rows share a size: too few


def test_removal_sets_follow_credit_not_value():
    players = ["a", "b", "c", "d", "e"]
    values = pd.DataFrame({
        "method": "m", "property": ["fid"] * 5 + ["is"] * 5, "contributor": players * 2,
        # fid: lower is better, so credit = -value; is: higher is better.
        "value": [3.0, -1.0, 0.0, 2.0, -2.0, 3.0, -1.0, 0.0, 2.0, -2.0],
        "credit": [-3.0, 1.0, 0.0, -2.0, 2.0, 3.0, -1.0, 0.0, 2.0, -2.0],
    })
    sets = {(s["property"], s["direction"]): s["removed"] for s in ev.removal_sets(values, 0.4, players)}
    assert sets[("fid", "top")] == ["b", "e"] and sets[("fid", "bottom")] == ["a", "d"]
    assert sets[("is", "top")] == ["a", "d"] and sets[("is", "bottom")] == ["b", "e"]


def test_compute_seconds_prefers_cpu_time_on_the_cpu():
    assert ev.compute_seconds({"device": "cpu", "seconds": 9.0, "cpu_seconds": 4.0}) == 4.0
    assert ev.compute_seconds({"device": "cuda:0", "seconds": 9.0, "cpu_seconds": 4.0}) == 9.0
    assert ev.compute_seconds({"device": "cpu", "seconds": 9.0}) == 9.0  # written before cpu_seconds


# ---------------------------------------------------------------- the plan


def _plan(tmp_path, cfg):
    return load_plan(REPO, [TINY, write_config(tmp_path / "ev.yaml", cfg)])


@pytest.mark.workflow
def test_a_subset_equal_to_a_design_coalition_is_one_artifact(tmp_path):
    cfg = {"evaluations": {"fidelity": {"strategies": ["sft"], "budget": 8},
                           "lds": {"subsets": 4, "alpha": [0.25, 0.5], "seeds": [0, 1]}}}
    plan = _plan(tmp_path, cfg)
    names = plan.names
    retrained = set()  # (members, seed) that must be trained from scratch, counted here
    fid = next(e for e in plan.fidelity_estimators if e.strategy == "retrain")
    retrained |= {(tuple(n for n, m in zip(names, row) if m), 0) for row in fid.masks}
    for alpha in (0.25, 0.5):
        for row in ev.sample_subsets(len(names), alpha, 4, 0):
            retrained |= {(tuple(n for n, m in zip(names, row) if m), s) for s in (0, 1)}
    nodes = [plan.nodes[k] for k in plan.keys("fine_tune") if plan.nodes[k].spec["strategy"] == "retrain"]
    assert len(nodes) == len(retrained)
    shared = {(m, 0) for m, _ in retrained} & {(tuple(n for n, x in zip(names, r) if x), 0) for r in fid.masks}
    assert shared  # the LDS subsets of size 1 and 2 overlap the design at this size
    # Seed 1 retrains start from another untrained model, seed 0 from the run's own.
    assert len(plan.keys("init_model")) == 2
    counts = planned(tmp_path / "work", configs=[tmp_path / "ev.yaml"])
    sft = len({tuple(r) for r in plan.estimators[0].masks} | {tuple(r) for r in fid.masks})
    assert counts["fine_tune"] == len(retrained) + sft
    assert counts["init_model"] == 2 and counts["lds"] == 1 and counts["fidelity"] == 1


def test_counterfactual_judges_only_the_methods_named(tmp_path):
    ests = [{"method": "exact", "budget": 14}, {"method": "loo", "n_boot": 0}]
    every = _plan(tmp_path, {"estimators": ests, "evaluations": {"counterfactual": {"fraction": 0.5}}})
    some = _plan(tmp_path, {"estimators": ests, "evaluations": {"counterfactual": {"fraction": 0.5,
                                                                                   "methods": ["loo-loo-4-sft"]}}})
    for plan, labels in ((every, ["exact-exact-14-sft", "loo-loo-4-sft"]), (some, ["loo-loo-4-sft"])):
        node = plan.nodes[plan.nodes[plan.evaluations["counterfactual"]].parents["removal"]]
        assert node.job["labels"] == labels
        assert node.parents["values"] == [e.key for e in plan.methods if e.label in labels]
    with pytest.raises(Exception, match=r"counterfactual.methods: \['trak'\] are not methods of this run"):
        _plan(tmp_path, {"estimators": ests, "evaluations": {"counterfactual": {"methods": ["trak"]}}})


def test_every_judged_estimate_has_its_own_label(tmp_path):
    two = [{"method": "stratified", "budget": 12}, {"method": "stratified", "budget": 12, "seed": 1}]
    seeds = _plan(tmp_path, {"estimators": two, "evaluations": {"lds": {"subsets": 4, "alpha": 0.5}}})
    assert [e.label for e in seeds.methods] == ["stratified-stratified-12-sft",
                                                "stratified-stratified-12-design-seed1-sft"]
    same = [{"method": "loo", "n_boot": 0}, {"method": "loo", "n_boot": 0, "budget": 10}]
    with pytest.raises(Exception, match=r"evaluations: estimators \['loo-loo-4-sft'\] appear twice"):
        _plan(tmp_path, {"estimators": same, "evaluations": {"lds": {"subsets": 4, "alpha": 0.5}}})
    assert len(_plan(tmp_path, {"estimators": same}).estimators) == 2  # no evaluation, no table to confuse


@pytest.mark.workflow
def test_lds_subsets_more_than_exist_are_refused(tmp_path):
    path = write_config(tmp_path / "bad.yaml", {"evaluations": {"lds": {"subsets": 7, "alpha": 0.5}}})
    proc = snakemake(tmp_path, "--dry-run", configs=[path], check=False)
    assert proc.returncode != 0
    assert "evaluations.lds: 7 distinct subsets of 2 of 4 contributors do not exist" in proc.stdout + proc.stderr


# ---------------------------------------------------------------- end to end on the tiny config


EVAL = {
    "estimators": [{"method": "exact", "budget": 14, "n_boot": 50}],
    "attributions": [{"method": "trak", "timesteps": 4}, {"method": "dtrak", "timesteps": 4, "lambda": [0.01, 0.1]},
                     {"method": "das", "timesteps": 4, "projection_dim": 32, "seeds": [0, 1]},
                     {"method": "relative_if", "timesteps": 4}, {"method": "renormalized_if", "timesteps": 4},
                     {"method": "pixel_similarity"}],
    "evaluations": {"fidelity": {"strategies": ["sft", "ft"], "budget": 8, "retrain_replicates": 2},
                    "lds": {"subsets": 6, "alpha": 0.5, "seeds": [0, 1]},
                    "counterfactual": {"fraction": 0.25, "seeds": [0, 1]}},
}


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("eval")
    cfg = write_config(work / "eval.yaml", EVAL)
    run(work, configs=[cfg])
    return work, cfg


@pytest.mark.workflow
def test_evaluation_tables_match_an_independent_computation(eval_run, monkeypatch):
    from scipy import stats

    work, cfg = eval_run
    monkeypatch.chdir(work)
    plan = load_plan(REPO, [TINY, cfg])
    res = work / "results-tiny"
    prop = "class_entropy"

    def v(members, strategy="retrain", seed=0):
        return json.loads(open(plan.nodes[plan.score_key(plan.model_key(members, strategy, seed))].path).read())[
            "properties"][prop]["value"]

    values = pd.read_csv(res / "values.csv")
    assert values["method"].unique().tolist() == ["exact", *(a.label for a in plan.attributions)]
    exact = values[values["method"] == "exact"].set_index("contributor")["value"]
    # LDS of the exact Shapley values (sFT), by hand.
    lds = pd.read_csv(res / "evaluation" / "lds.csv")
    masks = ev.sample_subsets(plan.n, 0.5, 6, 0)
    per_seed = []
    for seed in (0, 1):
        pred = [sum(exact[n] for n, m in zip(plan.names, r) if m) for r in masks]
        actual = [v(tuple(n for n, m in zip(plan.names, r) if m), seed=seed) for r in masks]
        per_seed.append(100 * pd.Series(pred).corr(pd.Series(actual), method="spearman"))
    row = lds[lds["method"] == plan.estimators[0].label].iloc[0]
    assert row["lds"] == pytest.approx(np.mean(per_seed))
    out = io.StringIO()
    print_summary(plan, out)
    assert "LDS x 100 on 6 retrained subsets, 95% interval over 2 seeds" in out.getvalue()
    line = next(x for x in out.getvalue().splitlines() if x.split()[:2] == [row["method"], prop])
    assert line.split()[3:] == [f"{row[c]:.1f}" for c in ("lds", "ci_low", "ci_high")]
    assert set(lds["method"]) == {e.label for e in plan.methods}
    assert {"trak", "dtrak-lambda0.01", "dtrak-lambda0.1", "das", "relative_if", "renormalized_if",
            "pixel_similarity-mean", "pixel_similarity-max"} <= set(lds["method"])
    # Fidelity of sft: the property per coalition and the values against retrain's.
    fid = pd.read_csv(res / "evaluation" / "fidelity.csv").set_index("strategy")
    est = next(e for e in plan.fidelity_estimators if e.strategy == "sft")
    rows = [tuple(n for n, m in zip(plan.names, r) if m) for r in est.masks]
    s = [v(r, "sft") for r in rows]
    t = [v(r) for r in rows]
    assert fid.loc["sft", "pearson"] == pytest.approx(np.corrcoef(s, t)[0, 1])
    sizes = np.array([len(r) for r in rows])
    assert fid.loc["sft", "pearson_within_size"] == pytest.approx(ev.pearson_within_size(s, t, sizes))
    vals = {e.strategy + str(e.replicate): pd.read_parquet(os.path.join(plan.values_dir(e), "values.parquet"))
            for e in plan.fidelity_estimators}
    a, b = vals["sft0"].set_index("contributor"), vals["retrain0"].set_index("contributor")
    assert fid.loc["sft", "value_pearson"] == pytest.approx(np.corrcoef(a["value"], b.loc[a.index, "value"])[0, 1])
    inside = ((a["ci_low"] <= b["value"]) & (b["value"] <= a["ci_high"])).mean()
    assert fid.loc["sft", "coverage"] == pytest.approx(inside)
    assert "retrain seed+1" in fid.index  # the noise floor
    # Cost: from the jobs' own records.
    def cost(strategy):
        return np.mean([json.load(open(os.path.join(plan.model_dir(plan.model_key(r, strategy)), "training.json")))[
            "cpu_seconds"] for r in rows])
    assert fid.loc["sft", "cost_ratio"] == pytest.approx(cost("sft") / cost("retrain"))
    # Counterfactual: the full model's property minus the retrained property without the removed.
    cf = pd.read_csv(res / "evaluation" / "counterfactual.csv")
    r = cf[(cf["method"] == plan.estimators[0].label) & (cf["direction"] == "top")].iloc[0]
    top = exact.idxmax()
    assert r["removed"] == top
    kept = tuple(n for n in plan.names if n != top)
    change = [v(kept, seed=s) - v(tuple(plan.names), seed=s) for s in (0, 1)]
    assert r["change"] == pytest.approx(np.mean(change))
    # The gap, paired by seed: the full model's retrain cancels.
    low = cf[(cf["method"] == plan.estimators[0].label) & (cf["direction"] == "bottom")].iloc[0]
    rest = tuple(n for n in plan.names if n != low["removed"])
    gap = np.array([v(kept, seed=s) - v(rest, seed=s) for s in (0, 1)])  # class_entropy: higher is better
    assert r["property"] == "class_entropy" and r["gap"] == pytest.approx(gap.mean())
    assert r["gap_ci_high"] - r["gap_ci_low"] == pytest.approx(2 * stats.t.ppf(0.975, 1) * gap.std(ddof=1) / np.sqrt(2))
    assert low["gap"] == r["gap"]


@pytest.mark.workflow
def test_counterfactual_retrains_are_planned_once_the_values_exist(eval_run, tmp_path, monkeypatch):
    work, cfg = eval_run
    copy = tmp_path / "copy"
    shutil.copytree(work, copy, symlinks=True)
    # Another removal fraction: new sets, found only after the values exist (a checkpoint).
    other = write_config(tmp_path / "other.yaml", {**EVAL, "evaluations": {
        **EVAL["evaluations"], "counterfactual": {"fraction": 0.5, "seeds": [0, 1]}}})
    before = planned(copy, configs=[cfg, other])
    assert before["removal_sets"] == 1 and before["counterfactual"] == 1
    assert "fine_tune" not in before  # unknown until the sets exist
    run(copy, "--until", "removal_sets", configs=[cfg, other])
    monkeypatch.chdir(copy)
    plan = load_plan(REPO, [TINY, cfg, other])
    assert plan.load_checkpoints()
    sets = json.load(open(plan.nodes[plan.nodes[plan.evaluations["counterfactual"]].parents["removal"]].path))["sets"]
    kept = {(tuple(n for n in plan.names if n not in s["removed"]), seed) for s in sets for seed in (0, 1)}
    done = {(m, seed) for m, seed in kept
            if os.path.isdir(plan.model_dir(plan.model_key(m, "retrain", seed)))}
    after = planned(copy, configs=[cfg, other])
    assert after.get("fine_tune", 0) == len(kept - done)
    assert after["counterfactual"] == 1 and "removal_sets" not in after


@pytest.mark.workflow
def test_switching_configs_rewrites_the_fixed_name_tables(eval_run, tmp_path):
    work, cfg = eval_run
    copy = tmp_path / "copy"
    shutil.copytree(work, copy, symlinks=True)
    values = copy / "results-tiny" / "values.csv"
    assert planned(copy, configs=[cfg]) == {}
    run(copy)  # the tiny config alone: values.csv of its estimator
    assert pd.read_csv(values)["method"].unique().tolist() == ["leverage"]
    assert planned(copy, configs=[cfg]) == {"summary": 1, "all": 1}
    run(copy, configs=[cfg])
    assert pd.read_csv(values)["method"].unique().tolist()[0] == "exact"
    assert "leverage" not in set(pd.read_csv(values)["method"])
    assert planned(copy, configs=[cfg]) == {}


def _embedded(html: str, name: str) -> bytes:
    """A file the HTML report embeds as a base64 data URL."""
    m = re.search(rf"filename={re.escape(name)};base64,([A-Za-z0-9+/=]+)", html)
    assert m, f"{name} is not in the report"
    return base64.b64decode(m.group(1))


@pytest.mark.workflow
def test_report_holds_the_values_and_evaluations(eval_run, tmp_path, monkeypatch):
    work, cfg = eval_run
    out = tmp_path / "report.html"
    snakemake(work, "--report", str(out), configs=[cfg])
    html = out.read_text()
    monkeypatch.chdir(work)
    plan = load_plan(REPO, [TINY, cfg])
    table = pd.read_csv(io.BytesIO(_embedded(html, "values.csv")))
    for est in plan.estimators:  # every estimate of the config, to the last digit
        want = pd.read_parquet(os.path.join(plan.values_dir(est), "values.parquet"))
        got = table[table["method"] == est.method].reset_index(drop=True)
        np.testing.assert_array_equal(got["value"].to_numpy(), want["value"].to_numpy())
        assert got["contributor"].tolist() == want["contributor"].tolist()
    for att in plan.attributions:  # and every attribution baseline's
        want = pd.read_parquet(os.path.join(plan.nodes[att.key].path, "values.parquet"))
        got = table[table["method"] == att.label].reset_index(drop=True)
        np.testing.assert_allclose(got["value"].to_numpy(), want["value"].to_numpy(), rtol=1e-12)
    for name in ("lds.csv", "fidelity.csv", "counterfactual.csv"):
        assert _embedded(html, name) == (work / "results-tiny" / "evaluation" / name).read_bytes()
    for name in ("samples.png", "class_entropy.png", "fidelity_class_entropy.png", "counterfactual_class_entropy.png"):
        assert _embedded(html, name)[:4] == b"\x89PNG"
    assert "honest intervals" in html  # the captions say how to read them


@pytest.mark.workflow
def test_attribution_credits_match_their_features(eval_run, monkeypatch):
    """TRAK's credits in values.csv, recomputed from the feature files with a direct inverse;
    DAS's intervals come from its two noise seeds."""
    work, cfg = eval_run
    monkeypatch.chdir(work)
    plan = load_plan(REPO, [TINY, cfg])
    values = pd.read_csv(work / "results-tiny" / "values.csv")
    node = plan.node(next(a.key for a in plan.attributions if a.label == "trak"))
    feats = [np.load(plan.nodes[k].path)["features"][0].astype(np.float64) for k in node.parents["train"]]
    phi, target = np.concatenate(feats), np.load(plan.nodes[node.parents["target"]].path)["features"][0]
    lam = 0.01 * (phi ** 2).sum() / len(phi)
    # (Phi^T Phi + lam I)^-1 Phi^T = Phi^T (Phi Phi^T + lam I)^-1: here far more parameters than items.
    tau = target.astype(np.float64).mean(0) @ phi.T @ np.linalg.inv(phi @ phi.T + lam * np.eye(len(phi)))
    bounds = np.cumsum([0, *(len(f) for f in feats)])
    want = [tau[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])]
    got = values[values["method"] == "trak"].set_index("contributor").loc[plan.names, "credit"]
    np.testing.assert_allclose(got, want, rtol=1e-4)
    das = values[values["method"] == "das"]
    assert (das["credit"] >= 0).all() and (das["ci_low"] < das["ci_high"]).all()
