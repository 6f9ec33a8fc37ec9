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
