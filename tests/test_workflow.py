"""Real Snakemake runs on configs/tiny.yaml: what reruns after which change."""

import io
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO, TINY, dry_run_error, planned, planned_outputs, run, snakemake, write_config
from diffcredit.config import deep_update, load_yaml
from diffcredit.data import load_digits_arrays
from diffcredit.plan import Plan
from diffcredit.stages import STAGES

pytestmark = pytest.mark.workflow
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def tiny_plan(workdir, *overrides):
    cfg = deep_update(load_yaml(REPO / "config.yaml"), load_yaml(TINY))
    for o in overrides:
        cfg = deep_update(cfg, load_yaml(o))
    cfg["results"] = str(workdir / cfg["results"])
    return Plan(cfg, SCHEMA)


def test_lint_is_clean(tmp_path):
    proc = snakemake(tmp_path, "--lint")
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr, proc.stdout


def test_complete_run_writes_values_and_plans_nothing_more(tiny_run):
    plan = tiny_plan(tiny_run)
    values = pd.read_parquet(os.path.join(plan.values_dir(plan.estimators[0]), "values.parquet"))
    assert sorted(values["contributor"]) == plan.names
    assert np.isfinite(values["value"]).all()
    for prop in plan.properties:
        assert os.path.isfile(os.path.join(plan.values_dir(plan.estimators[0]), f"{prop}.png"))
    assert (tiny_run / "results-tiny" / "values.csv").is_file()
    assert planned(tiny_run) == {}


def test_the_printout_says_what_the_intervals_cover(tiny_run):
    import io

    from diffcredit.summary import print_summary

    out = io.StringIO()
    print_summary(tiny_plan(tiny_run), out)
    text = out.getvalue()
    assert "class_entropy (higher is better), leverage on 8 leverage coalitions (sft)" in text
    assert "intervals: 95%, over the sampled coalitions and the generated images" in text
    assert "they do not include the error of sft against retraining" in text
    assert "the others leave out the randomness of training" in text


def test_touched_artifacts_plan_nothing(tiny_run):
    results = tiny_run / "results-tiny"
    now = time.time()
    # Make every upstream artifact newer than everything downstream of it.
    for depth, sub in enumerate(["values", "designs", "coalitions", "models", "data"]):
        for p in (results / sub).rglob("*"):
            os.utime(p, (now + depth, now + depth))
    assert planned(tiny_run) == {}


def test_recreated_identical_upstream_plans_nothing(tiny_run):
    plan = tiny_plan(tiny_run)
    full = plan.model_dir(plan.full_key)
    before = open(os.path.join(full, "diffusion_pytorch_model.safetensors"), "rb").read()
    shutil.rmtree(full)
    run(tiny_run, os.path.relpath(full, tiny_run))
    after = open(os.path.join(full, "diffusion_pytorch_model.safetensors"), "rb").read()
    assert after == before  # retraining is deterministic
    assert planned(tiny_run) == {}


def test_raising_the_budget_plans_only_the_new_coalitions(tiny_run, tmp_path):
    est = load_yaml(TINY)["estimators"][0]
    k = 2
    more = write_config(tmp_path / "more.yaml", {"estimators": [{**est, "budget": est["budget"] + k}]})
    old, new = tiny_plan(tiny_run), tiny_plan(tiny_run, more)
    assert len(set(new.coalitions) - set(old.coalitions)) == k
    assert planned(tiny_run, configs=[more]) == {
        "fine_tune": k,
        "generate": k,
        "features": k,
        "score": k,
        "coalition_sample": 1,  # the design table of the larger budget
        "shapley_estimate": 1,
        "summary": 1,  # values.csv of the new estimate
        "all": 1,
    }


def test_adding_a_property_of_the_same_extractor_plans_no_features(tiny_run, tmp_path):
    props = load_yaml(TINY)["properties"]
    extra = write_config(tmp_path / "prop.yaml", {"properties": [*props, "classifier_fd"]})
    n_models = len(tiny_plan(tiny_run).evaluated)
    # The classifier's features and reference statistics serve both properties.
    assert planned(tiny_run, configs=[extra]) == {"score": n_models, "shapley_estimate": 1, "summary": 1, "all": 1}


def test_more_generated_images_plan_no_training(tiny_run, tmp_path):
    gen = load_yaml(TINY)["generate"]
    extra = write_config(tmp_path / "gen.yaml", {"generate": {**gen, "n_images": gen["n_images"] + 16}})
    jobs = planned(tiny_run, configs=[extra])
    n_models = len(tiny_plan(tiny_run).evaluated)
    assert jobs == {"generate": n_models, "features": n_models, "score": n_models, "shapley_estimate": 1,
                    "summary": 1, "all": 1}


def test_settings_that_do_not_change_results_plan_nothing(tiny_run, tmp_path):
    same = write_config(tmp_path / "same.yaml", {
        "fine_tune": {"training": {"checkpoint_every": 3}},
        "train_full": {"checkpoint_every": 7},
        "generate": {"batch_size": 5},
        "features": {"batch_size": 3},
        "threads": 2,
    })
    assert planned(tiny_run, configs=[same]) == {}


def test_edited_rule_text_plans_nothing(tiny_run, tmp_path):
    """A new release that rewrites a rule's shell line (same stage_version) reruns nothing."""
    copy = tmp_path / "release"
    copy.mkdir()
    for item in ("Snakefile", "config.yaml", "workflow", "src", "profiles", "envs"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, copy / item)
    rules = copy / "workflow" / "rules" / "stages.smk"
    text = rules.read_text()
    line = '"{params.py} job {params.job:q} > {log:q} 2>&1"'
    assert text.count(line) == 2  # the stage template and the checkpoint template
    rules.write_text(text.replace(line, '"nice -n 0 {params.py} job {params.job:q} --no-progress > {log:q} 2>&1"'))
    proc = snakemake(tiny_run, "--dry-run", snakefile=copy / "Snakefile")
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]


def test_more_fine_tune_steps_plan_exactly_the_coalition_chain(tiny_run, tmp_path):
    ft = load_yaml(TINY)["fine_tune"]["training"]
    more = write_config(tmp_path / "steps.yaml", {"fine_tune": {"training": {**ft, "steps": ft["steps"] + 5}}})
    n = len(tiny_plan(tiny_run).coalitions)
    assert planned(tiny_run, configs=[more]) == {
        "fine_tune": n, "generate": n, "features": n, "score": n, "shapley_estimate": 1, "summary": 1, "all": 1,
    }


def test_a_shrunk_estimator_reuses_every_coalition(tiny_run, tmp_path):
    """Shrinkage is a second estimate from the same design and scores: only
    shapley_estimate runs, and its values keep efficiency and shrink."""
    work = tmp_path / "work"
    shutil.copytree(tiny_run, work, symlinks=True)
    est = load_yaml(TINY)["estimators"][0]
    both = write_config(tmp_path / "shrink.yaml", {"estimators": [est, {**est, "shrink": True}]})
    assert planned(work, configs=[both]) == {"shapley_estimate": 1, "summary": 1, "all": 1}
    run(work, configs=[both])
    plan = tiny_plan(work, both)
    plain, shrunk = (pd.read_parquet(Path(plan.values_dir(e)) / "values.parquet") for e in plan.estimators)
    assert not plain["shrink"].any() and shrunk["shrink"].all()
    for prop, table in shrunk.groupby("property"):
        diagnostics = pd.read_json(Path(plan.values_dir(plan.estimators[1])) / "diagnostics.json", typ="series")
        anchors = diagnostics[prop]
        assert table["value"].sum() == pytest.approx(anchors["v_full"] - anchors["v_empty"], abs=1e-9)
        before = plain[plain["property"] == prop]["value"].to_numpy()
        mean = before.mean()
        assert np.linalg.norm(table["value"].to_numpy() - mean) <= np.linalg.norm(before - mean) + 1e-12


def test_shrink_for_a_method_without_it_is_refused(tmp_path):
    msg = dry_run_error(tmp_path, {"estimators": [{"method": "banzhaf", "budget": 8, "shrink": True}]})
    assert "shrink is defined for the methods kernelshap, leverage, stratified, not for 'banzhaf'" in msg


def test_two_runs_give_identical_values(tiny_run, tmp_path):
    plan = tiny_plan(tiny_run)
    first = pd.read_parquet(os.path.join(plan.values_dir(plan.estimators[0]), "values.parquet"))
    run(tmp_path)
    again = tiny_plan(tmp_path)
    second = pd.read_parquet(os.path.join(again.values_dir(again.estimators[0]), "values.parquet"))
    pd.testing.assert_frame_equal(first, second, check_exact=True)


# ---------------------------------------------------------------- image folders


# Contributors' folder names as people write them: class 3's has spaces, an accent, an
# apostrophe and another script, and goes through the whole workflow in retrain_run.
FOLDER_NAMES = {3: "Zoë O'Keeffe (北斎)"}


def write_digit_folders(root, classes=(0, 1, 2, 3), per_class=30):
    images, labels = load_digits_arrays()
    for c in classes:
        folder = root / FOLDER_NAMES.get(c, f"artist{c}")
        folder.mkdir(parents=True)
        for i, idx in enumerate(np.flatnonzero(labels == c)[:per_class]):
            Image.fromarray(images[idx, 0]).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def retrain_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("folders")
    root = write_digit_folders(base / "images")
    cfg = write_config(
        base / "folders.yaml",
        {
            "data": {"source": "folder", "root": str(root), "resolution": 8, "channels": 1},
            "fine_tune": {"strategy": "retrain"},
            "train_full": {"steps": 30, "batch_size": 16, "lr": 0.002, "checkpoint_every": 10},
        },
    )
    workdir = base / "work"
    workdir.mkdir()
    run(workdir, configs=[cfg])
    return workdir, root, cfg


def test_names_as_people_write_them_go_through_the_workflow(retrain_run):
    workdir, root, cfg = retrain_run
    values = pd.read_csv(workdir / "results-tiny" / "values.csv")  # configs/tiny.yaml is the base
    assert FOLDER_NAMES[3] in set(values["contributor"])
    assert (root / FOLDER_NAMES[3]).is_dir()
    # The printout on a terminal whose encoding lacks the name's script escapes it.
    from diffcredit.summary import print_summary

    out = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    print_summary(tiny_plan(workdir, cfg), out)
    out.flush()
    assert "Zo\xeb O'Keeffe (\\u5317\\u658e)" in out.buffer.getvalue().decode("latin-1")


def test_touched_input_images_plan_nothing(retrain_run):
    workdir, root, cfg = retrain_run
    later = time.time() + 100
    for p in root.rglob("*.png"):
        os.utime(p, (later, later))
    assert planned(workdir, configs=[cfg]) == {}


def test_retrain_reruns_only_coalitions_with_the_changed_contributor(retrain_run):
    workdir, root, cfg = retrain_run
    before = tiny_plan(workdir, cfg)
    changed = "artist2"
    img = root / changed / "000.png"
    arr = np.asarray(Image.open(img)).copy()
    arr[0, 0] = 255 - arr[0, 0]
    Image.fromarray(arr).save(img)
    after = tiny_plan(workdir, cfg)
    expected = {k for k, members in after.coalitions.items() if changed in members}
    assert expected and len(expected) < len(after.coalitions)
    untouched = {k for k, m in before.coalitions.items() if changed not in m}
    assert untouched <= set(after.coalitions)  # their keys did not move
    outs = planned_outputs(workdir, "fine_tune", configs=[cfg])
    assert {o.split("/")[-2] for o in outs} == expected
    jobs = planned(workdir, configs=[cfg])
    assert jobs["fine_tune"] == len(expected)
    assert jobs["train_full"] == 1
    assert jobs["prepare_shard"] == 1


# ---------------------------------------------------------------- bad input


def folder_cfg(root, **more):
    return {"data": {"source": "folder", "root": str(root), **more}}


@pytest.fixture
def folders(tmp_path):
    return write_digit_folders(tmp_path / "images", classes=(0, 1, 2), per_class=3)


def test_empty_contributor_folder_is_refused(tmp_path, folders):
    (folders / "empty").mkdir()
    assert "contributor 'empty'" in dry_run_error(tmp_path, folder_cfg(folders))
    assert "has no images" in dry_run_error(tmp_path, folder_cfg(folders))


def test_missing_contributor_folder_is_refused(tmp_path, folders):
    cfg = {"data": {"source": "folder", "contributors": [
        {"name": "a", "path": str(folders / "artist0")},
        {"name": "b", "path": str(tmp_path / "nowhere")},
    ]}}
    msg = dry_run_error(tmp_path, cfg)
    assert "contributor 'b'" in msg and "does not exist" in msg


def test_unreadable_image_is_refused(tmp_path, folders):
    bad = folders / "artist1" / "broken.png"
    bad.write_bytes(b"not a png at all")
    msg = dry_run_error(tmp_path, folder_cfg(folders))
    assert "cannot read image" in msg and "broken.png" in msg


def test_duplicate_contributor_names_are_refused(tmp_path, folders):
    cfg = {"data": {"source": "folder", "contributors": [
        {"name": "a", "path": str(folders / "artist0")},
        {"name": "a", "path": str(folders / "artist1")},
    ]}}
    assert "duplicate contributor names: ['a']" in dry_run_error(tmp_path, cfg)


def test_fewer_than_two_contributors_is_refused(tmp_path):
    root = write_digit_folders(tmp_path / "one", classes=(5,), per_class=3)
    assert "at least 2" in dry_run_error(tmp_path, folder_cfg(root))


def test_budget_too_small_is_refused(tmp_path):
    msg = dry_run_error(tmp_path, {"estimators": [{"method": "kernelshap", "scheme": "kernel", "budget": 1}]})
    assert "budget 1 is too small" in msg


@pytest.mark.parametrize(
    "cfg, needle",
    [
        ({"properties": ["sharpness"]}, "unknown property 'sharpness'"),
        ({"fine_tune": {"strategy": "lora"}}, "unknown strategy 'lora'"),
        ({"model": {"family": "gan"}}, "unknown model.family 'gan'"),
        ({"train_full": {"steps": 0}}, "train_full.steps: 0 is less than the minimum of 1"),
        ({"fine_tune": {"training": {"steps": -5}}}, "fine_tune.training.steps: -5 is less than the minimum"),
        ({"generate": {"n_images": 0}}, "generate.n_images: 0 is less than the minimum"),
        ({"estimators": [{"method": "magic"}]}, "estimators.0.method: 'magic' is not one of"),
    ],
)
def test_invalid_config_values_are_refused(tmp_path, cfg, needle):
    assert needle in dry_run_error(tmp_path, cfg)


# ---------------------------------------------------------------- devices and resources


def job_resources(text: str, rule: str) -> list[str]:
    """The `resources:` lines of the planned jobs of `rule` in a dry-run's output."""
    out = []
    for block in re.split(r"\n(?=\[)|\n(?=(?:local)?rule )", text):
        if re.search(rf"(?:local)?rule {rule}:", block):
            m = re.search(r"resources: (.*)", block)
            out.append(m.group(1) if m else "")
    return out


@pytest.mark.parametrize("device, gpus", [("cpu", "gpu=0"), ("cuda", "gpu=1")])
def test_gpu_requests_follow_the_device(tmp_path, device, gpus):
    cfg = write_config(tmp_path / "dev.yaml", {"device": device})
    text = snakemake(tmp_path, "--dry-run", configs=[cfg]).stdout
    for rule in ("train_full", "fine_tune", "generate", "features"):
        lines = job_resources(text, rule)
        assert lines and all(gpus in line and "mem_mb=" in line for line in lines), (rule, lines)
        # the wall time of a first attempt, from the stage's record
        assert all(f"runtime={STAGES[rule].runtime}," in line for line in lines), (rule, lines)
    assert all("gpu=" not in line for line in job_resources(text, "shapley_estimate"))


def test_cuda_without_a_gpu_fails_before_any_job(tmp_path):
    cfg = write_config(tmp_path / "cuda.yaml", {"device": "cuda"})
    proc = snakemake(tmp_path, "--cores", "1", configs=[cfg], check=False)
    assert proc.returncode != 0
    assert "device is 'cuda' but this machine has no GPU" in proc.stdout + proc.stderr
    assert not (tmp_path / "results-tiny" / "data").exists()  # no job ran
    # A dry-run runs nothing, so it warns instead (short flags combined too).
    for flag in ("--dry-run", "-np"):
        dry = snakemake(tmp_path, flag, configs=[cfg])
        assert "warning: device is 'cuda' but this machine has no GPU" in dry.stderr
    assert "warning: device" not in snakemake(tmp_path, "--dry-run").stderr


# ---------------------------------------------------------------- strategies


STRATEGIES = ("sft", "ft", "retrain", "ga")


def test_four_strategies_share_every_common_artifact(tiny_run, tmp_path):
    four = write_config(tmp_path / "four.yaml", {
        "estimators": [{"method": "loo", "strategy": s, "n_boot": 0} for s in STRATEGIES]})
    n = 4  # leave-one-out coalitions of the tiny config
    assert planned(tmp_path / "fresh", configs=[four]) == {
        "prepare_shard": n, "prepare_data": 1, "reference_data": 1, "init_model": 1, "train_full": 1, "prune": 1,
        "train_classifier": 1, "reference_stats": 1, "coalition_sample": 1, "shard_set": 1,
        "fine_tune": n * len(STRATEGIES), "generate": n * len(STRATEGIES) + 2, "features": n * len(STRATEGIES) + 2,
        "score": n * len(STRATEGIES) + 2, "shapley_estimate": len(STRATEGIES), "summary": 1, "all": 1,
    }
    work = tmp_path / "work"
    shutil.copytree(tiny_run, work, symlinks=True)
    run(work, configs=[four])
    plan = tiny_plan(work, four)
    values = pd.read_csv(work / "results-tiny" / "values.csv")
    assert sorted(values["strategy"].unique()) == sorted(STRATEGIES)
    assert (values["budget"] == n).all()  # the loo design's size, not the unused default budget of 32
    starts = {"sft": plan.pruned_key, "ft": plan.full_key, "retrain": plan.init_key, "ga": plan.pruned_key}
    for key, members in plan.coalitions.items():
        node = plan.nodes[key]
        strategy = node.spec["strategy"]
        assert node.parents["start"] == starts[strategy]
        trained = json.loads((work / node.path / "training.json").read_text())["members"]
        removed = [m for m in plan.names if m not in members]
        assert trained == (removed if strategy == "ga" else list(members))


def test_a_corrected_estimate_retrains_only_its_rows_and_pairs_them_right(tiny_run, tmp_path):
    """retrains: 6 on the tiny design trains its first six coalitions from scratch and
    nothing else; its values are the correction of the cheap values by exactly those
    retrains (recomputed here from the score files, row by row), and sum to the total."""
    from diffcredit.estimators.correction import corrected_estimate

    work = tmp_path / "work"
    shutil.copytree(tiny_run, work, symlinks=True)
    est = load_yaml(TINY)["estimators"][0]
    cfg = write_config(tmp_path / "corrected.yaml", {"estimators": [est, {**est, "retrains": 6}]})
    assert planned(work, configs=[cfg]) == {"fine_tune": 6, "generate": 6, "features": 6, "score": 6,
                                            "shapley_estimate": 1, "summary": 1, "all": 1}
    run(work, configs=[cfg])
    plan = tiny_plan(work, cfg)
    cheap, corrected = plan.estimators
    table = pd.read_parquet(Path(plan.values_dir(corrected)) / "values.parquet")
    assert (table["retrains"] == 6).all()
    compute = json.loads((Path(plan.values_dir(corrected)) / "diagnostics.json").read_text())["compute"]
    assert compute["retrain_seconds"] > 0 and compute["coalition_seconds"] > 0

    def score(members, strategy, prop):
        path = work / plan.nodes[plan.score_key(plan.model_key(members, strategy))].path
        return json.loads(path.read_text())["properties"][prop]["value"]

    for prop, t in table.groupby("property"):
        rows = [plan._members(r) for r in cheap.masks]
        want, _ = corrected_estimate(
            cheap.masks, [score(m, "sft", prop) for m in rows], score((), "sft", prop),
            score(plan.names, "sft", prop), est["method"], np.arange(6),
            [score(m, "retrain", prop) for m in rows[:6]], score((), "retrain", prop),
            score(plan.names, "retrain", prop), n_boot=0)
        np.testing.assert_allclose(t["value"].to_numpy(), want["value"].to_numpy(), rtol=1e-9, atol=1e-12)
        total = score(plan.names, "retrain", prop) - score((), "retrain", prop)
        assert t["value"].sum() == pytest.approx(total, abs=1e-9)
    import io

    from diffcredit.summary import print_summary

    out = io.StringIO()
    print_summary(plan, out)
    printout = out.getvalue()
    assert "6 also retrained: values of the retrained game" in printout
    assert "also include the error of sft against retraining" in printout
    assert re.search(r"training: [\d,]+ s of coalitions \+ [\d,]+ s of retrains", printout)


def test_training_noise_trains_its_rows_again_and_widens_the_intervals(tiny_run, tmp_path):
    """training_noise: 4 on the tiny design fine-tunes its first four coalitions again and
    nothing else; the estimate keeps the plain one's values, reports the spread those
    four pairs measured (recomputed here from the score files) and widens every interval."""
    from diffcredit.estimators.training_noise import pooled_variance

    work = tmp_path / "work"
    shutil.copytree(tiny_run, work, symlinks=True)
    est = load_yaml(TINY)["estimators"][0]
    cfg = write_config(tmp_path / "noise.yaml", {"estimators": [est, {**est, "training_noise": 4}]})
    assert planned(work, configs=[cfg]) == {"fine_tune": 4, "generate": 4, "features": 4, "score": 4,
                                            "shapley_estimate": 1, "summary": 1, "all": 1}
    proc = run(work, configs=[cfg])
    plan = tiny_plan(work, cfg)
    plain, noisy = plan.estimators
    a = pd.read_parquet(Path(plan.values_dir(plain)) / "values.parquet")
    b = pd.read_parquet(Path(plan.values_dir(noisy)) / "values.parquet")
    np.testing.assert_allclose(b["value"], a["value"])
    assert ((b["ci_high"] - b["ci_low"]) > (a["ci_high"] - a["ci_low"])).all()
    diagnostics = json.loads((Path(plan.values_dir(noisy)) / "diagnostics.json").read_text())

    def scores(keys, prop):
        return [json.loads((work / plan.nodes[k].path).read_text())["properties"][prop]["value"] for k in keys]

    node = plan.nodes[noisy.key]
    for prop in plan.properties:
        variance, df = pooled_variance(scores(node.parents["rows"][:4], prop), scores(node.parents["again"], prop))
        assert diagnostics[prop]["training_noise"] == {"rows": 4, "sd": pytest.approx(np.sqrt(variance)), "df": df}
        assert f"{prop}: training changes a coalition's value by sd {np.sqrt(variance):.4g}" in proc.stdout
    assert "also include the randomness of training" in proc.stdout


def test_an_adaptive_budget_runs_rounds_until_its_target_and_a_larger_cap_continues(tiny_run, tmp_path):
    """Two adaptive entries over the tiny run's design: one whose target its first round
    meets (its values are that round's estimate), one that no round can meet (it runs to
    its cap, whose estimate is the tiny run's own). A larger cap then plans only the
    coalitions the earlier rounds did not hold."""
    import io

    from diffcredit.coalitions import sample_design
    from diffcredit.summary import print_summary

    work = tmp_path / "work"
    shutil.copytree(tiny_run, work, symlinks=True)
    est = load_yaml(TINY)["estimators"][0]
    easy = {**est, "budget": 6, "target": {"relative": 1e6, "max_budget": est["budget"]}}
    hard = {**est, "budget": 6, "target": {"half_width": 1e-9, "max_budget": est["budget"]}}
    cfg = write_config(tmp_path / "adaptive.yaml", {"estimators": [est, easy, hard]})
    # The first round's estimate is new, its coalitions are the tiny run's first six.
    assert planned(work, configs=[cfg]) == {"coalition_sample": 1, "shapley_estimate": 1, "estimate_round": 2,
                                            "adaptive_estimate": 2, "summary": 1, "all": 1}
    run(work, configs=[cfg])
    assert planned(work, configs=[cfg]) == {}
    plan = tiny_plan(work, cfg)
    plain, met, capped = plan.estimators

    def values(key):
        return pd.read_parquet(Path(plan.nodes[key].path) / "values.parquet")

    first_round = plan.nodes[plan.keys("estimate_round")[0]].parents["values"]
    pd.testing.assert_frame_equal(values(met.key), values(first_round))
    pd.testing.assert_frame_equal(values(capped.key), values(plain.key))
    assert (values(first_round)["budget"] == 6).all()
    diagnostics = json.loads((Path(plan.values_dir(capped)) / "diagnostics.json").read_text())["adaptive"]
    assert diagnostics["stopped"] == "max_budget reached, target not met" and diagnostics["rounds"] == 2
    rounds = pd.read_csv(Path(plan.values_dir(capped)) / "rounds.csv")
    assert rounds["budget"].tolist() == [6, 8] and not rounds["met"].any()
    assert (rounds["coalition_seconds"].diff().dropna() > 0).all()  # the second round holds the first's
    assert pd.read_csv(Path(plan.values_dir(met)) / "rounds.csv")["met"].tolist() == [True]
    out = io.StringIO()
    print_summary(plan, out)
    assert "adaptive (relative 1000000.0): target met after 1 rounds, 6 coalitions" in out.getvalue()
    assert "adaptive (half_width 1e-09): max_budget reached, target not met after 2 rounds" in out.getvalue()

    # A larger cap: the rounds made stay; only the new rows of the larger design train.
    more = {**hard, "target": {**hard["target"], "max_budget": 12}}
    cfg = write_config(tmp_path / "more.yaml", {"estimators": [est, easy, more]})
    bigger = tiny_plan(work, cfg).estimators[2]
    added = ({tuple(r) for r in sample_design(len(plan.names), 12, plain.scheme, plain.seed)}
             - {tuple(r) for r in plain.masks})
    assert bigger.key != capped.key and added
    assert planned(work, configs=[cfg]) == {"fine_tune": len(added), "generate": len(added),
                                            "features": len(added), "score": len(added), "coalition_sample": 1,
                                            "shapley_estimate": 1,
                                            "estimate_round": 1, "adaptive_estimate": 1, "summary": 1, "all": 1}


def test_canaries_are_made_estimated_and_checked(tmp_path):
    """A run with a duplicate and a uniform-noise canary: their shards, their values, the
    checks in canaries.csv and values.csv, and the printout's lines."""
    import io

    from diffcredit.summary import print_summary

    cfg = write_config(tmp_path / "canaries.yaml", {
        "canaries": [{"kind": "duplicate", "of": "digit1"}, {"kind": "uniform", "size": 30}],
        "properties": ["class_entropy", "classifier_fd"],
        "estimators": [{"method": "stratified", "budget": 12}]})
    run(tmp_path, configs=[cfg])
    plan = tiny_plan(tmp_path, cfg)
    copy = np.load(plan.nodes[plan.shard_keys["canary-duplicate-digit1"]].path)
    original = np.load(plan.nodes[plan.shard_keys["digit1"]].path)
    assert np.array_equal(copy["images"], original["images"])
    assert len(np.load(plan.nodes[plan.shard_keys["canary-uniform"]].path)["images"]) == 30
    checks = pd.read_csv(tmp_path / "results-tiny" / "canaries.csv")
    # class_entropy judges variety, not quality: only the duplicate is expected there.
    assert sorted(zip(checks["property"], checks["kind"])) == [
        ("class_entropy", "duplicate"), ("classifier_fd", "duplicate"), ("classifier_fd", "uniform")]
    values = pd.read_csv(tmp_path / "results-tiny" / "values.csv")
    for r in checks.itertuples():
        row = values[(values["property"] == r.property) & (values["contributor"] == r.canary)].iloc[0]
        assert row["canary"] == r.kind and bool(row["canary_holds"]) == bool(r.holds)
    assert values[~values["contributor"].str.startswith("canary")]["canary_holds"].isna().all()
    out = io.StringIO()
    print_summary(plan, out)
    for r in checks.itertuples():
        assert f"{r.property}: {r.canary} {'holds' if r.holds else 'DOES NOT HOLD'}" in out.getvalue()


def test_a_repeated_configfile_option_is_refused(tmp_path):
    """Snakemake keeps only the last --configfile option: the first file would be dropped."""
    other = write_config(tmp_path / "other.yaml", {"estimators": [{"method": "loo"}]})
    proc = snakemake(tmp_path, "--dry-run", "--configfile", str(other), configs=[], check=False, timeout=300)
    assert proc.returncode != 0 and "Job stats" not in proc.stdout
    assert "--configfile is given more than once" in proc.stdout + proc.stderr


def test_a_run_of_two_contributors_completes_for_every_method_that_takes_two(tmp_path):
    """The fewest contributors a config allows: every estimator that accepts two players
    at its smallest budget writes two finite values. With two players one coalition and
    efficiency fix the Shapley values, so the sampled estimators give the exact ones;
    those and the tree surrogate add up to v(full) - v(empty); leave-one-out is
    v(full) - v(full without i). Checked against the run's own scores."""
    cfg = write_config(tmp_path / "two.yaml", {
        "data": {"classes": [0, 1]},
        "estimators": [{"method": m, "budget": 2} for m in ("kernelshap", "leverage", "stratified",
                                                            "stratified_tree")]
        + [{"method": "loo"}, {"method": "exact"}]})
    run(tmp_path, configs=[cfg])
    check_two_player_values(tmp_path, cfg)


def check_two_player_values(workdir, cfg):
    table = pd.read_csv(workdir / "results-tiny" / "values.csv")
    assert sorted(table["method"].unique()) == sorted(["kernelshap", "leverage", "stratified", "stratified_tree",
                                                       "loo", "exact"])
    plan = tiny_plan(workdir, cfg)

    def v(*members):
        node = plan.nodes[plan.score_key(plan.model_key(members))]
        return json.loads(Path(node.path).read_text())["properties"]["class_entropy"]["value"]

    a, b = "digit0", "digit1"
    exact = {a: ((v(a) - v()) + (v(a, b) - v(b))) / 2, b: ((v(b) - v()) + (v(a, b) - v(a))) / 2}
    loo = {a: v(a, b) - v(b), b: v(a, b) - v(a)}
    for method, rows in table.groupby("method"):
        got = rows.set_index("contributor")["value"].to_dict()
        assert sorted(got) == [a, b] and np.isfinite(list(got.values())).all(), method
        if method == "loo":
            assert got == pytest.approx(loo, abs=1e-9), method
        elif method == "stratified_tree":
            assert sum(got.values()) == pytest.approx(v(a, b) - v(), abs=1e-6), method
        else:
            assert got == pytest.approx(exact, abs=1e-6), method
