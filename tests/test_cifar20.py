"""The CIFAR-20 use case: configs/cifar20.yaml on a tiny synthetic CIFAR-100
archive, scaled down, with a random Inception of the real architecture."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, snakemake, write_config
from diffcredit.config import deep_update, load_yaml
from diffcredit.plan import Plan
from synthetic import write_cifar100, write_random_inception

pytestmark = pytest.mark.workflow
CIFAR20 = REPO / "configs" / "cifar20.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
CLASSES = [40, 41, 55, 60]
PROPS = ["inception_score", "fid", "precision", "recall"]


def scaled_down(tmp_path, root, weights) -> dict:
    return {
        "results": "results-cifar", "device": "auto", "threads": 1, "train_threads": 2,
        "data": {"root": str(root), "classes": CLASSES},
        "model": {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8,
                  "attention_levels": [1], "attention_head_dim": 8, "num_train_timesteps": 100, "dropout": 0.0},
        "train_full": {"steps": 20, "batch_size": 8, "checkpoint_every": 0},
        "prune": {"training": {"steps": 4, "batch_size": 8, "checkpoint_every": 0}},
        "fine_tune": {"training": {"steps": 4, "batch_size": 8, "checkpoint_every": 0}},
        "generate": {"n_images": 12, "inference_steps": 3, "batch_size": 12},
        "features": {"batch_size": 16, "inception": {"weights": str(weights)}},
        "estimators": [{"method": "leverage", "budget": 6}],
    }


def cifar_snakemake(workdir, *args, configs=(), check=True):
    return snakemake(workdir, *args, configs=configs, check=check, base=CIFAR20)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    base = tmp_path_factory.mktemp("cifar")
    root = write_cifar100(base / "cifar", per_class=6)
    weights = write_random_inception(base / "inception.pth")
    override = write_config(base / "small.yaml", scaled_down(base, root, weights))
    return base, root, weights, override


@pytest.fixture(scope="module")
def cifar_run(cifar):
    base, root, weights, override = cifar
    work = base / "work"
    work.mkdir()
    cifar_snakemake(work, "--cores", "2", configs=[override])
    cfg = deep_update(deep_update(load_yaml(REPO / "config.yaml"), load_yaml(CIFAR20)), load_yaml(override))
    cfg["results"] = str(work / cfg["results"])
    return work, Plan(cfg, SCHEMA), override


def test_cifar20_runs_end_to_end_with_every_inception_property(cifar_run):
    work, plan, override = cifar_run
    assert plan.names == [f"fine{c:02d}" for c in CLASSES]
    values = pd.read_csv(work / "results-cifar" / "values.csv")
    assert sorted(values["property"].unique()) == sorted(PROPS)
    diagnostics = json.loads((work / plan.values_dir(plan.estimators[0]) / "diagnostics.json").read_text())
    for prop, table in values.groupby("property"):
        assert sorted(table["contributor"]) == plan.names and np.isfinite(table["value"]).all()
        anchors = diagnostics[prop]
        assert table["value"].sum() == pytest.approx(anchors["v_full"] - anchors["v_empty"], abs=1e-9)
    # One Inception pass per samples file gives pool3 and logits.
    feats = [plan.nodes[k].path for k in plan.keys("features")]
    with np.load(work / feats[0]) as z:
        assert z["inception.pool3"].shape == (12, 2048) and z["inception.logits"].shape == (12, 1008)
        assert z["inception.pool3"].std() > 1e-3  # the random network does not collapse
    assert "Nothing to be done" in cifar_snakemake(work, "--dry-run", configs=[override]).stdout


def test_scores_agree_with_torch_fidelity_on_the_same_features(cifar_run):
    """The score stage's numbers equal torch-fidelity's own metric functions on the
    stored features (the extractor is torch-fidelity's network)."""
    import torch
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    work, plan, _ = cifar_run
    score_key = plan.score_key(plan.full_key)
    node = plan.nodes[score_key]
    scores = json.loads((work / node.path).read_text())["properties"]
    with np.load(work / plan.nodes[node.parents["features"]].path) as z:
        gen, logits = torch.from_numpy(z["inception.pool3"]), torch.from_numpy(z["inception.logits"])
    with np.load(work / plan.nodes[node.parents["reference_inception"]].path) as z:
        real = torch.from_numpy(z["pool3"])
    fid = fid_statistics_to_metric(fid_features_to_statistics(gen), fid_features_to_statistics(real), False)
    prc = prc_features_to_metric(gen, real, prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=False,
                                 verbose=False)
    assert scores["fid"]["value"] == pytest.approx(fid["frechet_inception_distance"], abs=1e-4)
    assert scores["inception_score"]["value"] == pytest.approx(
        isc_features_to_metric(logits)["inception_score_mean"], abs=1e-4)
    assert scores["precision"]["value"] == pytest.approx(prc["precision"], abs=1e-4)
    assert scores["recall"]["value"] == pytest.approx(prc["recall"], abs=1e-4)


def test_the_full_recipe_plans_the_paper_model_on_gpus(cifar, tmp_path):
    """Unscaled configs/cifar20.yaml: the 35.7M-parameter UNet, GPU requests."""
    from diffcredit.families.ddpm import build_unet, n_parameters

    base, root, weights, _ = cifar
    only = write_config(tmp_path / "root.yaml", {"data": {"root": str(root)},
                                                 "features": {"inception": {"weights": str(weights)}},
                                                 "estimators": [{"method": "kernelshap", "scheme": "kernel",
                                                                 "budget": 40}]})
    cfg = deep_update(deep_update(load_yaml(REPO / "config.yaml"), load_yaml(CIFAR20)), load_yaml(only))
    cfg["results"] = str(tmp_path / "r")
    plan = Plan(cfg, SCHEMA)
    assert plan.n == 20
    unet = build_unet(plan.model_spec["unet"], 0)
    assert 35.6e6 < n_parameters(unet) < 35.8e6
    text = cifar_snakemake(tmp_path, "--dry-run", configs=[only]).stdout
    assert "gpu=1" in text.split("rule fine_tune:")[1].split("rule ")[0]


def test_the_guidance_preset_plans_the_anchors_recipe_and_trains_nothing_per_coalition(cifar, tmp_path):
    """configs/cifar20_cond.yaml over configs/cifar20.yaml: the class-conditional UNet of
    SurrogateSHAP's widths, its optimiser and schedule, guidance 1.4 over 50 DDIM steps,
    and the proxy game: one full model, each coalition a conditioned copy."""
    from diffcredit.families.ddpm import build_unet, n_parameters

    base, root, weights, _ = cifar
    only = write_config(tmp_path / "root.yaml", {"data": {"root": str(root)},
                                                 "features": {"inception": {"weights": str(weights)}}})
    cfg = deep_update(load_yaml(REPO / "config.yaml"), load_yaml(CIFAR20))
    cfg = deep_update(deep_update(cfg, load_yaml(REPO / "configs" / "cifar20_cond.yaml")), load_yaml(only))
    cfg["results"] = str(tmp_path / "r")
    plan = Plan(cfg, SCHEMA)
    assert plan.family.name == "ddpm_cond" and plan.n == 20
    assert plan.model_spec["classes"] == 85 and plan.model_spec["condition_dropout"] == 0.1  # labels are CIFAR-100 indices
    assert 9.6e6 < n_parameters(build_unet(plan.model_spec["unet"], 0)) < 9.8e6
    full = plan.node(plan.full_key).job["training"]
    assert (full["lr"], full["schedule"], full["warmup_steps"], full["weight_decay"], full["ema_decay"]) == \
        (0.0005, "cosine", 3000, 0.0001, 0.999)
    assert plan.generate_spec["guidance_scale"] == 1.4 and plan.generate_spec["inference_steps"] == 50
    assert [(e.method, e.budget) for e in plan.estimators] == [("tree", 400), ("stratified_tree", 400)]
    assert not plan.keys("fine_tune") and len(plan.keys("condition")) >= 400
    text = cifar_snakemake(tmp_path, "--dry-run", configs=[REPO / "configs" / "cifar20_cond.yaml", only]).stdout
    assert "gpu=1" in text.split("rule train_full:")[1].split("rule ")[0]


# ---------------------------------------------------------------- bad input


def dry_run_error(workdir, cfg: dict, env=None) -> str:
    path = write_config(workdir / "bad.yaml", cfg)
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        proc = cifar_snakemake(workdir, "--dry-run", configs=[path], check=False)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Job stats" not in proc.stdout  # failed before planning any job
    return proc.stdout + proc.stderr


@pytest.fixture
def small(cifar, tmp_path):
    base, root, weights, _ = cifar
    return scaled_down(tmp_path, root, weights)


def test_no_archive_at_the_root_is_refused(small, tmp_path):
    small["data"]["root"] = str(tmp_path / "nowhere")
    msg = dry_run_error(tmp_path, small)
    assert f"no CIFAR-100 archive at {tmp_path / 'nowhere'}" in msg


def test_class_outside_0_99_is_refused(small, tmp_path):
    small["data"]["classes"] = [3, 100]
    assert "data.classes has class indices outside 0..99: [100]" in dry_run_error(tmp_path, small)


def test_reference_folder_without_images_is_refused(small, tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    small["reference"] = {"source": "folder", "root": str(tmp_path / "empty")}
    msg = dry_run_error(tmp_path, small)
    assert "reference" in msg and "has no images" in msg


def test_missing_inception_weights_file_is_refused(small, tmp_path):
    small["features"]["inception"]["weights"] = str(tmp_path / "inception.pth")
    msg = dry_run_error(tmp_path, small)
    assert f"features.inception.weights {tmp_path / 'inception.pth'} does not exist" in msg


def test_uncached_inception_weights_offline_name_the_file_and_where_it_goes(small, tmp_path):
    small["features"]["inception"]["weights"] = None
    msg = dry_run_error(tmp_path, small, env={"TORCH_HOME": str(tmp_path / "torch")})
    assert "weights-inception-2015-12-05-6726825d.pth" in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in msg


def test_a_classifier_property_on_a_one_class_reference_is_refused(small, tmp_path):
    small["properties"] = ["class_entropy"]
    small["reference"] = {"source": "cifar100", "root": small["data"]["root"], "classes": [40]}
    msg = dry_run_error(tmp_path, small)
    assert "the classifier extractor needs at least 2 classes to learn, found 1" in msg


def test_a_stats_reference_refuses_properties_that_need_images(small, tmp_path):
    stats = tmp_path / "stats.npz"
    np.savez(stats, mu=np.zeros(2048), sigma=np.eye(2048))
    small["reference"] = {"source": "stats", "file": str(stats)}
    msg = dry_run_error(tmp_path, small)
    assert "properties ['precision', 'recall'] need reference images" in msg


def test_a_stats_reference_is_checked_and_used_for_fid(tmp_path):
    """reference: {source: stats}: the file is validated, copied as the reference
    statistics, and FID is computed against it."""
    from diffcredit.artifacts import atomic_path
    from diffcredit.stages.scoring import reference_stats, score

    rng = np.random.default_rng(0)
    real = rng.normal(size=(500, 2048)).astype(np.float32)
    stats = tmp_path / "stats.npz"
    np.savez(stats, mu=real.mean(0), sigma=np.cov(real, rowvar=False))
    out = tmp_path / "ref.npz"
    reference_stats({"extractor": "inception", "stats_file": str(stats), "out": str(out), "inputs": {}})
    gen = rng.normal(loc=0.1, size=(400, 2048)).astype(np.float32)
    feats = tmp_path / "features.npz"
    with atomic_path(feats, suffix=".npz", seal=True) as tmp:
        np.savez(tmp, **{"inception.pool3": gen})
    result = tmp_path / "score.json"
    score({"inputs": {"features": str(feats), "reference_inception": str(out)}, "out": str(result),
           "spec": {"properties": ["fid"], "options": {}}})
    value = json.loads(result.read_text())["properties"]["fid"]["value"]
    diff = gen.mean(0) - real.mean(0)
    assert value > diff @ diff  # the mean term alone is a lower bound
    bad = tmp_path / "bad.npz"
    np.savez(bad, mu=np.zeros(3), sigma=np.eye(4))
    with pytest.raises(ValueError, match="must hold 'mu'"):
        reference_stats({"extractor": "inception", "stats_file": str(bad), "out": str(tmp_path / "x.npz"),
                         "inputs": {}})
