"""The flux_lora family on a tiny random FluxPipeline: text encoding as the pipeline's
encode_prompt, the transformer called as the pipeline calls it, the flow-matching loss
as diffusers' FLUX training computes it, gradient features of that loss, seeded
sampling, adapter round trips, rank pruning, training, and the whole workflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import planned, run, write_config
from diffcredit.config import validate
from diffcredit.families import get_family
from diffcredit.families.flux_lora import FLUX_TARGETS
from lora_checks import bfloat16_base_round_trip
from tiny_models import aesthetic_head, clip_model, flux_pipeline, metadata_folder, sdxl_pipeline

CPU = torch.device("cpu")
SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
FLUX = get_family("flux_lora")
DATA = {"resolution": 32, "channels": 3, "captions": False}


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    return flux_pipeline(tmp_path_factory.mktemp("flux") / "pipe")


@pytest.fixture(scope="module")
def pipe(pipe_dir):
    from diffusers import FluxPipeline

    return FluxPipeline.from_pretrained(pipe_dir, local_files_only=True)


def flux_cfg(pipe_dir, **model):
    cfg = {"family": "flux_lora", "pretrained": str(pipe_dir), "lora": {"rank": 4}, "prompt": "a photo",
           "max_sequence_length": 16, "dtype": "float32", **model}
    return validate({"model": cfg}, SCHEMA)["model"]


def flux_model(pipe_dir, seed=0):
    """A model whose adapter is not zero (B random), so it changes the transformer's output."""
    cfg = flux_cfg(pipe_dir)
    spec = FLUX.resolve(cfg, DATA)
    runtime = FLUX.runtime(cfg)
    model = FLUX.init(spec, runtime)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in FLUX.trainable(model).values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return spec, runtime, model


def encoded_prompts(pipe_dir, prompts):
    return FLUX.encode_text(FLUX.runtime(flux_cfg(pipe_dir))["pretrained"], prompts, CPU,
                            encode_spec={"text": {"max_length": 16}, "dtype": "float32"})


def transformer_as_the_pipeline_calls_it(pipe, net, latents, timestep, prompts, guidance=3.5):
    """The velocity of unpacked latents, from diffusers' own helpers and encode_prompt."""
    b, c, h, w = latents.shape
    embeds, pooled, text_ids = pipe.encode_prompt(prompts, prompt_2=None, device=CPU, max_sequence_length=16)
    out = net(hidden_states=pipe._pack_latents(latents, b, c, h, w), timestep=timestep / 1000,
              guidance=torch.full((b,), guidance), pooled_projections=pooled, encoder_hidden_states=embeds,
              txt_ids=text_ids, img_ids=pipe._prepare_latent_image_ids(b, h // 2, w // 2, CPU, latents.dtype)).sample
    return pipe._unpack_latents(out, h * pipe.vae_scale_factor, w * pipe.vae_scale_factor, pipe.vae_scale_factor)


def test_the_spec_follows_the_pipeline(pipe_dir):
    spec = FLUX.resolve(flux_cfg(pipe_dir), DATA)
    assert spec["lora"] == {"rank": 4, "alpha": 4.0, "targets": FLUX_TARGETS}
    assert spec["flux"] == {"guidance": 3.5, "text_dim": 24, "pooled_dim": 32}
    assert spec["text"] == {"prompt": "a photo", "max_length": 16}
    assert spec["latent"] == {"channels": 4, "size": 16}
    assert FLUX.resolve(flux_cfg(pipe_dir, guidance=1.0), DATA)["flux"]["guidance"] == 1.0
    assert spec["dtype"] == "float32" and FLUX.encode_spec(spec)["dtype"] == "float32"
    default = validate({"model": {"family": "flux_lora", "pretrained": str(pipe_dir), "prompt": "a"}}, SCHEMA)["model"]
    assert FLUX.resolve(default, DATA)["dtype"] == "bfloat16"


def test_the_text_condition_is_the_pipelines_prompt_encoding(pipe_dir, pipe):
    """T5 states (width 24, padded to 32) and the pooled CLIP embedding as the last row:
    what FluxPipeline.encode_prompt gives."""
    got = encoded_prompts(pipe_dir, ["a cat", "a red dress"])
    with torch.no_grad():
        embeds, pooled, _ = pipe.encode_prompt(["a cat", "a red dress"], prompt_2=None, device=CPU,
                                               max_sequence_length=16)
    assert got.shape == (2, 17, 32)
    np.testing.assert_allclose(got[:, :-1, :24], embeds.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[:, -1], pooled.numpy(), rtol=1e-5, atol=1e-6)
    assert not got[:, :-1, 24:].any()


def test_predict_calls_the_transformer_as_the_pipeline_does(pipe_dir, pipe):
    _, _, model = flux_model(pipe_dir)
    cond = torch.from_numpy(encoded_prompts(pipe_dir, ["a cat", "a dog"]))
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([10, 700])  # timestep indices: noise levels 11/1000 and 701/1000
    with torch.no_grad():
        want = transformer_as_the_pipeline_calls_it(pipe, model.net, x, (t + 1).float(), ["a cat", "a dog"])
        got = FLUX.predict(model, x, t, cond)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shift", ["dynamic", "static"])
def test_the_loss_is_diffusers_flow_matching_loss(pipe_dir, pipe, shift):
    """Timestep index t is the scheduler's noise level sigmas[N - 1 - t] (uniform
    sampling over the training schedule, as diffusers' FLUX LoRA script with weighting
    "none"): x_s = (1 - s) x0 + s noise, target noise - x0. A static shift (3.0 here)
    shifts the training levels; FLUX.1-dev's dynamic one does not."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    _, _, model = flux_model(pipe_dir)
    if shift == "static":
        model.scheduler = {**model.scheduler, "use_dynamic_shifting": False}
    prompts = ["a cat", "a dog", "a cat"]
    cond = torch.from_numpy(encoded_prompts(pipe_dir, prompts))
    g = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(3, 4, 16, 16, generator=g), torch.randn(3, 4, 16, 16, generator=g)
    t = torch.tensor([0, 400, 999])
    sched = FlowMatchEulerDiscreteScheduler.from_config(model.scheduler)
    assert (sched.sigmas[500] > 0.6) == (shift == "static")  # 3 * 0.5 / 2 = 0.75 against 0.5
    idx = 1000 - 1 - t
    sigma = sched.sigmas[idx].view(-1, 1, 1, 1)
    with torch.no_grad():
        pred = transformer_as_the_pipeline_calls_it(pipe, model.net, (1 - sigma) * x0 + sigma * noise,
                                                    sched.timesteps[idx], prompts)
        want = (pred - (noise - x0)).pow(2).flatten(1).mean(1)
        got = FLUX.loss(model, x0, noise, t, cond)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_untrained_adapter_samples_the_base_pipelines_images(pipe_dir, pipe):
    """B = 0 at init: the family's seeded samples are the base pipeline's, called by hand
    with the same packed noise, guidance and its own scheduler."""
    from diffcredit.families.ddpm import image_noise

    cfg = flux_cfg(pipe_dir)
    spec = FLUX.resolve(cfg, DATA)
    model = FLUX.init(spec, FLUX.runtime(cfg))
    gen = FLUX.resolve_generate({"n_images": 3, "inference_steps": 3, "seed": 4, "batch_size": 2,
                                 "prompts": ["a cat", "a dog"]}, spec, cfg)
    assert gen["guidance_scale"] == 3.5 and gen["max_sequence_length"] == 16
    got = FLUX.sample(model, 3, gen, CPU, torch.float32, progress=False)
    pipe.set_progress_bar_config(disable=True)
    latents = pipe._pack_latents(image_noise((4, 16, 16), 4, 0, 3, CPU), 3, 4, 16, 16)
    with torch.no_grad():
        want = pipe(["a cat", "a dog", "a cat"], height=32, width=32, num_inference_steps=3, guidance_scale=3.5,
                    max_sequence_length=16, latents=latents, output_type="np").images
    want = np.rint(np.clip(want, 0, 1) * 255).astype(np.uint8).transpose(0, 3, 1, 2)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # batches of 2 and 1 against one of 3
    assert (got != got[0]).any()
    # The gradient methods' targets: each image's prompt, encoded as training captions are (16 T5 tokens).
    targets = FLUX.target_data(got, gen, FLUX.encode_spec(spec), CPU, 2, FLUX.runtime(cfg), model)
    np.testing.assert_allclose(targets["text"][targets["text_index"]],
                               encoded_prompts(pipe_dir, ["a cat", "a dog", "a cat"]), rtol=1e-5, atol=1e-6)


def test_prune_save_and_load_keep_outputs_and_images(pipe_dir, tmp_path):
    spec, runtime, model = flux_model(pipe_dir)
    cond = torch.from_numpy(encoded_prompts(pipe_dir, ["a cat", "a dog"]))
    x, t = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(2)), torch.tensor([5, 900])
    with torch.no_grad():
        full = FLUX.predict(model, x, t, cond)
    n_full = sum(p.numel() for p in FLUX.trainable(model).values())
    FLUX.prune(model, 0.5, "magnitude")
    assert sum(p.numel() for p in FLUX.trainable(model).values()) <= 0.5 * n_full
    with torch.no_grad():
        pruned = FLUX.predict(model, x, t, cond)
    assert (pruned - full).abs().max() > 1e-3  # the dropped components mattered
    FLUX.save(model, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"adapter_model.safetensors", "adapter_config.json",
                                                    "scheduler_config.json", "conditioning.json", "base_dtype.json"}
    again = FLUX.load(tmp_path, runtime)
    with torch.no_grad():
        torch.testing.assert_close(FLUX.predict(again, x, t, cond), pruned, rtol=0, atol=0)
    gen = FLUX.resolve_generate({"n_images": 2, "inference_steps": 2, "seed": 0, "batch_size": 2}, spec,
                                flux_cfg(pipe_dir))
    np.testing.assert_array_equal(FLUX.sample(model, 2, gen, CPU, torch.float32, progress=False),
                                  FLUX.sample(again, 2, gen, CPU, torch.float32, progress=False))


def test_training_lowers_the_loss_on_its_data_and_trains_only_the_adapter(pipe_dir):
    from diffcredit.training import TrainSpec, train

    cfg = flux_cfg(pipe_dir)
    spec = FLUX.resolve(cfg, DATA)
    runtime = FLUX.runtime(cfg)
    images = np.random.default_rng(0).integers(0, 256, (8, 3, 32, 32), dtype=np.uint8)
    enc = FLUX.encode_shard(FLUX.encode_spec(spec), {"images": images}, CPU, 4, runtime)
    assert enc["text"].shape == (1, 17, 32)
    model = FLUX.init(spec, runtime)
    assert {n for n, p in model.net.named_parameters() if p.requires_grad} == set(FLUX.trainable(model))
    train(FLUX, model, FLUX.training_data_from([enc]), TrainSpec(steps=40, batch_size=8, lr=3e-3, seed=0), CPU,
          progress=False)
    base = FLUX.init(spec, runtime)
    data = {k: torch.from_numpy(v) for k, v in FLUX.training_data_from([enc]).items()}
    x0, cond = FLUX.batch(model, data, torch.arange(8))
    g = torch.Generator().manual_seed(0)
    noise, t = torch.randn(x0.shape, generator=g), torch.randint(0, 1000, (8,), generator=g)
    with torch.no_grad():
        assert FLUX.loss(model, x0, noise, t, cond).mean() < FLUX.loss(base, x0, noise, t, cond).mean()


@pytest.mark.parametrize("output", ["loss", "sq_norm"])
def test_gradient_features_are_the_training_losss_gradients(pipe_dir, output):
    """TRAK's and D-TRAK's features of encoded items: per item, the mean over the grid's
    timesteps of the gradient over the adapter of the flow-matching loss (or the squared
    prediction) at the featurizer's fixed noise, computed here by plain autograd."""
    from diffcredit.attribution.gradients import featurize, fixed_noise, timestep_grid

    spec, runtime, model = flux_model(pipe_dir)
    images = np.random.default_rng(1).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    enc = FLUX.encode_shard({**FLUX.encode_spec(spec), "text": {"captions": True, "max_length": 16}},
                            {"images": images, "captions": ["a cat", "a dog", "a cat"]}, CPU, 4, runtime)
    data = {k: torch.from_numpy(v) for k, v in FLUX.training_data_from([enc]).items()}
    fspec = {"kind": "gradient", "output": output, "normalize": False, "residual": False, "timesteps": 3,
             "projection_dim": None, "projection_seed": 0, "seeds": [0]}
    ours = featurize(FLUX, model, data, fspec, CPU, batch_size=2, progress=False)["features"][0]
    x0, cond = FLUX.batch(model, data, torch.arange(3))
    ts = timestep_grid(1000, 3)
    eps = fixed_noise(tuple(x0.shape[1:]), 0, ts)
    params = list(FLUX.trainable(model).values())
    rows = []
    for i in range(3):
        per_t = []
        for k, t in enumerate(ts):
            tt = torch.tensor([t])
            if output == "loss":
                f = FLUX.loss(model, x0[i:i + 1], eps[k:k + 1], tt, cond[i:i + 1]).mean()
            else:
                a, b = 1 - (t + 1) / 1000, (t + 1) / 1000
                f = FLUX.predict(model, a * x0[i:i + 1] + b * eps[k:k + 1], tt, cond[i:i + 1]).pow(2).mean()
            per_t.append(torch.cat([g.flatten() for g in torch.autograd.grad(f, params)]))
        rows.append(torch.stack(per_t).mean(0))
    np.testing.assert_allclose(ours, torch.stack(rows).numpy(), rtol=2e-3, atol=1e-6)


def test_bfloat16_base_weights_train_a_float32_adapter_and_round_trip(pipe_dir, tmp_path):
    """model.dtype bfloat16 (the default): the frozen transformer in bfloat16, the adapter
    in float32 and trained; predictions near the float32 model's; a saved model loads
    back in bfloat16 with the same outputs; samples come out."""
    _, _, full = flux_model(pipe_dir)
    cond = torch.from_numpy(encoded_prompts(pipe_dir, ["a cat", "a dog"]))
    bfloat16_base_round_trip(FLUX, flux_cfg(pipe_dir, dtype="bfloat16"), DATA, full, cond, tmp_path)


def test_a_transformer_without_guidance_takes_none(tmp_path):
    """A schnell-like transformer: model.guidance and generate.guidance_scale refused;
    the model is fed no guidance and samples."""
    folder = flux_pipeline(tmp_path / "schnell", guidance=False)
    with pytest.raises(ValueError, match="no guidance embedding"):
        FLUX.resolve(flux_cfg(folder, guidance=3.5), DATA)
    cfg = flux_cfg(folder)
    spec = FLUX.resolve(cfg, DATA)
    assert spec["flux"]["guidance"] is None
    with pytest.raises(ValueError, match="no guidance embedding"):
        FLUX.resolve_generate({"guidance_scale": 2.0}, spec, cfg)
    gen = FLUX.resolve_generate({"n_images": 2, "inference_steps": 2, "seed": 0, "batch_size": 2}, spec, cfg)
    images = FLUX.sample(FLUX.init(spec, FLUX.runtime(cfg)), 2, gen, CPU, torch.float32, progress=False)
    assert images.shape == (2, 3, 32, 32)


def test_a_pipeline_that_is_not_flux_is_refused_by_name(tmp_path):
    cfg = validate({"model": {"family": "flux_lora", "pretrained": str(sdxl_pipeline(tmp_path / "xl")),
                              "prompt": "x"}}, SCHEMA)["model"]
    with pytest.raises(ValueError, match="is a StableDiffusionXLPipeline without transformer, not a FluxPipeline"):
        FLUX.resolve(cfg, DATA)


def test_resolution_must_fit_the_packed_latents(pipe_dir):
    with pytest.raises(ValueError, match="must be a multiple of 4"):
        FLUX.resolve(flux_cfg(pipe_dir), {**DATA, "resolution": 30})


@pytest.mark.workflow
def test_flux_lora_end_to_end(tmp_path):
    root = metadata_folder(tmp_path / "data", {"monet": 4, "degas": 4, "manet": 4})
    base = {
        "results": "results",
        "estimators": [{"method": "leverage", "budget": 4}],
        "data": {"source": "folder", "root": str(root), "contributor_column": "artist", "caption_column": "text",
                 "resolution": 32, "channels": 3},
        "model": {"family": "flux_lora", "pretrained": str(flux_pipeline(tmp_path / "pipe")), "lora": {"rank": 4},
                  "max_sequence_length": 16},
        "generate": {"n_images": 16, "inference_steps": 3, "batch_size": 16, "prompts": ["a painting"]},
        "properties": ["aesthetic"],
        "features": {"clip": {"model": str(clip_model(tmp_path / "clip"))},
                     "aesthetic": {"head": str(aesthetic_head(tmp_path / "head.pth"))}},
    }
    cfg = write_config(tmp_path / "flux.yaml", {**base, "attributions": [{"method": "clip_similarity"},
                                                                           {"method": "dtrak", "timesteps": 2}]})
    run(tmp_path, configs=[cfg])
    import pandas as pd

    v = pd.read_csv(tmp_path / "results" / "values.csv")
    assert set(v["method"]) == {"leverage", "clip_similarity-mean", "clip_similarity-max", "dtrak"} and np.isfinite(v["credit"]).all()
    assert sorted(set(v["contributor"])) == ["degas", "manet", "monet"]
    models = list((tmp_path / "results" / "coalitions").glob("*/model"))
    assert models
    for m in models:
        assert {p.name for p in m.iterdir()} >= {"adapter_model.safetensors", "conditioning.json"}
    assert sum(planned(tmp_path, configs=[cfg]).values()) == 0


def test_gradient_features_of_the_default_bfloat16_base(pipe_dir):
    """TRAK's features with the default bfloat16 frozen weights (and text encoders): finite,
    float32, and near the float32 model's (bfloat16 keeps about 3 digits)."""
    from diffcredit.attribution.gradients import featurize

    images = np.random.default_rng(1).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    fspec = {"kind": "gradient", "output": "loss", "normalize": False, "residual": False, "timesteps": 3,
             "projection_dim": None, "projection_seed": 0, "seeds": [0]}
    features = {}
    for dtype in ("float32", "bfloat16"):
        cfg = flux_cfg(pipe_dir, dtype=dtype)
        spec, runtime = FLUX.resolve(cfg, DATA), FLUX.runtime(cfg)
        model = FLUX.init(spec, runtime)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in FLUX.trainable(model).values():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        enc = FLUX.encode_shard(FLUX.encode_spec(spec), {"images": images}, CPU, 4, runtime)
        data = {k: torch.from_numpy(v) for k, v in FLUX.training_data_from([enc]).items()}
        features[dtype] = featurize(FLUX, model, data, fspec, CPU, batch_size=2, progress=False)["features"][0]
    low, high = features["bfloat16"], features["float32"]
    assert low.dtype == np.float32 and np.isfinite(low).all()
    assert np.corrcoef(low.ravel(), high.ravel())[0, 1] > 0.9
    assert np.linalg.norm(low - high) < 0.5 * np.linalg.norm(high)
