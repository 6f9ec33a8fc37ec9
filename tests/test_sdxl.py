"""The sdxl_lora family on a tiny random StableDiffusionXLPipeline: text and size
conditioning as diffusers' pipeline builds them, adapter round trips, rank pruning,
seeded sampling, training, and the whole workflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import planned, run, write_config
from diffcredit.config import validate
from diffcredit.families import get_family
from lora_checks import bfloat16_base_round_trip
from tiny_models import aesthetic_head, clip_model, metadata_folder, sd_pipeline, sdxl_pipeline

CPU = torch.device("cpu")
SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
XL = get_family("sdxl_lora")
DATA = {"resolution": 32, "channels": 3, "captions": False}


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    return sdxl_pipeline(tmp_path_factory.mktemp("sdxl") / "pipe")


@pytest.fixture(scope="module")
def pipe(pipe_dir):
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline.from_pretrained(pipe_dir, local_files_only=True)


def xl_cfg(pipe_dir, **lora):
    model = {"family": "sdxl_lora", "pretrained": str(pipe_dir), "lora": {"rank": 4, **lora}, "prompt": "a photo"}
    return validate({"model": model}, SCHEMA)["model"]


def xl_model(pipe_dir, seed=0):
    """A model whose adapter is not zero (B random), so it changes the UNet's output."""
    cfg = xl_cfg(pipe_dir)
    spec = XL.resolve(cfg, DATA)
    runtime = XL.runtime(cfg)
    model = XL.init(spec, runtime)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in XL.trainable(model).values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return spec, runtime, model


def encoded_prompts(pipe_dir, prompts):
    cfg = xl_cfg(pipe_dir)
    return XL.encode_text(XL.runtime(cfg)["pretrained"], prompts, CPU)


def test_the_text_condition_is_the_pipelines_prompt_encoding(pipe_dir, pipe):
    """Both encoders' penultimate states joined, and the second's pooled embedding as the
    last row: what StableDiffusionXLPipeline.encode_prompt gives, to float precision."""
    got = encoded_prompts(pipe_dir, ["a cat", "a dog"])
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(["a cat", "a dog"], device=CPU, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
    assert got.shape == (2, embeds.shape[1] + 1, embeds.shape[2])
    np.testing.assert_allclose(got[:, :-1], embeds.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[:, -1, : pooled.shape[1]], pooled.numpy(), rtol=1e-5, atol=1e-5)
    assert not got[:, -1, pooled.shape[1]:].any()


def test_predict_conditions_the_unet_as_the_pipeline_does(pipe_dir, pipe):
    """The pooled embedding and the size ids (resolution, no crop) of the pipeline's own
    _get_add_time_ids for a square image of the training resolution."""
    _, _, model = xl_model(pipe_dir)
    cond = torch.from_numpy(encoded_prompts(pipe_dir, ["a cat", "a dog"]))
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([10, 700])
    time_ids = pipe._get_add_time_ids((32, 32), (0, 0), (32, 32), dtype=torch.float32,
                                      text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
    with torch.no_grad():
        want = model.net(x, t, encoder_hidden_states=cond[:, :-1],
                         added_cond_kwargs={"text_embeds": cond[:, -1, :32], "time_ids": time_ids.expand(2, 6)}).sample
        got = XL.predict(model, x, t, cond)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_untrained_adapter_samples_the_base_pipelines_images(pipe_dir, pipe):
    """B = 0 at init: the family's seeded samples are the base pipeline's, called by hand
    with the same noise, DDIM and guidance."""
    from diffusers import DDIMScheduler

    from diffcredit.families.ddpm import image_noise
    from diffcredit.training import step_seed

    cfg = xl_cfg(pipe_dir)
    spec = XL.resolve(cfg, DATA)
    model = XL.init(spec, XL.runtime(cfg))
    gen = XL.resolve_generate({"n_images": 2, "inference_steps": 3, "seed": 4, "batch_size": 2,
                               "prompts": ["a cat", "a dog"]}, spec, cfg)
    assert gen["guidance_scale"] == 5.0
    got = XL.sample(model, 2, gen, CPU, torch.float32, progress=False)
    pipe.scheduler = DDIMScheduler.from_config({**pipe.scheduler.config, "steps_offset": 1})
    pipe.set_progress_bar_config(disable=True)
    gens = [torch.Generator().manual_seed(step_seed(5, j)) for j in range(2)]
    with torch.no_grad():
        want = pipe(["a cat", "a dog"], height=32, width=32, num_inference_steps=3, guidance_scale=5.0, eta=0.0,
                    generator=gens, latents=image_noise((4, 16, 16), 4, 0, 2, CPU), output_type="np").images
    np.testing.assert_array_equal(got, np.rint(np.clip(want, 0, 1) * 255).astype(np.uint8).transpose(0, 3, 1, 2))


def test_prune_save_and_load_keep_outputs_and_images(pipe_dir, tmp_path):
    spec, runtime, model = xl_model(pipe_dir)
    cond = torch.from_numpy(encoded_prompts(pipe_dir, ["a cat", "a dog"]))
    x, t = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(2)), torch.tensor([5, 900])
    with torch.no_grad():
        full = XL.predict(model, x, t, cond)
    XL.prune(model, 0.5, "magnitude")
    with torch.no_grad():
        pruned = XL.predict(model, x, t, cond)
    assert (pruned - full).abs().max() > 1e-3  # the dropped components mattered
    XL.save(model, tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"adapter_model.safetensors", "adapter_config.json", "scheduler_config.json", "conditioning.json"}
    again = XL.load(tmp_path, runtime)
    with torch.no_grad():
        torch.testing.assert_close(XL.predict(again, x, t, cond), pruned, rtol=0, atol=0)
    gen = XL.resolve_generate({"n_images": 2, "inference_steps": 2, "seed": 0, "batch_size": 2}, spec,
                              xl_cfg(pipe_dir))
    np.testing.assert_array_equal(XL.sample(model, 2, gen, CPU, torch.float32, progress=False),
                                  XL.sample(again, 2, gen, CPU, torch.float32, progress=False))


def test_training_lowers_the_loss_on_its_data_and_trains_only_the_adapter(pipe_dir):
    from diffcredit.training import TrainSpec, train

    cfg = xl_cfg(pipe_dir)
    spec = XL.resolve(cfg, DATA)
    runtime = XL.runtime(cfg)
    images = np.random.default_rng(0).integers(0, 256, (8, 3, 32, 32), dtype=np.uint8)
    enc = XL.encode_shard(XL.encode_spec(spec), {"images": images}, CPU, 4, runtime)
    model = XL.init(spec, runtime)
    assert {n for n, p in model.net.named_parameters() if p.requires_grad} == set(XL.trainable(model))
    train(XL, model, XL.training_data_from([enc]), TrainSpec(steps=40, batch_size=8, lr=3e-3, seed=0), CPU,
          progress=False)
    base = XL.init(spec, runtime)
    data = {k: torch.from_numpy(v) for k, v in XL.training_data_from([enc]).items()}
    x0, cond = XL.batch(model, data, torch.arange(8))
    g = torch.Generator().manual_seed(0)
    noise, t = torch.randn(x0.shape, generator=g), torch.randint(0, 1000, (8,), generator=g)
    with torch.no_grad():
        assert XL.loss(model, x0, noise, t, cond).mean() < XL.loss(base, x0, noise, t, cond).mean()


def test_a_pipeline_that_is_not_sdxl_is_refused_by_name(tmp_path):
    sd = sd_pipeline(tmp_path / "sd")
    cfg = validate({"model": {"family": "sdxl_lora", "pretrained": str(sd), "prompt": "x"}}, SCHEMA)["model"]
    with pytest.raises(ValueError, match="is a StableDiffusionPipeline without text_encoder_2, tokenizer_2, not a "
                                         "StableDiffusionXLPipeline"):
        XL.resolve(cfg, DATA)


@pytest.mark.workflow
def test_sdxl_lora_end_to_end(tmp_path):
    root = metadata_folder(tmp_path / "data", {"monet": 4, "degas": 4, "manet": 4})
    cfg = write_config(tmp_path / "xl.yaml", {
        "results": "results",
        "estimators": [{"method": "leverage", "budget": 4}],
        "data": {"source": "folder", "root": str(root), "contributor_column": "artist", "caption_column": "text",
                 "resolution": 32, "channels": 3},
        "model": {"family": "sdxl_lora", "pretrained": str(sdxl_pipeline(tmp_path / "pipe")), "lora": {"rank": 4}},
        "generate": {"n_images": 16, "inference_steps": 3, "batch_size": 16, "prompts": ["a painting"]},
        "properties": ["aesthetic"],
        "features": {"clip": {"model": str(clip_model(tmp_path / "clip"))},
                     "aesthetic": {"head": str(aesthetic_head(tmp_path / "head.pth"))}},
        "attributions": [{"method": "dtrak", "timesteps": 2}],
    })
    run(tmp_path, configs=[cfg])
    import pandas as pd

    v = pd.read_csv(tmp_path / "results" / "values.csv")
    assert set(v["method"]) == {"leverage", "dtrak"} and np.isfinite(v["credit"]).all()
    assert sorted(set(v["contributor"])) == ["degas", "manet", "monet"]
    for m in (tmp_path / "results" / "coalitions").glob("*/model"):
        assert {p.name for p in m.iterdir()} >= {"adapter_model.safetensors", "conditioning.json"}
    assert sum(planned(tmp_path, configs=[cfg]).values()) == 0


def test_bfloat16_base_weights_train_a_float32_adapter_and_round_trip(pipe_dir, tmp_path):
    """model.dtype bfloat16: the frozen UNet and text encoders in bfloat16, the adapter in
    float32 and trained; predictions near the float32 model's; the saved model loads back
    in bfloat16 with the same outputs and samples. float32 named is the default's spec."""
    assert XL.resolve(xl_cfg_dtype(pipe_dir, "float32"), DATA) == XL.resolve(xl_cfg(pipe_dir), DATA)
    cfg = xl_cfg_dtype(pipe_dir, "bfloat16")
    spec, runtime = XL.resolve(cfg, DATA), XL.runtime(cfg)
    assert spec["dtype"] == "bfloat16" and XL.encode_spec(spec)["dtype"] == "bfloat16"
    cond = torch.from_numpy(encoded_prompts(pipe_dir, ["a cat", "a dog"]))
    low_cond = XL.encode_text(runtime["pretrained"], ["a cat", "a dog"], CPU, encode_spec=XL.encode_spec(spec))
    assert np.linalg.norm(low_cond - cond.numpy()) < 0.05 * np.linalg.norm(cond.numpy())  # encoded in bfloat16
    _, _, full = xl_model(pipe_dir)
    images = bfloat16_base_round_trip(XL, cfg, DATA, full, cond, tmp_path)
    assert images.std() > 0


def xl_cfg_dtype(pipe_dir, dtype):
    model = {"family": "sdxl_lora", "pretrained": str(pipe_dir), "lora": {"rank": 4}, "prompt": "a photo",
             "dtype": dtype}
    return validate({"model": model}, SCHEMA)["model"]
