"""The ldm and sd_lora families on tiny random models of the real classes: latent
encoding, LoRA rank pruning, adapter round trips and sampling."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from diffcredit.config import validate
from diffcredit.families import get_family
from diffcredit.families.lora import adapter_state, lora_config, prune_ranks, set_adapter
from tiny_models import kl_autoencoder, sd_pipeline, vq_model

CPU = torch.device("cpu")
SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def model_cfg(**model) -> dict:
    """The config's model section with the schema's defaults filled in."""
    return validate({"model": model}, SCHEMA)["model"]
LDM = get_family("ldm")
SD = get_family("sd_lora")


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    return {"pipe": sd_pipeline(root / "pipe"), "vq": vq_model(root / "vq"), "kl": kl_autoencoder(root / "kl")}


def rgb(n, size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


# ---------------------------------------------------------------- ldm


@pytest.mark.parametrize("kind", ["vq", "kl"])
def test_latents_are_scaled_once_and_decoded_with_the_same_scale(parts, kind):
    from diffusers import AutoencoderKL, VQModel

    cfg = model_cfg(family="ldm", autoencoder=str(parts[kind]), latent_scale=0.25, block_out_channels=[16, 32],
                    norm_num_groups=8)
    spec = LDM.resolve(cfg, {"resolution": 16, "channels": 3})
    runtime = LDM.runtime(cfg)
    images = rgb(5, 16)
    enc = LDM.encode_shard(LDM.encode_spec(spec), {"images": images, "labels": np.zeros(5)}, CPU, 2, runtime)
    ae = (VQModel if kind == "vq" else AutoencoderKL).from_pretrained(parts[kind]).eval()
    x = torch.from_numpy(images).float() / 127.5 - 1
    with torch.no_grad():
        out = ae.encode(x)
        raw = out.latents if kind == "vq" else out.latent_dist.mode()
    assert enc["latents"].shape == (5, spec["unet"]["in_channels"], 8, 8)
    np.testing.assert_allclose(enc["latents"], 0.25 * raw.numpy(), rtol=1e-5, atol=1e-6)
    # Sampling decodes z / scale: the encoded latents come back as the autoencoder's reconstruction.
    model = LDM.init(spec, runtime)
    model.extras["runtime"] = runtime
    got = LDM.decode(model, torch.from_numpy(enc["latents"]), CPU, 2)
    with torch.no_grad():
        want = ((ae.decode(raw).sample.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_latent_scale_auto_is_the_autoencoders_scaling_factor(parts):
    cfg = model_cfg(family="ldm", autoencoder=str(parts["kl"]), block_out_channels=[16, 32], norm_num_groups=8)
    assert LDM.resolve(cfg, {"resolution": 16, "channels": 3})["latent_scale"] == 0.5


def test_ldm_model_round_trips_and_samples_are_seeded(parts, tmp_path):
    cfg = model_cfg(family="ldm", autoencoder=str(parts["vq"]), latent_scale=1.0, block_out_channels=[16, 32],
                    norm_num_groups=8, num_train_timesteps=50, seed=3)
    spec = LDM.resolve(cfg, {"resolution": 16, "channels": 3})
    runtime = LDM.runtime(cfg)
    model = LDM.init(spec, runtime)
    LDM.save(model, tmp_path)
    again = LDM.load(tmp_path, runtime)
    gen = {"n_images": 3, "inference_steps": 3, "seed": 1, "eta": 0.0}
    a = LDM.sample(again, 3, {**gen, "batch_size": 3}, CPU, torch.float32, progress=False)
    b = LDM.sample(LDM.load(tmp_path, runtime), 3, {**gen, "batch_size": 3}, CPU, torch.float32, progress=False)
    assert a.shape == (3, 3, 16, 16) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    # Image i's noise depends on (seed, i) only: another batch layout changes float rounding at most.
    c = LDM.sample(again, 3, {**gen, "batch_size": 1}, CPU, torch.float32, progress=False)
    assert np.abs(a.astype(int) - c.astype(int)).max() <= 1
    d = LDM.sample(again, 3, {**gen, "seed": 2, "batch_size": 3}, CPU, torch.float32, progress=False)
    assert np.abs(a.astype(int) - d.astype(int)).mean() > 5


# ---------------------------------------------------------------- sd_lora


def sd_cfg(parts, **lora):
    return model_cfg(family="sd_lora", pretrained=str(parts["pipe"]), prompt="a painting", lora={"rank": 4, **lora})


def sd_model(parts, seed=0, **lora):
    cfg = sd_cfg(parts, **lora)
    spec = SD.resolve({**cfg, "seed": seed}, {"resolution": 32, "channels": 3, "captions": False})
    runtime = SD.runtime(cfg)
    model = SD.init(spec, runtime)
    # A trained adapter: B is no longer zero.
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in SD.trainable(model).items():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return spec, runtime, model


def unet_out(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 16, 16, generator=g)
    cond = torch.randn(2, 16, 32, generator=g)
    with torch.no_grad():
        return model.net(x, torch.tensor([10, 500]), encoder_hidden_states=cond).sample


def test_untrained_adapter_is_the_base_model(parts):
    from diffusers import UNet2DConditionModel

    cfg = sd_cfg(parts)
    spec = SD.resolve(cfg, {"resolution": 32, "channels": 3, "captions": False})
    model = SD.init(spec, SD.runtime(cfg))
    base = UNet2DConditionModel.from_pretrained(parts["pipe"], subfolder="unet").eval()
    assert all(n.startswith(("down_", "up_", "mid_")) and "lora_" in n for n in SD.trainable(model))
    torch.testing.assert_close(unet_out(model), unet_out(type("M", (), {"net": base})), rtol=0, atol=0)


def test_only_lora_parameters_train(parts):
    _, _, model = sd_model(parts)
    trainable = {n for n, p in model.net.named_parameters() if p.requires_grad}
    assert trainable == set(SD.trainable(model)) and trainable
    assert all("lora_" in n for n in trainable)


def test_rank_pruning_keeps_the_kept_components_exactly(parts):
    spec, runtime, model = sd_model(parts)
    state = adapter_state(model.net)
    ranks, pruned = prune_ranks(state, keep=0.5)
    total = sum(v.numel() for v in state.values())
    kept = sum(v.numel() for v in pruned.values())
    assert 0.4 * total <= kept <= 0.5 * total
    # Independent check of the selection: the kept components are the highest-scored ones.
    scores = {}
    for key, a in state.items():
        if key.endswith("lora_A.weight"):
            m = key[: -len(".lora_A.weight")]
            b = state[f"{m}.lora_B.weight"]
            for k in range(a.shape[0]):
                scores[(m, k)] = float(torch.linalg.vector_norm(b[:, k]) * torch.linalg.vector_norm(a[k]))
    kept_scores = [s for (m, k), s in scores.items() if k in _kept(state, pruned, m)]
    dropped = [((m, k), s) for (m, k), s in scores.items() if k not in _kept(state, pruned, m)]
    assert min(kept_scores) >= max(s for _, s in dropped)
    # ...as many as fit: the best dropped one would exceed the budget.
    (m, _), _ = max(dropped, key=lambda d: d[1])
    a, b = state[f"{m}.lora_A.weight"], state[f"{m}.lora_B.weight"]
    assert kept + a.shape[1] + b.shape[0] > 0.5 * total
    # The full adapter with the dropped components zeroed computes what the pruned one does.
    zeroed = {k: v.clone() for k, v in state.items()}
    for (m, k) in scores:
        if k not in _kept(state, pruned, m):
            zeroed[f"{m}.lora_B.weight"][:, k] = 0
    full_cfg = model.net.peft_config["default"]
    unpruned = unet_out(model)
    set_adapter(model.net, full_cfg, zeroed)
    want = unet_out(model)
    set_adapter(model.net, lora_config(spec, ranks), pruned)
    got = unet_out(model)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert (got - unpruned).abs().max() > 1e-2  # the dropped components mattered


def _kept(state, pruned, module):
    """Indices of the components of `module` the pruned state kept (matched by A's rows)."""
    a, kept_a = state[f"{module}.lora_A.weight"], pruned.get(f"{module}.lora_A.weight")
    if kept_a is None:
        return set()
    return {k for k in range(a.shape[0]) if any(torch.equal(a[k], row) for row in kept_a)}


def test_family_prune_then_save_and_load_give_identical_outputs_and_images(parts, tmp_path):
    spec, runtime, model = sd_model(parts)
    SD.prune(model, 0.5, "magnitude")
    before = unet_out(model)
    SD.save(model, tmp_path)
    assert (tmp_path / "adapter_model.safetensors").stat().st_size < 200_000  # an adapter, not a UNet
    again = SD.load(tmp_path, runtime)
    torch.testing.assert_close(unet_out(again), before, rtol=0, atol=0)
    gen = SD.resolve_generate({"n_images": 2, "inference_steps": 2, "seed": 0}, spec, sd_cfg(parts))
    a = SD.sample(model, 2, {**gen, "batch_size": 2}, CPU, torch.float32, progress=False)
    b = SD.sample(again, 2, {**gen, "batch_size": 2}, CPU, torch.float32, progress=False)
    assert a.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(a, b)
    # Image i's noise depends on (seed, i) only; another batch layout changes only float rounding.
    c = SD.sample(again, 2, {**gen, "batch_size": 1}, CPU, torch.float32, progress=False)
    assert np.abs(a.astype(int) - c.astype(int)).max() <= 1
    d = SD.sample(again, 2, {**gen, "seed": 1, "batch_size": 2}, CPU, torch.float32, progress=False)
    assert np.abs(a.astype(int) - d.astype(int)).mean() > 5


def test_a_conditioned_adapter_samples_prompts_from_its_captions(parts, tmp_path):
    """The proxy strategy on a text family: image i's prompt is drawn, with its own seed,
    from the conditioned captions in proportion to their counts; its images are the ones
    generate.prompts set to those draws gives; no captions: the empty prompt; the
    captions survive a round trip and the gradient methods' targets carry them."""
    spec, runtime, model = sd_model(parts)
    gen = {**SD.resolve_generate({"n_images": 3, "inference_steps": 2, "seed": 4}, spec, sd_cfg(parts)),
           "batch_size": 2}
    SD.condition_on(model, np.array(["a cat"] * 3 + ["a dog"]))
    drawn = SD.prompts_of(model, gen, 0, 4000)
    assert set(drawn) == {"a cat", "a dog"} and abs(drawn.count("a dog") / 4000 - 0.25) < 0.03
    assert SD.prompts_of(model, gen, 10, 5) == drawn[10:15]  # image i: its own draw, whatever the batch
    images = SD.sample(model, 3, gen, CPU, torch.float32, progress=False)
    plain = SD.load(_saved(SD, model, tmp_path / "a"), runtime)
    assert plain.extras["captions"] == {"a cat": 3, "a dog": 1}
    del plain.extras["captions"]
    by_hand = SD.sample(plain, 3, {**gen, "prompts": drawn[:3]}, CPU, torch.float32, progress=False)
    np.testing.assert_array_equal(images, by_hand)
    targets = SD.target_data(images, gen, SD.encode_spec(spec), CPU, 2, runtime, model)
    want = SD.encode_text(runtime["pretrained"], sorted(set(drawn[:3])), CPU)
    np.testing.assert_array_equal(targets["text"][targets["text_index"]],
                                  want[[sorted(set(drawn[:3])).index(p) for p in drawn[:3]]])
    SD.condition_on(model, np.array([], dtype=str))
    assert SD.prompts_of(model, gen, 0, 3) == ["", "", ""]


def _saved(family, model, folder):
    folder.mkdir()
    family.save(model, folder)
    return folder


def test_alpha_survives_the_round_trip(parts, tmp_path):
    _, runtime, model = sd_model(parts, alpha=16)
    SD.prune(model, 0.6, "magnitude")
    SD.save(model, tmp_path)
    want = unet_out(model)
    torch.testing.assert_close(unet_out(SD.load(tmp_path, runtime)), want, rtol=0, atol=0)
    # Without the stored alphas (peft's default alpha) the outputs change: the file is what keeps them.
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    cfg["alpha_pattern"], cfg["lora_alpha"] = {}, 8
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path, broken, ignore=shutil.ignore_patterns("broken"))
    (broken / "adapter_config.json").write_text(json.dumps(cfg))
    assert (unet_out(SD.load(broken, runtime)) - want).abs().max() > 1e-4


def test_text_encoding_matches_the_pipelines_prompt_encoding(parts):
    from diffusers import StableDiffusionPipeline

    cfg = sd_cfg(parts)
    spec = SD.resolve(cfg, {"resolution": 32, "channels": 3, "captions": True})
    images = rgb(3, 32)
    captions = np.asarray(["a cat", "a dog", "a cat"])
    enc = SD.encode_shard(SD.encode_spec(spec), {"images": images, "captions": captions}, CPU, 2,
                          SD.runtime(cfg))
    assert enc["text"].shape[0] == 2 and list(enc["text_index"]) == [0, 1, 0]
    pipe = StableDiffusionPipeline.from_pretrained(parts["pipe"], safety_checker=None, feature_extractor=None,
                                                   requires_safety_checker=False)
    with torch.no_grad():
        want, _ = pipe.encode_prompt(["a cat", "a dog"], CPU, 1, False)
    np.testing.assert_allclose(enc["text"], want.numpy(), rtol=1e-5, atol=1e-5)
    # Training batches pair each image with its own caption's embedding.
    data = SD.training_data_from([enc, enc])
    x0, cond = SD.batch(None, {k: torch.from_numpy(v) for k, v in data.items()}, torch.tensor([1, 4]))
    torch.testing.assert_close(cond[0], torch.from_numpy(want.numpy()[1]))
    torch.testing.assert_close(cond[1], torch.from_numpy(want.numpy()[1]))
    with torch.no_grad():
        z = pipe.vae.encode(torch.from_numpy(images).float() / 127.5 - 1).latent_dist.mode()
    torch.testing.assert_close(x0[0], z[1] * pipe.vae.config.scaling_factor, rtol=1e-5, atol=1e-5)


def test_sd_lora_training_lowers_the_loss_on_its_data(parts):
    from diffcredit.training import TrainSpec, train

    cfg = sd_cfg(parts)
    spec = SD.resolve(cfg, {"resolution": 32, "channels": 3, "captions": False})
    runtime = SD.runtime(cfg)
    enc = SD.encode_shard(SD.encode_spec(spec), {"images": rgb(8, 32)}, CPU, 4, runtime)
    model = SD.init(spec, runtime)
    stats = train(SD, model, SD.training_data_from([enc]), TrainSpec(steps=60, batch_size=8, lr=3e-3, seed=0), CPU,
                  progress=False)
    assert stats["final_loss"] is not None
    # Compare the loss at fixed noise before and after training.
    base = SD.init(spec, runtime)
    data = {k: torch.from_numpy(v) for k, v in SD.training_data_from([enc]).items()}
    x0, cond = SD.batch(model, data, torch.arange(8))
    g = torch.Generator().manual_seed(0)
    noise, t = torch.randn(x0.shape, generator=g), torch.randint(0, 1000, (8,), generator=g)
    with torch.no_grad():
        assert SD.loss(model, x0, noise, t, cond).mean() < SD.loss(base, x0, noise, t, cond).mean()
