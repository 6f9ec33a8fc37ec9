"""The CelebA-HQ and ArtBench presets plan the reference recipes on GPUs, with only
their data and pretrained paths pointed at tiny local stand-ins."""

from __future__ import annotations

import pytest

from conftest import REPO
from diffcredit.config import deep_update, load_yaml
from diffcredit.plan import Plan
from tiny_models import aesthetic_head, blip_model, clip_model, metadata_folder, sd_pipeline, vq_model

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    root = tmp_path_factory.mktemp("presets")
    people = {f"p{i:02d}": 2 for i in range(10)}
    return {
        "faces": metadata_folder(root / "faces", people, size=64, captions=False),
        "art": metadata_folder(root / "art", people, size=64, captions=False),
        "vq": vq_model(root / "vq"), "blip": blip_model(root / "blip"), "pipe": sd_pipeline(root / "pipe"),
        "clip": clip_model(root / "clip"), "head": aesthetic_head(root / "head.pth"),
    }


def preset(name, tmp_path, override):
    cfg = deep_update(load_yaml(REPO / "config.yaml"), load_yaml(REPO / "configs" / f"{name}.yaml"))
    cfg = deep_update(cfg, {"results": str(tmp_path / "results"), **override})
    return cfg, Plan(cfg, SCHEMA)


def test_celebahq_preset(stand_ins, tmp_path):
    path = stand_ins["faces"] / "metadata.csv"
    path.write_text(path.read_text().replace("artist", "identity"))
    cfg, plan = preset("celebahq", tmp_path, {
        "data": {"root": str(stand_ins["faces"])},
        "model": {"autoencoder": str(stand_ins["vq"])},
        "features": {"blip": {"model": str(stand_ins["blip"])}},
    })
    assert plan.family.name == "ldm" and plan.n == 10
    assert plan.model_spec["latent_scale"] == 1.0
    assert plan.model_spec["unet"]["block_out_channels"] == (224, 448, 672, 896)
    assert plan.model_spec["scheduler"]["beta_schedule"] == "scaled_linear"
    assert len(plan.keys("encode")) == 10
    assert plan.extractor_specs["diversity"] == {"encoder": "blip", "k": 20}
    assert set(plan.extractor_specs) == {"diversity", "blip"} and set(plan.reference_stats) == {"diversity"}
    fine_tune = plan.node(plan.keys("fine_tune")[0]).job["training"]
    assert fine_tune["steps"] == 500 and fine_tune["batch_size"] == 32
    assert plan.estimators[0].budget == 300
    for rule in ("encode", "train_full", "prune", "fine_tune", "generate", "features"):
        assert plan.resources(rule)["gpu"] == 1


def test_artbench_preset(stand_ins, tmp_path):
    cfg, plan = preset("artbench", tmp_path, {
        "data": {"root": str(stand_ins["art"])},
        "model": {"pretrained": str(stand_ins["pipe"])},
        "features": {"clip": {"model": str(stand_ins["clip"])}, "aesthetic": {"head": str(stand_ins["head"])}},
    })
    assert plan.family.name == "sd_lora" and plan.n == 10
    assert plan.model_spec["lora"] == {"rank": 256, "alpha": 256.0, "targets": ["to_q", "to_k", "to_v", "to_out.0"]}
    assert plan.model_spec["text"] == {"prompt": "a Post-Impressionist painting"}
    assert plan.generate_spec["prompts"] == ["a Post-Impressionist painting"]
    assert plan.generate_spec["scheduler"] == "pipeline" and plan.generate_spec["seed"] == 42
    assert set(plan.extractor_specs) == {"aesthetic", "clip"} and plan.reference_stats == {}
    fine_tune = plan.node(plan.keys("fine_tune")[0]).job["training"]
    assert (fine_tune["steps"], fine_tune["warmup_steps"], fine_tune["schedule"]) == (200, 500, "cosine")
    prune = plan.node(plan.pruned_key).job
    assert prune["ratio"] == 0.5 and prune["training"]["steps"] == 1580
    assert plan.resources("fine_tune")["gpu"] == 1
    # Memory counts optimizer state for the adapter only: rank 256 on this UNet's attention projections.
    lora = 256 * sum(n for name, n in _projection_sizes(stand_ins["pipe"]).items())
    assert plan.n_trainable == lora and plan.n_parameters > lora
    assert plan.resources("fine_tune")["mem_mb"] == 1000 + 4 * (plan.n_parameters + 5 * lora) // 2**20 + 1500


def _projection_sizes(pipe) -> dict:
    """in + out features of every attention projection of the pipeline's UNet, counted on the real model."""
    import torch
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(pipe, subfolder="unet")
    return {n: m.in_features + m.out_features for n, m in unet.named_modules()
            if isinstance(m, torch.nn.Linear) and n.endswith(("to_q", "to_k", "to_v", "to_out.0"))}
