"""The plan's keys: what a change invalidates, what designs share."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffcredit.config import ConfigError, deep_update, load_yaml
from diffcredit.plan import Plan

from conftest import REPO, TINY

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def folders(root, names=("a", "b", "c", "d"), n=3):
    rng = np.random.default_rng(1)
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def make_plan(tmp_path, **override):
    cfg = deep_update(load_yaml(REPO / "config.yaml"), load_yaml(TINY))
    cfg = deep_update(cfg, override)
    cfg["results"] = str(tmp_path / "results")
    return Plan(cfg, SCHEMA)


def change_one_image(folder):
    img = sorted(folder.iterdir())[0]
    arr = np.asarray(Image.open(img)).copy()
    arr[0, 0] ^= 1
    Image.fromarray(arr).save(img)


@pytest.mark.parametrize("strategy", ["sft", "retrain"])
def test_what_a_changed_contributor_invalidates(tmp_path, strategy):
    root = folders(tmp_path / "img")
    over = {"data": {"source": "folder", "root": str(root)}, "fine_tune": {"strategy": strategy}}
    before = make_plan(tmp_path, **over)
    change_one_image(root / "b")
    after = make_plan(tmp_path, **over)
    assert after.init_key == before.init_key
    assert after.full_key != before.full_key
    moved = {m for k, m in before.coalitions.items() if k not in after.coalitions}
    if strategy == "sft":
        # Every coalition starts from the pruned model, which saw b's data.
        assert moved == set(before.coalitions.values())
    else:
        assert moved == {m for m in before.coalitions.values() if "b" in m}
        assert moved and len(moved) < len(before.coalitions)


@pytest.mark.parametrize("change", ["rename", "remove", "add"])
def test_a_renamed_removed_or_added_contributor_keeps_the_models_it_does_not_touch(tmp_path, change):
    """Keys hold content, not names: a renamed contributor folder keeps every model; with
    one contributor removed or added, a retrained coalition of the others keeps its key
    (the full model, and so every fine-tuned coalition, moves: it saw other data)."""
    import shutil

    root = folders(tmp_path / "img", names=("a", "b", "c", "d", "e"))
    if change == "add":
        shutil.move(root / "e", tmp_path / "e")
    over = {"data": {"source": "folder", "root": str(root)}, "fine_tune": {"strategy": "retrain"}}
    before = make_plan(tmp_path, **over)
    if change == "rename":
        (root / "c").rename(root / "c renamed")
    elif change == "remove":
        shutil.rmtree(root / "e")
    else:
        shutil.move(tmp_path / "e", root / "e")
    after = make_plan(tmp_path, **over)
    named = {"c": "c renamed"} if change == "rename" else {}
    for members in (("a", "b"), ("b", "c", "d"), ("a",), ("a", "b", "c", "d")):
        assert before.model_key(members, "retrain") == after.model_key([named.get(m, m) for m in members],
                                                                       "retrain"), members
    assert (after.full_key == before.full_key) == (change == "rename")
    assert (after.model_key(("a", "b"), "sft") == before.model_key(("a", "b"), "sft")) == (change == "rename")


def test_anchors_and_shared_coalitions(tmp_path):
    plan = make_plan(
        tmp_path,
        estimators=[{"method": "leverage", "budget": 8}, {"method": "exact"}],
    )
    assert plan.model_key(()) == plan.init_key
    assert plan.model_key(plan.names) == plan.full_key
    # The exact design holds every coalition, so the union is 2^n - 2 models.
    assert len(plan.coalitions) == 2 ** plan.n - 2
    a, b = plan.estimators
    shared = {plan.model_key(plan._members(r)) for r in a.masks}
    assert shared <= {plan.model_key(plan._members(r)) for r in b.masks}


def test_raising_the_budget_keeps_every_existing_key(tmp_path):
    small = make_plan(tmp_path, estimators=[{"method": "kernelshap", "scheme": "kernel_paired", "budget": 12}])
    large = make_plan(tmp_path, estimators=[{"method": "kernelshap", "scheme": "kernel_paired", "budget": 20}])
    assert set(small.coalitions) <= set(large.coalitions)
    assert np.array_equal(large.estimators[0].masks[:12], small.estimators[0].masks)


def test_checkpoint_interval_does_not_change_keys(tmp_path):
    a = make_plan(tmp_path, fine_tune={"training": {"checkpoint_every": 5}})
    b = make_plan(tmp_path, fine_tune={"training": {"checkpoint_every": 7}})
    assert set(a.coalitions) == set(b.coalitions)


def test_a_constant_schedule_keeps_the_keys_it_had_before_schedules(tmp_path):
    from diffcredit.keys import artifact_key

    plan = make_plan(tmp_path)
    assert make_plan(tmp_path, fine_tune={"training": {"schedule": "constant"}}).coalitions == plan.coalitions
    cosine = make_plan(tmp_path, fine_tune={"training": {"schedule": "cosine"}})
    assert not set(cosine.coalitions) & set(plan.coalitions)
    # The full model's key, computed as it was before the option existed.
    section = {k: v for k, v in plan.cfg["train_full"].items() if k not in ("checkpoint_every", "schedule")}
    want = artifact_key("train", {"strategy": "retrain", "recipe": section},
                        {"start": plan.init_key, "shards": sorted(plan.shard_keys.values())})
    assert plan.full_key == want


def test_invalid_model_shape_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="multiples of norm_num_groups"):
        make_plan(tmp_path, model={"block_out_channels": [12, 32], "norm_num_groups": 8})


def test_a_shrunk_estimator_shares_the_design_not_the_estimate(tmp_path):
    plan = make_plan(tmp_path, estimators=[{"method": "stratified", "budget": 8},
                                           {"method": "stratified", "budget": 8, "shrink": True}])
    plain, shrunk = plan.estimators
    assert plain.design_key == shrunk.design_key
    assert plain.key != shrunk.key
    assert (plain.shrink, shrunk.shrink) == (False, True)
    assert plan.values_dir(plain) != plan.values_dir(shrunk)


def test_a_clean_reference_set_trains_the_classifier_on_its_labels(tmp_path):
    """Contributors may include junk: FID and the classifier then use a clean reference."""
    root = folders(tmp_path / "img")
    plan = make_plan(tmp_path, data={"source": "folder", "root": str(root)}, reference={"source": "digits"},
                     properties=["class_entropy", "classifier_fd"])
    ref = plan.nodes[plan.reference_key]
    assert ref.parents == {}  # the digits, not the contributors' shards
    clf = plan.nodes[plan.networks["classifier"]]
    assert clf.parents == {"reference": plan.reference_key}
    stats = plan.nodes[plan.reference_stats["classifier"]]
    assert stats.parents == {"images": plan.reference_key, "classifier": clf.key}


def test_an_unlabelled_reference_trains_the_classifier_on_contributors(tmp_path):
    root = folders(tmp_path / "img")
    plan = make_plan(tmp_path, data={"source": "folder", "root": str(root)})
    clf = plan.nodes[plan.networks["classifier"]]
    assert clf.parents == {"shards": plan.all_shards}
    assert plan.nodes[plan.reference_key].parents == {"shards": plan.all_shards}


def test_every_node_path_is_unique_and_parents_exist(tmp_path):
    plan = make_plan(tmp_path, estimators=[{"method": "leverage", "budget": 8},
                                           {"method": "loo", "strategy": "ga"}])
    paths = [n.path for n in plan.nodes.values()]
    assert len(paths) == len(set(paths))
    for node in plan.nodes.values():
        for parent in node.parents.values():
            for p in parent if isinstance(parent, list) else [parent]:
                assert p in plan.nodes or node.rule == "prepare_shard", (node.rule, p)


def test_unfinished_training_jobs_wait_for_one_shard_stamp_and_finished_ones_for_nothing(tmp_path):
    """A coalition's rule inputs do not grow with its members: an unfinished training job
    waits for the shard set's stamp (which waits for every training shard, canaries
    included), a finished one for no shard; the job itself still reads its members'."""
    plan = make_plan(tmp_path, canaries=[{"kind": "uniform", "size": 10}],
                     estimators=[{"method": "stratified", "budget": 10, "strategy": "retrain"}])
    stamp = plan.nodes[plan.shard_set_key]
    assert stamp.parents["shards"] == sorted(plan.train_shards[n] for n in plan.names)
    key = max(plan.coalitions, key=lambda k: len(plan.coalitions[k]))  # a complement: several shards
    members = [plan.nodes[plan.train_shards[n]].path for n in plan.coalitions[key]]
    assert sorted(plan.job(key)["inputs"]["shards"]) == sorted(members)
    assert plan.rule_inputs(key)["shards"] == [stamp.path]
    assert plan.rule_inputs(key)["start"] == plan.inputs(key)["start"]
    Path(plan.nodes[key].path).mkdir(parents=True)  # finished (outputs are atomic)
    assert "shards" not in plan.rule_inputs(key) and sorted(plan.job(key)["inputs"]["shards"]) == sorted(members)
    # Data stages keep every shard as an input.
    assert plan.rule_inputs(plan.manifest_key)["shards"] == plan.inputs(plan.manifest_key)["shards"]
    # The proxy strategy's conditioning jobs read their members' shards too: the same.
    proxy = make_plan(tmp_path, model={"family": "ddpm_cond"}, fine_tune={"strategy": "proxy"},
                      estimators=[{"method": "stratified", "budget": 10}])
    key = max(proxy.keys("condition"), key=lambda k: len(proxy.inputs(k)["shards"]))
    assert len(proxy.inputs(key)["shards"]) > 1 and proxy.rule_inputs(key)["shards"] == \
        [proxy.nodes[proxy.shard_set_key].path]


def test_a_corrected_estimate_retrains_the_first_rows_and_shares_them(tmp_path):
    """The retrains are the design's first k coalitions under retrain: the same models a
    fidelity evaluation of the same design retrains, and more retrains keep the earlier."""
    est = {"method": "stratified", "budget": 8}
    plan = make_plan(tmp_path, estimators=[est, {**est, "retrains": 5}, {**est, "retrains": 7}],
                     evaluations={"fidelity": {"strategies": ["sft"], "method": "stratified", "budget": 8}})
    cheap, five, seven = plan.estimators
    assert cheap.design_key == five.design_key == seven.design_key
    assert five.label == "stratified-stratified-8-sft+retrain5"
    retrained = [plan.score_key(plan.model_key(plan._members(r), "retrain")) for r in cheap.masks]
    assert plan.nodes[five.key].parents["retrained"] == retrained[:5]
    assert plan.nodes[seven.key].parents["retrained"] == retrained[:7]
    assert plan.nodes[five.key].parents["rows"] == plan.nodes[cheap.key].parents["rows"]
    fidelity = plan.nodes[plan.evaluations["fidelity"]].parents["rows"]
    assert set(retrained) <= set(fidelity)
    assert "retrains" not in plan.nodes[cheap.key].spec  # estimates without retrains keep their keys


@pytest.mark.parametrize("entry, needle", [
    ({"retrains": 4}, "leave 2 degrees of freedom"),
    ({"retrains": 9}, "more than the design's 8 coalitions"),
    ({"retrains": 5, "strategy": "retrain"}, "already retrain"),
    ({"retrains": 5, "method": "banzhaf", "scheme": "banzhaf"}, "needs a Shapley method"),
])
def test_a_corrected_estimate_that_cannot_work_is_refused(tmp_path, entry, needle):
    with pytest.raises(ConfigError, match=needle):
        make_plan(tmp_path, estimators=[{"method": "stratified", "budget": 8, **entry}])


def test_training_noise_trains_the_first_rows_again_with_the_next_seed(tmp_path):
    """training_noise: k adds the design's first k coalitions fine-tuned with the recipe's
    seed + 1: new models (their keys differ from the rows'), which a larger k keeps; the
    estimate without it keeps its key."""
    est = {"method": "stratified", "budget": 8}
    plan = make_plan(tmp_path, estimators=[est, {**est, "training_noise": 3}, {**est, "training_noise": 5}])
    plain, three, five = plan.estimators
    assert three.label == "stratified-stratified-8-sft+noise3"
    assert "training_noise" not in plan.nodes[plain.key].spec
    rows = plan.nodes[plain.key].parents["models"]
    again = plan.nodes[five.key].parents["again_models"]
    assert plan.nodes[three.key].parents["again_models"] == again[:3]
    assert len(set(again) | set(rows)) == len(rows) + 5
    for row, other in zip(rows, again):
        a, b = plan.nodes[row], plan.nodes[other]
        assert a.parents == b.parents  # same start model, same shards
        assert b.spec["recipe"]["seed"] == a.spec["recipe"]["seed"] + 1
        def unseeded(spec):
            return {**spec, "recipe": {**spec["recipe"], "seed": 0}}

        assert unseeded(b.spec) == unseeded(a.spec)
    assert plan.nodes[five.key].parents["again"] == [plan.score_key(m) for m in again]


@pytest.mark.parametrize("entry, needle", [
    ({"training_noise": 1}, "at least 2 rows"),
    ({"training_noise": 9}, "more than the design's 8 coalitions"),
    ({"training_noise": 4, "n_boot": 0}, "n_boot is 0"),
    ({"training_noise": 4, "retrains": 5}, "training_noise with retrains is not supported"),
])
def test_training_noise_that_cannot_work_is_refused(tmp_path, entry, needle):
    with pytest.raises(ConfigError, match=needle):
        make_plan(tmp_path, estimators=[{"method": "stratified", "budget": 8, **entry}])


def test_fidelity_judges_corrected_estimates_on_its_own_retrains(tmp_path):
    plan = make_plan(tmp_path, evaluations={"fidelity": {"strategies": ["sft", "ft"], "method": "stratified",
                                                         "budget": 8, "retrains": [5]}})
    labels = [e.label for e in plan.fidelity_estimators]
    assert labels == ["stratified-stratified-8-sft", "stratified-stratified-8-ft", "stratified-stratified-8-sft+retrain5",
                      "stratified-stratified-8-ft+retrain5", "stratified-stratified-8-retrain"]
    node = plan.nodes[plan.evaluations["fidelity"]]
    layout = node.job["layout"]
    assert [(x["rows"], x["models"]) for x in layout] == [(8, 8), (8, 8), (8, 13), (8, 13), (8, 8)]
    truth = plan.fidelity_estimators[-1]
    retrained = [plan.model_key(plan._members(r), "retrain") for r in truth.masks]
    # The corrected estimates' retrains are the first rows of the retrained design: nothing new to train.
    assert node.parents["models"][24:29] == retrained[:5]  # after sft (8), ft (8), sft+retrain5 rows (8)
    assert set(node.parents["models"]) - set(plan.coalitions) <= {plan.full_key, plan.init_key}


@pytest.mark.parametrize("override, needle", [
    ({"fine_tune": {"training": {"lr": float("nan")}}}, "fine_tune.training.lr: must be a finite number, got nan"),
    ({"generate": {"eta": float("inf")}}, "generate.eta: .*inf"),
    ({"attributions": [{"method": "trak", "lambda": [0.1, float("nan")]}]},
     "attributions.0.lambda.1: must be a finite number"),
    ({"generate": {"seed": -5}}, "generate.seed: a seed must be from 0 to 2\\*\\*32 - 1, got -5"),
    ({"data": {"split_seed": -1}}, "data.split_seed: a seed must be"),
    ({"model": {"seed": 2**64}}, "model.seed: a seed must be .* got 18446744073709551616"),
    ({"attributions": [{"method": "das", "seeds": [0, -2]}]}, "attributions.0.seeds.1: a seed must be"),
    ({"estimators": [{"method": "leverage", "budget": 8, "n_boot": 1}]},
     "estimators.0.n_boot: 1 resamples cannot make a 95% interval; use 0 .* or at least 40"),
    ({"scores": {"image_bootstrap": 5}}, "scores.image_bootstrap: 5 resamples"),
])
def test_numbers_the_schema_cannot_judge_are_refused_with_their_key(tmp_path, override, needle):
    with pytest.raises(ConfigError, match=needle):
        make_plan(tmp_path, **override)


def test_numbers_written_as_yaml_1_2_reads_them_or_as_integral_floats_key_like_their_plain_form(tmp_path):
    """Snakemake reads 1e-4 as text (YAML 1.1 wants 1.0e-4) and 20.0 as a float; both are
    the numbers a user meant, with the keys the plain forms give (no silent rerun)."""
    plain = make_plan(tmp_path, fine_tune={"training": {"steps": 20, "lr": 0.0001}},
                      estimators=[{"method": "leverage", "budget": 8}], attributions=[{"method": "trak",
                                                                                        "lambda": [0.001, 0.01]}])
    written = make_plan(tmp_path, fine_tune={"training": {"steps": 20.0, "lr": "1e-4"}},
                        estimators=[{"method": "leverage", "budget": "8"}], attributions=[{"method": "trak",
                                                                                            "lambda": ["1e-3", "1E-2"]}])
    assert written.cfg["fine_tune"]["training"]["steps"] == 20
    quoted = make_plan(tmp_path, generate={"seed": "42"}, data={"classes": ["0", "1", "2", "3"]})  # numbers in quotes
    assert quoted.cfg["generate"]["seed"] == 42 and quoted.cfg["data"]["classes"] == [0, 1, 2, 3]
    assert quoted.names == make_plan(tmp_path).names
    assert type(written.cfg["fine_tune"]["training"]["steps"]) is int
    assert written.cfg["fine_tune"]["training"]["lr"] == 1e-4
    assert sorted(written.coalitions) == sorted(plain.coalitions)
    assert [a.key for a in written.attributions] == [a.key for a in plain.attributions]
    with pytest.raises(ConfigError, match="fine_tune.training.steps: 20.5 is not of type 'integer'"):
        make_plan(tmp_path, fine_tune={"training": {"steps": 20.5}})
    with pytest.raises(ConfigError, match="fine_tune.training.lr: '1e-4x' is not of type 'number'"):
        make_plan(tmp_path, fine_tune={"training": {"lr": "1e-4x"}})
    from diffcredit.config import validate

    with pytest.raises(ConfigError, match="results: 5.0 is not of type 'string'"):  # text keys stay as written
        validate({"results": 5.0}, SCHEMA)


def test_yaml_anchors_merge_under_x_keys(tmp_path):
    """A recipe written once under an x- key (never read) and merged where it is used;
    a key the merge brings in may be given again beside it."""
    path = tmp_path / "c.yaml"
    path.write_text("x-recipe: &recipe {steps: 20, batch_size: 32, checkpoint_every: 10, lr: 0.5}\n"
                    "fine_tune:\n  training:\n    <<: *recipe\n    lr: 0.001\n"
                    "prune:\n  training: *recipe\n")
    cfg = load_yaml(path)
    assert cfg["fine_tune"]["training"] == {"steps": 20, "batch_size": 32, "checkpoint_every": 10, "lr": 0.001}
    plan = make_plan(tmp_path, **cfg)
    assert plan.cfg["prune"]["training"]["lr"] == 0.5
    path.write_text("fine_tune:\n  training:\n    lr: 0.1\n    lr: 0.2\n")
    with pytest.raises(ConfigError, match="key 'lr' is given twice"):
        load_yaml(path)


def test_numbers_in_range_pass_the_second_check(tmp_path):
    plan = make_plan(tmp_path, generate={"seed": 2**32 - 1}, estimators=[{"method": "leverage", "budget": 8,
                                                                          "n_boot": 40}])
    assert plan.cfg["generate"]["seed"] == 2**32 - 1


def test_a_path_with_a_tilde_is_the_home_folder(tmp_path, monkeypatch):
    """results: ~/x is where a shell user expects it, not a ./~ folder; the same for data paths."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = folders(tmp_path / "home" / "img")
    plan = make_plan(tmp_path, data={"source": "folder", "root": "~/img"})
    assert plan.cfg["data"]["root"] == str(root)
    from diffcredit.config import validate

    cfg = validate({"results": "~/runs/a", "reference": {"source": "stats", "file": "~/ref.npz"}}, SCHEMA)
    assert cfg["results"] == str(tmp_path / "home" / "runs" / "a")
    assert cfg["reference"]["file"] == str(tmp_path / "home" / "ref.npz")


def test_environment_variables_in_paths_are_expanded_or_named_when_unset(tmp_path, monkeypatch):
    """results: $SCRATCH/x (what cluster users write) is that folder, not ./$SCRATCH; a
    variable that is not set is refused by name, not made into a folder. A $ that starts
    no variable name stays as written."""
    from diffcredit.config import ConfigError, validate

    monkeypatch.setenv("DC_SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.delenv("DC_UNSET", raising=False)
    root = folders(tmp_path / "scratch" / "img")
    plan = make_plan(tmp_path, data={"source": "folder", "root": "${DC_SCRATCH}/img"})
    assert plan.cfg["data"]["root"] == str(root)
    assert validate({"results": "$DC_SCRATCH/runs"}, SCHEMA)["results"] == str(tmp_path / "scratch" / "runs")
    assert validate({"results": "a $(b) 5$"}, SCHEMA)["results"] == "a $(b) 5$"
    with pytest.raises(ConfigError) as err:
        validate({"results": "$DC_UNSET/runs", "reference": {"source": "stats", "file": "${DC_UNSET}/r.npz"}},
                 SCHEMA)
    assert "results: '$DC_UNSET/runs' names the environment variable(s) DC_UNSET, which are not set" in str(err.value)
    assert "reference.file: '${DC_UNSET}/r.npz' names" in str(err.value)


def test_a_bare_method_name_is_an_entry_with_that_method(tmp_path):
    plan = make_plan(tmp_path, estimators=["loo"], attributions=["pixel_similarity"])
    assert [e.method for e in plan.estimators] == ["loo"]
    explicit = make_plan(tmp_path, attributions=[{"method": "pixel_similarity"}])
    assert [a.key for a in plan.attributions] == [a.key for a in explicit.attributions]


@pytest.mark.parametrize("override, needle", [
    ({"features": {"classifier": {"holdout": 0.999}}}, "features.classifier.holdout: 0.999 is greater than the maximum"),
    ({"model": {"beta_schedule": "linear", "beta_start": 0.5, "beta_end": 2.0}}, "model.beta_end: 2.0 is greater than"),
    ({"prune": {"ratio": 0.6}}, "prune.ratio 0.6 would leave the narrowest level .16 channels. fewer than its 8 norm"),
])
def test_values_no_training_can_use_are_refused(tmp_path, override, needle):
    with pytest.raises(ConfigError, match=needle):
        make_plan(tmp_path, **override)


def test_raising_a_threshold_above_a_trained_classifier_is_refused(tmp_path):
    """min_accuracy is checked when the classifier trains; raised later, the classifier
    already on disk (which its key keeps) is judged against it before any job."""
    import json

    plan = make_plan(tmp_path, features={"classifier": {"min_accuracy": 0.5}})
    folder = Path(plan.nodes[plan.networks["classifier"]].path)
    folder.mkdir(parents=True)
    (folder / "classifier.json").write_text(json.dumps({"heldout_accuracy": 0.8}))
    make_plan(tmp_path, features={"classifier": {"min_accuracy": 0.8}})  # still met
    with pytest.raises(ConfigError, match="held-out accuracy 0.8000, below features.classifier.min_accuracy 0.9"):
        make_plan(tmp_path, features={"classifier": {"min_accuracy": 0.9}})


@pytest.mark.parametrize("data, needle", [
    ({"root": "/somewhere"}, "data.root is a key of data sources cifar100, folder, not of digits"),
    ({"resolution": 32, "channels": 3}, "data.resolution is a key of data source folder, not of digits"),
    ({"source": "cifar100", "background": 0}, "data.background is a key of data source folder, not of cifar100"),
])
def test_a_data_key_the_source_does_not_use_is_refused(tmp_path, data, needle):
    with pytest.raises(ConfigError, match=needle):
        make_plan(tmp_path, data=data)


def test_the_default_sources_keys_from_the_base_files_are_dropped_under_another(tmp_path):
    """configs/tiny.yaml sets digits' classes and per_class; a folder source ignores them
    with a warning, and the plan is the folder's."""
    root = folders(tmp_path / "img")
    with pytest.warns(UserWarning, match="data.classes is a key of data sources digits, cifar100, which folder"):
        plan = make_plan(tmp_path, data={"source": "folder", "root": str(root)})
    assert plan.names == ["a", "b", "c", "d"] and "classes" not in plan.cfg["data"]


@pytest.mark.parametrize("entry, needle", [
    ({"method": "pixel_similarity", "reduce": "median"}, r"attributions.0.reduce: 'median' is not one of \['mean', 'max'\]"),
    ({"method": "trak", "lambda": []}, r"attributions.0.lambda: .*\[\] should be non-empty"),
])
def test_an_attribution_option_outside_its_forms_is_refused_saying_which(tmp_path, entry, needle):
    """Was: reduce: median computed as the mean, lambda: [] dropped the method."""
    with pytest.raises(ConfigError, match=needle):
        make_plan(tmp_path, attributions=[entry])


def test_a_results_folder_inside_the_data_is_refused(tmp_path):
    root = folders(tmp_path / "img")
    from diffcredit.config import deep_update, load_yaml

    cfg = deep_update(deep_update(load_yaml(REPO / "config.yaml"), load_yaml(TINY)),
                      {"data": {"source": "folder", "root": str(root)}})
    cfg["results"] = str(root / "results")
    with pytest.raises(ConfigError, match=r"results .*/img/results is inside data.root .*: its artifacts would be"):
        Plan(cfg, SCHEMA)


def test_a_results_folder_that_cannot_be_written_is_refused_without_a_traceback(tmp_path):
    from diffcredit.lock import ResultsLocked, lock_results

    (tmp_path / "file").write_text("")
    with pytest.raises(ResultsLocked, match="cannot write to the results folder .* choose another"):
        lock_results(tmp_path / "file" / "results")


@pytest.mark.parametrize("method", ["kernelshap", "leverage", "stratified", "banzhaf", "loo", "exact"])
def test_two_contributors_plan_every_method_or_say_why_not(tmp_path, method):
    """Two contributors, the fewest allowed: every method plans at its smallest budget,
    except a Banzhaf design, whose two random coalitions cannot tell the players apart."""
    over = {"data": {"classes": [0, 1]}, "estimators": [{"method": method, "budget": 2}]}
    if method == "banzhaf":
        with pytest.raises(ConfigError, match="budget 2 is too small: players \\[0, 1\\] are in every"):
            make_plan(tmp_path, **over)
        return
    (est,) = make_plan(tmp_path, **over).estimators
    assert est.masks.shape == (2, 2) and est.masks.sum(axis=1).tolist() == [1, 1]


def test_image_draws_are_keyed_only_where_they_change_scores(tmp_path):
    """own draws keep the keys scores had before the option; without replicates the
    draws change nothing, so they are not keyed either."""
    shared, own = (make_plan(tmp_path, scores={"image_draws": d}) for d in ("shared", "own"))
    assert shared.score_key(shared.full_key) != own.score_key(own.full_key)
    assert "image_draws" not in own.nodes[own.score_key(own.full_key)].spec["options"]
    off = [make_plan(tmp_path, scores={"image_draws": d, "image_bootstrap": 0}) for d in ("shared", "own")]
    assert off[0].score_key(off[0].full_key) == off[1].score_key(off[1].full_key)


def test_image_folders_condition_on_the_contributor_by_content_and_class_is_refused(tmp_path):
    """data.condition auto on unlabelled folders is the contributor: one label each, in the
    order of the shards' keys (content), so renaming a folder keeps every label and key;
    asking for class on them is refused."""
    root = folders(tmp_path / "img")
    over = {"data": {"source": "folder", "root": str(root)}, "model": {"family": "ddpm_cond"},
            "fine_tune": {"strategy": "proxy"}, "estimators": [{"method": "stratified", "budget": 8}],
            "attributions": [{"method": "dtrak"}]}
    plan = make_plan(tmp_path, **over)
    assert plan.condition_mode == "contributor" and plan.model_spec["condition"] == "contributor"
    assert plan.model_spec["classes"] == 4 and plan.model_spec["unet"]["num_class_embeds"] == 5
    full = plan.job(plan.full_key)["condition_labels"]
    order = sorted(plan.train_shards[n] for n in plan.names)
    assert full == {plan.nodes[k].path: i for i, k in enumerate(order)}
    key = next(k for k in plan.keys("condition") if 1 < len(plan.job(k)["members"]) < 4)
    members = plan.job(key)["members"]
    assert plan.job(key)["condition_labels"] == {plan.nodes[plan.train_shards[m]].path: full[plan.nodes[
        plan.train_shards[m]].path] for m in members}
    # A gradient method featurizes each contributor's items under the label the full model learned them with.
    featurized = [plan.job(k) for k in plan.keys("attribution_features") if plan.job(k)["role"] == "train"]
    assert len(featurized) == 4
    for job in featurized:
        assert job["condition_labels"] == {job["inputs"]["source"]: full[job["inputs"]["source"]]}
    assert sorted(v for j in featurized for v in j["condition_labels"].values()) == [0, 1, 2, 3]
    assert not any("condition_labels" in plan.job(k) for k in plan.keys("attribution_features")
                   if plan.job(k)["role"] == "target")
    (root / "b").rename(root / "b2")
    renamed = make_plan(tmp_path, **over)
    assert renamed.job(renamed.full_key)["condition_labels"] == full and renamed.full_key == plan.full_key
    with pytest.raises(ConfigError, match="data.condition: class needs labelled data"):
        make_plan(tmp_path, **{**over, "data": {**over["data"], "condition": "class"}})


def test_the_proxy_game_of_a_text_family_draws_prompts_from_its_own_captions(tmp_path):
    """strategy proxy on sd_lora: every coalition, the empty and the full one included, is
    the full adapter conditioned on its members' raw shards (their captions); without
    per-image captions it is refused."""
    from itertools import combinations

    from tiny_models import aesthetic_head, clip_model, metadata_folder, sd_pipeline

    root = metadata_folder(tmp_path / "art", {"ann": 2, "bob": 2, "cy": 2})
    over = {"data": {"source": "folder", "root": str(root), "contributor_column": "artist", "caption_column": "text",
                     "resolution": 32, "channels": 3},
            "model": {"family": "sd_lora", "pretrained": str(sd_pipeline(tmp_path / "pipe")), "lora": {"rank": 4}},
            "generate": {"prompts": ["a painting"]},
            "properties": ["aesthetic"], "features": {"aesthetic": {"head": str(aesthetic_head(tmp_path / "h.pth"))},
                                                     "clip": {"model": str(clip_model(tmp_path / "clip"))}},
            "estimators": [{"method": "exact", "strategy": "proxy"}]}
    plan = make_plan(tmp_path, **over)
    assert plan.condition_mode == "caption"
    for size in range(4):
        for members in combinations(plan.names, size):
            key = plan.model_key(members, "proxy")
            job = plan.job(key)
            assert job["rule"] == "condition" and job["condition"] == "caption" and job["members"] == list(members)
            assert job["inputs"]["shards"] == sorted(plan.nodes[plan.shard_keys[m]].path for m in members)
            assert job["inputs"]["start"] == plan.nodes[plan.full_key].path
    with pytest.raises(ConfigError, match="give per-image captions that tell contributors apart"):
        make_plan(tmp_path, **{**over, "data": {**over["data"], "caption_column": None}, "model": {
            **over["model"], "prompt": "a painting"}})
