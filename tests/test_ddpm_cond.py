"""The class-conditional DDPM family: the condition dropped at the configured rate,
labels remembered and sampled in the training mix, guidance as the formula says,
pruning with the class embedding, storage, and exact resume."""

import numpy as np
import pytest
import torch

from diffcredit.families import get_family
from diffcredit.families.ddpm import n_parameters
from diffcredit.artifacts import atomic_dir
from diffcredit.training import TrainSpec, train

FAMILY = get_family("ddpm_cond")
CPU = torch.device("cpu")
MODEL = {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8, "num_train_timesteps": 50,
         "attention_levels": [], "attention_head_dim": None, "mid_attention": False, "beta_schedule": "linear",
         "beta_start": 0.0001, "beta_end": 0.02, "prediction_type": "epsilon", "dropout": 0, "flip_sin_to_cos": True,
         "freq_shift": 0, "downsample_padding": 1, "seed": 0}
GENERATE = {"n_images": 8, "inference_steps": 4, "batch_size": 3, "seed": 5, "eta": 0.0, "guidance_scale": 1.0}


def model(dropout=0.25, classes=3):
    spec = FAMILY.resolve({**MODEL, "condition_dropout": dropout}, {"resolution": 8, "channels": 1,
                                                                    "classes": classes})
    return FAMILY.init(spec), spec


def data(n=30, seed=0, labels=(0, 2)):
    rng = np.random.default_rng(seed)
    return {"images": rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8),
            "labels": rng.choice(np.array(labels), n).astype(np.int64)}


def test_the_spec_has_a_null_row_and_unlabelled_data_is_refused():
    m, spec = model(classes=3)
    assert spec["unet"]["num_class_embeds"] == 4 and FAMILY.null_label(m) == 3
    with pytest.raises(ValueError, match="needs labelled data"):
        FAMILY.resolve({**MODEL, "condition_dropout": 0.1}, {"resolution": 8, "channels": 1, "classes": 0})


def test_condition_dropout_uses_the_steps_generator_at_its_rate():
    m, _ = model(dropout=0.25)
    cond = torch.zeros(20000, dtype=torch.long)
    g = torch.Generator().manual_seed(1)
    dropped = FAMILY.drop_condition(m, cond, g)
    share = (dropped == 3).float().mean().item()
    assert abs(share - 0.25) < 0.015 and set(dropped.unique().tolist()) == {0, 3}
    again = FAMILY.drop_condition(m, cond, torch.Generator().manual_seed(1))
    assert torch.equal(dropped, again)
    assert torch.equal(get_family("ddpm").drop_condition(m, cond, g), cond)  # the unconditional family keeps it


def test_training_remembers_the_label_mix_and_round_trips(tmp_path):
    m, _ = model()
    d = data()
    spec = TrainSpec(steps=4, batch_size=8, lr=1e-3, seed=1)
    train(FAMILY, m, d, spec, CPU, torch.float32, progress=False)
    counts = dict(zip(*np.unique(d["labels"], return_counts=True)))
    assert m.extras["label_counts"] == {int(k): int(v) for k, v in counts.items()}
    with atomic_dir(tmp_path / "m") as tmp:
        FAMILY.save(m, tmp)
    loaded = FAMILY.load(tmp_path / "m")
    assert {k: loaded.extras[k] for k in ("condition_dropout", "label_counts")} == \
        {k: m.extras[k] for k in ("condition_dropout", "label_counts")}
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([3, 30]), torch.tensor([0, 2])
    with torch.no_grad():
        torch.testing.assert_close(loaded.net(x, t, class_labels=y).sample, m.net(x, t, class_labels=y).sample)


def test_labels_are_drawn_from_the_training_mix_per_image():
    m, _ = model()
    m.extras["label_counts"] = {0: 30, 2: 10}
    labels = FAMILY.sample_labels(m, 4000, seed=5)
    assert set(labels.tolist()) == {0, 2} and abs((labels == 2).mean() - 0.25) < 0.03
    np.testing.assert_array_equal(FAMILY.sample_labels(m, 10, seed=5), labels[:10])  # image i: its own seed
    m.extras["label_counts"] = {}
    assert (FAMILY.sample_labels(m, 5, seed=5) == 3).all()  # trained on nothing: the null label


def test_guided_sampling_is_the_guidance_formula_and_independent_of_batching():
    """Sampling with scale s equals DDIM run by hand on u + s (c - u); image i keeps
    its label and noise whatever the batch size."""
    from diffusers import DDIMScheduler

    from diffcredit.families.ddpm import image_noise

    m, _ = model()
    m.extras["label_counts"] = {0: 5, 1: 5, 2: 5}
    gen = {**GENERATE, "guidance_scale": 2.4}
    out = FAMILY.denoise(m, 5, gen, CPU, torch.float32, progress=False)
    other = FAMILY.denoise(m, 5, {**gen, "batch_size": 5}, CPU, torch.float32, progress=False)
    torch.testing.assert_close(out, other, rtol=1e-4, atol=1e-5)
    labels = torch.from_numpy(FAMILY.sample_labels(m, 5, gen["seed"]))
    sched = DDIMScheduler(**{**m.scheduler, "steps_offset": 1, "set_alpha_to_one": False})
    sched.set_timesteps(gen["inference_steps"])
    x = image_noise((1, 8, 8), gen["seed"], 0, 5, CPU)
    with torch.no_grad():
        for t in sched.timesteps:
            c = m.net(x, t, class_labels=labels).sample
            u = m.net(x, t, class_labels=torch.full_like(labels, 3)).sample
            x = sched.step(u + 2.4 * (c - u), t, x).prev_sample
    torch.testing.assert_close(out, x, rtol=1e-4, atol=1e-5)
    plain = FAMILY.denoise(m, 5, {**gen, "guidance_scale": 1.0}, CPU, torch.float32, progress=False)
    assert not torch.allclose(plain, out)


def test_the_targets_of_the_gradient_methods_carry_the_labels_sampling_used():
    """The labels the UNet was called with while sampling (recorded from its calls), for
    the model's own mix and for a proxy-conditioned model: what target_data gives, and
    the gradient featurizer sees them through batch()."""
    m, _ = model()
    m.extras["label_counts"] = {0: 5, 1: 9, 2: 2}
    seen = []

    def record(module, args, kwargs):
        seen.append(kwargs["class_labels"].clone())

    handle = m.net.register_forward_pre_hook(record, with_kwargs=True)
    images = FAMILY.sample(m, 7, GENERATE, CPU, torch.float32, progress=False)
    handle.remove()
    steps = GENERATE["inference_steps"]
    used = torch.cat(seen[::steps]).numpy()  # each batch's first step
    assert all(torch.equal(seen[i], seen[i - i % steps]) for i in range(len(seen)))
    targets = FAMILY.target_data(images, GENERATE, None, CPU, 4, {}, m)
    np.testing.assert_array_equal(targets["labels"], used)
    assert len(set(used.tolist())) > 1
    x, y = FAMILY.batch(m, {k: torch.from_numpy(v) for k, v in targets.items()}, torch.arange(7))
    np.testing.assert_array_equal(y.numpy(), used)
    FAMILY.condition_on(m, np.array([2, 2, 2]))
    assert (FAMILY.target_data(images, GENERATE, None, CPU, 4, {}, m)["labels"] == 2).all()


def test_pruning_keeps_the_class_embedding_working(tmp_path):
    m, _ = model()
    before = n_parameters(m.net)
    FAMILY.prune(m, 0.5, "magnitude")
    assert n_parameters(m.net) < 0.6 * before
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([1, 10, 40]), torch.tensor([0, 1, 3])
    with torch.no_grad():
        expected = m.net(x, t, class_labels=y).sample
    with atomic_dir(tmp_path / "p") as tmp:
        FAMILY.save(m, tmp)
    loaded = FAMILY.load(tmp_path / "p")
    with torch.no_grad():
        torch.testing.assert_close(loaded.net(x, t, class_labels=y).sample, expected, rtol=1e-5, atol=1e-6)


class Killed(Exception):
    pass


def test_resume_gives_identical_weights_with_dropout(tmp_path):
    """The dropout draws come from each step's generator, so a run killed after its
    step-4 checkpoint and resumed drops the same items as an uninterrupted one."""
    spec = TrainSpec(steps=8, batch_size=8, lr=1e-3, seed=3)
    reference, _ = model(dropout=0.5)
    train(FAMILY, reference, data(), spec, CPU, torch.float32, progress=False)
    killed, _ = model(dropout=0.5)
    calls = {"n": 0}

    def die(module, args, out):
        calls["n"] += 1
        if calls["n"] == 7:
            raise Killed

    handle = killed.net.register_forward_hook(die)
    with pytest.raises(Killed):
        train(FAMILY, killed, data(), spec, CPU, torch.float32, tmp_path / "ck", 4, progress=False)
    handle.remove()
    resumed, _ = model(dropout=0.5)
    stats = train(FAMILY, resumed, data(), spec, CPU, torch.float32, tmp_path / "ck", 4, progress=False)
    assert stats["start_step"] == 4
    for (name, a), b in zip(reference.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), name
