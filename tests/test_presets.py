"""The CelebA-HQ and ArtBench presets plan the reference recipes on GPUs, with only
their data and pretrained paths pointed at tiny local stand-ins."""

from __future__ import annotations

import pytest

from conftest import REPO
from diffcredit.config import deep_update, load_yaml
from diffcredit.plan import Plan
from tiny_models import (aesthetic_head, blip_model, clip_model, flux_pipeline, metadata_folder, sd_pipeline,
                         sdxl_pipeline, vq_model)

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
        "captioned": metadata_folder(root / "captioned", people, size=64), "xl": sdxl_pipeline(root / "xl"),
        "flux": flux_pipeline(root / "flux"),
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
    for key in (plan.keys("fine_tune")[0], plan.keys("fine_tune")[-1]):
        assert plan.node(key).job["training"] == merged_recipe("celebahq", "fine_tune", "training")
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
    assert plan.node(plan.keys("fine_tune")[0]).job["training"] == merged_recipe("artbench", "fine_tune", "training")
    prune = plan.node(plan.pruned_key).job
    assert prune["ratio"] == load_yaml(REPO / "configs" / "artbench.yaml")["prune"]["ratio"]
    assert prune["training"] == merged_recipe("artbench", "prune", "training")
    assert plan.resources("fine_tune")["gpu"] == 1


def test_sdxl_folder_preset(stand_ins, tmp_path):
    """configs/sdxl_folder.yaml on a folder with per-image captions: the SDXL adapter,
    its captions in the encoded shards' keys, GPUs."""
    cfg, plan = preset("sdxl_folder", tmp_path, {
        "data": {"root": str(stand_ins["captioned"])},
        "model": {"pretrained": str(stand_ins["xl"])},
        "features": {"clip": {"model": str(stand_ins["clip"])}, "aesthetic": {"head": str(stand_ins["head"])}},
    })
    assert plan.family.name == "sdxl_lora" and plan.n == 10
    assert plan.model_spec["lora"] == {"rank": 16, "alpha": 16.0, "targets": ["to_q", "to_k", "to_v", "to_out.0"]}
    assert plan.model_spec["text"] == {"captions": True}
    assert plan.model_spec["added"] == {"pooled": 32, "time_ids": [1024, 1024, 0, 0, 1024, 1024]}
    assert plan.generate_spec["guidance_scale"] == 5.0 and len(plan.generate_spec["prompts"]) == 4
    assert len(plan.keys("encode")) == 10
    assert plan.node(plan.keys("fine_tune")[0]).job["training"] == merged_recipe("sdxl_folder", "fine_tune", "training")
    assert plan.estimators[0].budget == 100
    for rule in ("encode", "train_full", "fine_tune", "generate"):
        assert plan.resources(rule)["gpu"] == 1


def test_flux_folder_preset(stand_ins, tmp_path):
    """configs/flux_folder.yaml: the FLUX adapter on the transformer's attention and
    feed-forward layers, training guidance and T5 length in the keys, GPUs."""
    from diffcredit.families.flux_lora import FLUX_TARGETS

    cfg, plan = preset("flux_folder", tmp_path, {
        "data": {"root": str(stand_ins["captioned"]), "contributor_column": "artist"},
        "model": {"pretrained": str(stand_ins["flux"])},
        "features": {"clip": {"model": str(stand_ins["clip"])}, "inception": {"weights": str(stand_ins["head"])}},  # any file: no job runs
    })
    assert plan.family.name == "flux_lora" and plan.n == 10
    assert plan.model_spec["lora"] == {"rank": 4, "alpha": 4.0, "targets": FLUX_TARGETS}
    assert plan.model_spec["text"] == {"captions": True, "max_length": 512}
    assert plan.model_spec["flux"] == {"guidance": 3.5, "text_dim": 24, "pooled_dim": 32}
    assert plan.model_spec["dtype"] == "bfloat16"
    assert plan.generate_spec["guidance_scale"] == 3.5 and plan.generate_spec["max_sequence_length"] == 512
    assert len(plan.keys("encode")) == 10
    assert plan.node(plan.keys("fine_tune")[0]).job["training"] == merged_recipe("flux_folder", "fine_tune", "training")
    for rule in ("encode", "train_full", "fine_tune", "generate"):
        assert plan.resources(rule)["gpu"] == 1


def merged_recipe(name: str, *path: str) -> dict:
    """A training section as a job must receive it: the schema's defaults, under the
    embedded default config, under the preset. Checks that each layer shows through."""
    layers = [load_yaml(SCHEMA)["definitions"]["training"]["properties"], load_yaml(REPO / "config.yaml"),
              load_yaml(REPO / "configs" / f"{name}.yaml")]
    schema, default, ours = layers[0], *[_get(layer, path) for layer in layers[1:]]
    assert any(default.get(k, schema[k].get("default")) != v for k, v in ours.items()), "the preset overrides nothing"
    assert set(schema) - set(ours), "the preset leaves nothing to the defaults"
    return {**{k: p["default"] for k, p in schema.items()}, **default, **ours}


def _get(cfg: dict, path) -> dict:
    for part in path:
        cfg = cfg[part]
    return cfg


def test_artbench_memory_covers_the_adapters_training_state(stand_ins, tmp_path):
    """fine_tune's mem_mb against what training the adapter holds, measured in torch:
    the UNet's weights, and the gradient, two Adam moments and EMA copy of every
    trainable (LoRA) parameter. Two ranks: the estimate must grow at least as fast as
    the measured state, and not much faster."""
    override = {"data": {"root": str(stand_ins["art"])}, "model": {"pretrained": str(stand_ins["pipe"])},
                "features": {"clip": {"model": str(stand_ins["clip"])}, "aesthetic": {"head": str(stand_ins["head"])}}}
    mem, measured, trainable = {}, {}, {}
    for rank in (16, 256):
        override["model"]["lora"] = {"rank": rank}
        _, plan = preset("artbench", tmp_path / f"r{rank}", override)
        mem[rank] = plan.resources("fine_tune")["mem_mb"]
        measured[rank], trainable[rank] = _training_state_bytes(stand_ins["pipe"], plan.model_spec)
        assert plan.n_trainable == trainable[rank] and plan.n_parameters > trainable[rank]
        assert measured[rank] <= mem[rank] * 2**20 < 4 * measured[rank] + 3000 * 2**20
    grown, measured_growth = mem[256] - mem[16], (measured[256] - measured[16]) / 2**20
    assert measured_growth > 10  # big enough that rounding to whole MB cannot decide it
    assert measured_growth - 1 <= grown <= 2 * measured_growth


def _training_state_bytes(pipe, model_spec) -> tuple[int, int]:
    """Bytes of weights, gradients, AdamW state and an EMA copy after one training
    step of the pipeline's UNet with the spec's LoRA adapter (added as the family
    does), and the number of trainable parameters."""
    import torch
    from diffusers import UNet2DConditionModel

    from diffcredit.families.lora import lora_config

    unet = UNet2DConditionModel.from_pretrained(pipe, subfolder="unet").requires_grad_(False)
    unet.add_adapter(lora_config(model_spec))
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    ema = [p.detach().clone() for p in params]
    latents = torch.randn(1, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    text = torch.randn(1, 8, unet.config.cross_attention_dim)
    unet(latents, torch.tensor([10]), encoder_hidden_states=text).sample.square().mean().backward()
    optimizer.step()

    def size(tensors):
        return sum(t.numel() * t.element_size() for t in tensors)

    moments = [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    assert len(moments) >= 2 * len(params) and all(p.grad is not None for p in params)
    total = size(unet.parameters()) + size(p.grad for p in params) + size(moments) + size(ema)
    return total, sum(p.numel() for p in params)
