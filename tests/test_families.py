"""The ddpm family: pruning, storage without pickling, loss targets, exact resume,
sampling."""

import json

import numpy as np
import pytest
import torch

from diffcredit.families import get_family
from diffcredit.families.base import Model
from diffcredit.families.ddpm import (
    STRUCTURE,
    build_unet,
    load_unet,
    n_parameters,
    prune_unet,
    save_unet,
    scheduler_config,
    unet_config,
)
from diffcredit.artifacts import atomic_dir, list_checkpoints, verify_dir
from diffcredit.training import TrainSpec, lr_factor, train

DDPM = get_family("ddpm")
CPU = torch.device("cpu")

MODEL = {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8, "num_train_timesteps": 50}


def tiny_unet(seed=0, **overrides):
    return build_unet(unet_config({**MODEL, **overrides}, resolution=8, channels=1), seed)


def images(n=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 8, 8), dtype=np.uint8)


def test_build_is_seeded():
    a, b, c = tiny_unet(0), tiny_unet(0), tiny_unet(1)
    for (ka, pa), (_, pb), (_, pc) in zip(a.state_dict().items(), b.state_dict().items(), c.state_dict().items()):
        assert torch.equal(pa, pb), ka
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_pruning_shrinks_with_the_ratio_up_to_the_norm_groups_limit_and_is_refused_past_it():
    """Widths [32, 64] with 8 norm groups: the model shrinks as the ratio grows up to
    1 - 8/32 = 0.75; past it the pruner prunes less (0.9 keeps more than 0.75), which is
    why the family refuses such a ratio before any job."""
    config = {**MODEL, "block_out_channels": [32, 64]}
    spec = DDPM.resolve({**config, "seed": 0, "beta_schedule": "linear"}, {"resolution": 8, "channels": 1})
    kept = {}
    for ratio in (0.25, 0.5, 0.75, 0.9):
        model = tiny_unet(block_out_channels=[32, 64])
        prune_unet(model, ratio)
        kept[ratio] = n_parameters(model)
    assert kept[0.25] > kept[0.5] > kept[0.75] < kept[0.9]
    DDPM.check_prune(spec, 0.75)
    with pytest.raises(ValueError, match="prune.ratio 0.9 would leave the narrowest level .32 channels. fewer than "
                                         "its 8 norm groups.*at most 0.75"):
        DDPM.check_prune(spec, 0.9)


@pytest.mark.parametrize("attention", [False, True])
def test_pruned_model_runs_and_round_trips(tmp_path, attention):
    over = {"attention_levels": [1], "mid_attention": True, "attention_head_dim": 8} if attention else {}
    model = tiny_unet(**over)
    before = n_parameters(model)
    prune_unet(model, 0.5)
    assert n_parameters(model) < 0.6 * before
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([1, 10, 40])
    with torch.no_grad():
        expected = model(x, t).sample
    assert expected.shape == (3, 1, 8, 8)
    out = tmp_path / "pruned"
    with atomic_dir(out) as tmp:
        save_unet(model, tmp, scheduler_config(MODEL))
    assert (out / STRUCTURE).is_file()
    # The weights are safetensors and the structure is JSON: nothing pickled.
    assert not list(out.glob("*.pt")) and not list(out.glob("*.bin"))
    json.loads((out / STRUCTURE).read_text())
    loaded, _ = load_unet(out)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    with torch.no_grad():  # pruned slices may be laid out differently in memory
        torch.testing.assert_close(loaded(x, t).sample, expected, rtol=1e-5, atol=1e-6)


def test_dense_model_has_no_structure_file(tmp_path):
    with atomic_dir(tmp_path / "m") as tmp:
        save_unet(tiny_unet(), tmp, scheduler_config(MODEL))
    assert not (tmp_path / "m" / STRUCTURE).exists()
    verify_dir(tmp_path / "m")


def wrap(unet, **model):
    return Model(unet, scheduler_config({**MODEL, **model}))


def _train(model, ckpt, steps=12, every=4):
    spec = TrainSpec(steps=steps, batch_size=8, lr=1e-3, warmup_steps=2, ema_decay=0.9, seed=3)
    return train(DDPM, wrap(model), images(), spec, CPU, torch.float32, ckpt, every, progress=False)


class Killed(Exception):
    pass


def _train_killed_at_step(model, ckpt, step):
    """Train until the forward pass of `step` (0-based), where the 'process' dies."""
    calls = {"n": 0}

    def die(module, args, out):
        calls["n"] += 1
        if calls["n"] == step + 1:
            raise Killed

    handle = model.register_forward_hook(die)
    with pytest.raises(Killed):
        _train(model, ckpt)
    handle.remove()


def test_resume_from_checkpoint_gives_identical_weights(tmp_path):
    reference = tiny_unet()
    _train(reference, None)
    _train_killed_at_step(tiny_unet(), tmp_path / "ckpt", step=9)
    assert [s for s, _ in list_checkpoints(tmp_path / "ckpt")] == [4, 8]

    resumed = tiny_unet()  # a fresh process would rebuild the start model
    stats = _train(resumed, tmp_path / "ckpt")
    assert stats["start_step"] == 8
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_learning_rate_schedules():
    const = TrainSpec(steps=10, batch_size=8, lr=1e-3, warmup_steps=4)
    assert [lr_factor(const, s) for s in range(10)] == [0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 1, 1]
    cos = TrainSpec(steps=10, batch_size=8, lr=1e-3, warmup_steps=2, schedule="cosine")
    got = [lr_factor(cos, s) for s in range(10)]
    # After warmup, half a cosine period over the 8 remaining steps, zero after the last.
    want = [0.5, 1.0] + [(1 + np.cos(np.pi * k / 8)) / 2 for k in range(1, 9)]
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert got[-1] == pytest.approx(0.0) and all(a > b for a, b in zip(got[1:], got[2:]))


def test_cosine_schedule_resumes_to_identical_weights(tmp_path):
    spec = TrainSpec(steps=12, batch_size=8, lr=1e-3, warmup_steps=2, schedule="cosine", seed=3)
    reference = tiny_unet()
    train(DDPM, wrap(reference), images(), spec, CPU, torch.float32, None, 0, progress=False)
    killed = tiny_unet()
    calls = {"n": 0}

    def die(module, args, out):
        calls["n"] += 1
        if calls["n"] == 10:
            raise Killed

    handle = killed.register_forward_hook(die)
    with pytest.raises(Killed):
        train(DDPM, wrap(killed), images(), spec, CPU, torch.float32, tmp_path / "ckpt", 4, progress=False)
    handle.remove()
    resumed = tiny_unet()
    stats = train(DDPM, wrap(resumed), images(), spec, CPU, torch.float32, tmp_path / "ckpt", 4, progress=False)
    assert stats["start_step"] == 8
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_corrupt_checkpoint_falls_back_to_previous(tmp_path, caplog):
    # Checkpoints at 4 and 8; then truncate the newest.
    ckpt = tmp_path / "ckpt"
    _train_killed_at_step(tiny_unet(), ckpt, step=9)
    newest = list_checkpoints(ckpt)[-1][1]
    newest.write_bytes(newest.read_bytes()[:100])
    with caplog.at_level("WARNING"):
        stats = _train(tiny_unet(), ckpt)
    assert stats["start_step"] == 4
    assert "corrupt checkpoint" in caplog.text


def sample(model, n, seed, batch_size, eta=0.0):
    spec = {"inference_steps": 3, "seed": seed, "batch_size": batch_size, "eta": eta}
    return DDPM.sample(wrap(model), n, spec, CPU, torch.float32, progress=False)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sampling_is_seeded_and_independent_of_batching(eta):
    """Image i depends on (seed, i) only: more images or another batch size keep it."""
    model = tiny_unet()
    a = sample(model, 10, seed=5, batch_size=4, eta=eta)
    b = sample(model, 6, seed=5, batch_size=6, eta=eta)
    c = sample(model, 6, seed=6, batch_size=4, eta=eta)
    assert a.dtype == np.uint8 and a.shape == (10, 1, 8, 8)
    np.testing.assert_allclose(a[:6].astype(int), b.astype(int), atol=1)  # batched float kernels may differ by 1 ulp
    assert not np.array_equal(b, c)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_loss_target_follows_prediction_type(prediction):
    """The per-sample loss equals a direct computation with the scheduler's target."""
    from diffusers import DDPMScheduler

    model = wrap(tiny_unet(), prediction_type=prediction)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
    t = torch.tensor([0, 7, 20, 49])
    sched = DDPMScheduler(**model.scheduler)
    xt = sched.add_noise(x0, noise, t)
    target = {"epsilon": noise, "v_prediction": sched.get_velocity(x0, noise, t), "sample": x0}[prediction]
    with torch.no_grad():
        expected = ((model.net(xt, t).sample - target) ** 2).mean(dim=(1, 2, 3))
        got = DDPM.loss(model, x0, noise, t)
    assert got.shape == (4,)
    torch.testing.assert_close(got, expected)


def test_gradient_ascent_raises_the_loss_on_its_data():
    unet = tiny_unet()
    data = images(16, seed=1)
    spec = TrainSpec(steps=30, batch_size=16, lr=3e-3, seed=0)
    train(DDPM, wrap(unet), data, spec, CPU, torch.float32, progress=False)  # first learn the data
    model = wrap(unet)

    def loss():
        g = torch.Generator().manual_seed(1)
        x0 = data.astype(np.float32) / 127.5 - 1
        x0 = torch.from_numpy(x0).repeat(4, 1, 1, 1)
        noise, t = torch.randn(x0.shape, generator=g), torch.randint(0, 50, (len(x0),), generator=g)
        with torch.no_grad():
            return DDPM.loss(model, x0, noise, t).mean().item()

    before = loss()
    train(DDPM, model, data, TrainSpec(steps=10, batch_size=16, lr=1e-3, seed=2), CPU, torch.float32,
          progress=False, ascent=True)
    assert loss() > before * 1.2


def test_parameter_estimate_is_close_to_the_real_count():
    spec = DDPM.resolve({**MODEL, "block_out_channels": [64, 128, 128], "layers_per_block": 2,
                         "attention_levels": [1], "seed": 0}, {"resolution": 16, "channels": 3})
    real = n_parameters(build_unet(spec["unet"], 0))
    assert 0.6 * real < DDPM.estimate_parameters(spec) < 1.4 * real


def test_mixed_precision_on_the_cpu_is_fp32_bit_for_bit():
    """Autocast applies on CUDA only: bf16 or fp16 on the CPU changes nothing."""
    runs = []
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        unet = tiny_unet()
        spec = TrainSpec(steps=5, batch_size=8, lr=1e-3, ema_decay=0.9, seed=1)
        train(DDPM, wrap(unet), images(), spec, CPU, dtype, progress=False)
        runs.append(unet.state_dict())
    for other in runs[1:]:
        for k in runs[0]:
            assert torch.equal(runs[0][k], other[k]), k


def test_a_job_refuses_an_altered_start_model(tmp_path):
    from diffcredit.data import write_shard
    from diffcredit.artifacts import CorruptArtifactError
    from diffcredit.stages.models import train as train_job

    start = tmp_path / "start"
    with atomic_dir(start) as tmp:
        DDPM.save(wrap(tiny_unet()), tmp)
    weights = start / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    write_shard(tmp_path / "shard.npz", images(8), np.zeros(8, dtype=np.int64))
    job = {"rule": "fine_tune", "family": "ddpm", "device": "cpu", "threads": 1, "members": ["a"],
           "training": {"steps": 1, "batch_size": 4, "lr": 1e-3},
           "inputs": {"start": str(start), "shards": [str(tmp_path / "shard.npz")]},
           "out": str(tmp_path / "out"), "scratch": str(tmp_path / "scratch")}
    with pytest.raises(CorruptArtifactError, match="truncated or altered"):
        train_job(job, progress=False)
    assert not (tmp_path / "out").exists()
