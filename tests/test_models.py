"""Pixel DDPM family: pruning, storage without pickling, exact resume, sampling."""

import json

import numpy as np
import pytest
import torch

from diffcredit.io import atomic_dir, verify_dir
from diffcredit.models import (
    STRUCTURE,
    build_unet,
    load_model,
    n_parameters,
    prune_unet,
    save_model,
    scheduler_config,
    unet_config,
)
from diffcredit.sampling import sample_ddim
from diffcredit.io import list_checkpoints
from diffcredit.training import TrainSpec, train

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
        save_model(model, tmp, scheduler_config(MODEL))
    assert (out / STRUCTURE).is_file()
    # The weights are safetensors and the structure is JSON: nothing pickled.
    assert not list(out.glob("*.pt")) and not list(out.glob("*.bin"))
    json.loads((out / STRUCTURE).read_text())
    loaded, _ = load_model(out)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    with torch.no_grad():  # pruned slices may be laid out differently in memory
        torch.testing.assert_close(loaded(x, t).sample, expected, rtol=1e-5, atol=1e-6)


def test_dense_model_has_no_structure_file(tmp_path):
    with atomic_dir(tmp_path / "m") as tmp:
        save_model(tiny_unet(), tmp, scheduler_config(MODEL))
    assert not (tmp_path / "m" / STRUCTURE).exists()
    verify_dir(tmp_path / "m")


def _train(model, ckpt, steps=12, every=4):
    spec = TrainSpec(steps=steps, batch_size=8, lr=1e-3, warmup_steps=2, ema_decay=0.9, seed=3)
    return train(model, images(), spec, scheduler_config(MODEL), ckpt, every, progress=False)


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


def test_sampling_is_seeded_and_prefix_stable():
    model = tiny_unet()
    cfg = scheduler_config(MODEL)
    a = sample_ddim(model, cfg, 10, 3, seed=5, batch_size=4, progress=False)
    b = sample_ddim(model, cfg, 6, 3, seed=5, batch_size=4, progress=False)
    c = sample_ddim(model, cfg, 6, 3, seed=6, batch_size=4, progress=False)
    assert a.dtype == np.uint8 and a.shape == (10, 1, 8, 8)
    assert np.array_equal(a[:6], b)
    assert not np.array_equal(b, c)
