"""The same guarantees on a GPU. Every test here is marked `cuda`: `pytest -m cuda`
selects exactly these, `-m "not cuda"` leaves them out. Where torch sees no CUDA
device they are reported as skipped, with that reason, never passed silently."""

import numpy as np
import pytest
import torch

from diffcredit.families import get_family
from diffcredit.families.base import Model
from diffcredit.families.ddpm import build_unet, scheduler_config, unet_config
from diffcredit.training import TrainSpec, train

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False)"),
]
DDPM = get_family("ddpm")
MODEL = {"block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 8, "num_train_timesteps": 100,
         "attention_levels": [1], "attention_head_dim": 8}


def model():
    return Model(build_unet(unet_config(MODEL, 16, 3), 0), scheduler_config(MODEL))


def data():
    return np.random.default_rng(0).integers(0, 256, (64, 3, 16, 16), dtype=np.uint8)


@pytest.mark.parametrize("precision", [torch.float32, torch.bfloat16, torch.float16])
def test_training_on_cuda_learns_and_resumes_exactly(tmp_path, precision):
    cuda = torch.device("cuda")
    spec = TrainSpec(steps=40, batch_size=16, lr=2e-3, ema_decay=0.9, seed=0)
    a = model()
    stats = train(DDPM, a, data(), spec, cuda, precision, progress=False)
    assert np.isfinite(stats["final_loss"])
    # A run that finds the checkpoint of step 20 (as a killed one would) ends with
    # the uninterrupted run's weights.
    c = model()
    train(DDPM, c, data(), spec, cuda, precision, tmp_path, checkpoint_every=20, progress=False)
    d = model()
    resumed = train(DDPM, d, data(), spec, cuda, precision, tmp_path, checkpoint_every=20, progress=False)
    assert resumed["start_step"] == 20
    # CUDA's attention and convolution backward kernels are not deterministic, so
    # two runs differ in the last bits (about 1e-6 here); bit-identical resumption is
    # the CPU's guarantee (test_resume.py). A resume that lost the optimizer or EMA
    # state is off by orders of magnitude more.
    for k, v in c.net.state_dict().items():
        torch.testing.assert_close(d.net.state_dict()[k], v, rtol=0, atol=1e-4, msg=k)


def test_sampling_on_cuda_is_seeded():
    cuda = torch.device("cuda")
    spec = {"inference_steps": 5, "seed": 3, "batch_size": 8, "eta": 0.0}
    a = DDPM.sample(model(), 8, spec, cuda, torch.float32, progress=False)
    b = DDPM.sample(model(), 8, spec, cuda, torch.float32, progress=False)
    assert np.array_equal(a, b)


def _topological(plan) -> list[str]:
    done, order = set(), []

    def visit(key):
        if key in done or key not in plan.nodes:  # a parent outside the plan: a content hash
            return
        for parent in plan.nodes[key].parents.values():
            for p in parent if isinstance(parent, list) else [parent]:
                visit(p)
        done.add(key)
        order.append(key)

    for key in plan.nodes:
        visit(key)
    return order


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_scaled_cifar20_runs_every_stage_on_cuda(tmp_path, monkeypatch, precision):
    """configs/cifar20.yaml scaled down, every job of its plan run on the GPU in
    dependency order (the rules' command, without Snakemake): finite scores whose
    Shapley values sum to v(full) - v(empty), and generation that repeats exactly."""
    import json

    import pandas as pd

    from conftest import REPO
    from diffcredit.runner import run_job
    from diffcredit.config import deep_update, load_yaml
    from diffcredit.plan import Plan
    from synthetic import write_cifar100, write_random_inception
    from test_cifar20 import SCHEMA, scaled_down

    monkeypatch.chdir(tmp_path)
    root = write_cifar100(tmp_path / "cifar", per_class=6)
    weights = write_random_inception(tmp_path / "inception.pth")
    small = deep_update(scaled_down(tmp_path, root, weights), {"device": "cuda", "precision": precision})
    cfg = deep_update(deep_update(load_yaml(REPO / "config.yaml"), load_yaml(REPO / "configs" / "cifar20.yaml")), small)
    cfg["results"] = str(tmp_path / "results")
    plan = Plan(cfg, SCHEMA)
    for key in _topological(plan):
        run_job(plan.job(key), progress=False)
    values = pd.read_csv(plan.nodes[plan.keys("shapley_estimate")[0]].path + "/values.csv")
    assert np.isfinite(values["value"]).all() and sorted(values["contributor"].unique()) == plan.names
    diagnostics = json.loads(open(plan.nodes[plan.keys("shapley_estimate")[0]].path + "/diagnostics.json").read())
    for prop, table in values.groupby("property"):
        assert table["value"].sum() == pytest.approx(diagnostics[prop]["v_full"] - diagnostics[prop]["v_empty"], abs=1e-9)
    gen = plan.keys("generate")[0]
    first = np.load(plan.nodes[gen].path)
    job = plan.job(gen)
    job["out"] = str(tmp_path / "again.npz")
    run_job(job, progress=False)
    again = np.load(job["out"])
    for name in first.files:
        assert np.array_equal(first[name], again[name]), name


def test_inception_features_on_cuda_match_the_cpu(tmp_path):
    """The same images through the Inception extractor on the GPU (fp32) and the CPU."""
    from diffcredit.extractors import get_extractor
    from synthetic import write_random_inception

    weights = write_random_inception(tmp_path / "inception.pth")
    extractor = get_extractor("inception")
    images = np.random.default_rng(1).integers(0, 256, (24, 3, 32, 32), dtype=np.uint8)
    spec = {"weights_path": str(weights)}
    on_cpu = extractor.extract(extractor.load(spec, None, torch.device("cpu")), images, 8)
    on_gpu = extractor.extract(extractor.load(spec, None, torch.device("cuda")), images, 8)
    for name, a in on_cpu.items():
        b = on_gpu[name]
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 1e-2 * (np.abs(a).max() + 1e-6), name


def test_guided_conditional_sampling_and_training_on_cuda():
    """ddpm_cond on the GPU: guided samples (labels drawn from the training mix) match the
    CPU's to float precision and repeat exactly; training with condition dropout learns
    the label mix in bf16."""
    from test_ddpm_cond import FAMILY as COND, GENERATE
    from test_ddpm_cond import data as cond_data
    from test_ddpm_cond import model as cond_model

    cuda = torch.device("cuda")
    m, _ = cond_model()
    m.extras["label_counts"] = {0: 5, 1: 2, 2: 5}
    gen = {**GENERATE, "guidance_scale": 2.0}
    on_cpu = COND.denoise(m, 7, gen, torch.device("cpu"), torch.float32, progress=False)
    on_gpu = COND.denoise(m, 7, gen, cuda, torch.float32, progress=False)
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-3, atol=1e-3)
    assert torch.equal(on_gpu, COND.denoise(m, 7, gen, cuda, torch.float32, progress=False))
    fresh, _ = cond_model()
    stats = train(COND, fresh, cond_data(), TrainSpec(steps=20, batch_size=8, lr=2e-3, seed=0), cuda,
                  torch.bfloat16, progress=False)
    assert np.isfinite(stats["final_loss"])
    assert set(fresh.extras["label_counts"]) == {0, 2}


@pytest.mark.parametrize("family", ["sdxl_lora", "flux_lora"])
def test_text_lora_families_on_cuda(tmp_path, family):
    """The SDXL and FLUX LoRA families on the GPU: predictions match the CPU's, training
    in bf16 (FLUX: bf16 frozen weights, float32 adapter) moves only the adapter and
    keeps it float32, and seeded sampling repeats exactly."""
    from diffcredit.config import validate
    from test_flux import SCHEMA
    from tiny_models import flux_pipeline, sdxl_pipeline

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    fam = get_family(family)
    pipe = (flux_pipeline if family == "flux_lora" else sdxl_pipeline)(tmp_path / "pipe")
    extra = {"max_sequence_length": 16} if family == "flux_lora" else {}
    data_cfg = {"resolution": 32, "channels": 3, "captions": False}

    def make(dtype):
        cfg = {"family": family, "pretrained": str(pipe), "lora": {"rank": 4}, "prompt": "a photo", **extra}
        if family == "flux_lora":
            cfg["dtype"] = dtype
        cfg = validate({"model": cfg}, SCHEMA)["model"]
        spec, runtime = fam.resolve(cfg, data_cfg), fam.runtime(cfg)
        return cfg, spec, runtime, fam.init(spec, runtime)

    cfg, spec, runtime, model = make("float32")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in fam.trainable(model).values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    images = np.random.default_rng(0).integers(0, 256, (8, 3, 32, 32), dtype=np.uint8)
    enc = fam.encode_shard(fam.encode_spec(spec), {"images": images}, cuda, 4, runtime)
    enc_cpu = fam.encode_shard(fam.encode_spec(spec), {"images": images}, cpu, 4, runtime)
    # cuDNN's convolutions run in TF32 by default (about 1e-3 relative); a wrong computation is off by O(1).
    for name in enc:
        assert np.linalg.norm(enc[name] - enc_cpu[name]) <= 1e-2 * np.linalg.norm(enc_cpu[name]), name
    data = fam.training_data_from([enc_cpu])
    x0, cond = fam.batch(model, {k: torch.from_numpy(v) for k, v in data.items()}, torch.arange(4))
    t = torch.tensor([3, 250, 600, 999])
    with torch.no_grad():
        want = fam.predict(model, x0, t, cond)
        model.net.to(cuda)
        got = fam.predict(model, x0.to(cuda), t.to(cuda), cond.to(cuda)).cpu()
    assert (got - want).norm() <= 1e-2 * want.norm()

    _, _, _, low = make("bfloat16")
    before = {n: p.detach().clone() for n, p in low.net.named_parameters()}
    stats = train(fam, low, data, TrainSpec(steps=6, batch_size=4, lr=1e-3, seed=0), cuda, torch.bfloat16,
                  progress=False)
    assert np.isfinite(stats["final_loss"])
    moved = {n for n, p in low.net.named_parameters() if not torch.equal(p.detach().cpu(), before[n].cpu())}
    assert moved and moved <= set(fam.trainable(low))
    assert {p.dtype for p in fam.trainable(low).values()} == {torch.float32}
    gen = fam.resolve_generate({"n_images": 3, "inference_steps": 2, "seed": 1, "batch_size": 2,
                                "prompts": ["a cat", "a dog"]}, spec, cfg)
    first = fam.sample(low, 3, gen, cuda, torch.bfloat16, progress=False)
    assert first.shape == (3, 3, 32, 32) and first.dtype == np.uint8
    assert np.array_equal(first, fam.sample(low, 3, gen, cuda, torch.bfloat16, progress=False))
