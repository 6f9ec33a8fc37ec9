"""Training throughput of diffcredit's loop against a plain diffusers loop.

The same model, batch, optimizer, EMA and gradient clipping, per family:
- ddpm: configs/cifar20.yaml's UNet (35.7M parameters) on 32x32 images; the plain
  loop is the shape of diffusers' train_unconditional.py (random batches,
  DDPMScheduler.add_noise, MSE on the noise, AdamW, EMAModel);
- ldm: a UNet2DModel on precomputed 3x16x16 latents (both loops read the same latent
  tensor; CelebA-HQ's full UNet is too large for a CPU run);
- sd_lora: a rank-`--rank` LoRA on the attention projections of a UNet2DConditionModel
  of Stable Diffusion 1.x's architecture (miniSD: 32x32 latents, 77x768 text states),
  base frozen; the plain loop is the shape of train_text_to_image_lora.py (AdamW on
  the LoRA parameters, no EMA). On the CPU a step's time is the time between the starts of
consecutive forward passes (set-up and the first step excluded) and the median over
all repeats is reported (single steps vary by +-15% on a shared CPU). On CUDA,
where work is queued ahead, a run's step time is the time from the start of its
second forward pass (after a synchronisation) to the end of its last step (after
another), over the steps between; the median over repeats is reported. The loops
alternate.

    python benchmarks/train_throughput.py [--family ddpm|ldm|sd_lora] [--batch 8] [--steps 8]
        [--device cpu] [--precision fp32] [--rank 256]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from diffcredit.devices import autocast, dtype_of  # noqa: E402
from diffcredit.families import get_family  # noqa: E402
from diffcredit.training import TrainSpec, train  # noqa: E402


def cifar_spec() -> dict:
    model = yaml.safe_load((REPO / "configs" / "cifar20.yaml").read_text())["model"]
    model.setdefault("seed", 0)
    return get_family("ddpm").resolve(model, {"resolution": 32, "channels": 3})


def ldm_spec() -> dict:
    """A latent UNet of the ldm family on 3x16x16 latents (no autoencoder needed to train)."""
    from diffcredit.families.ddpm import scheduler_config, unet_config

    model = {"block_out_channels": [64, 128, 128], "layers_per_block": 2, "attention_levels": [1, 2],
             "attention_head_dim": 32, "mid_attention": True, "norm_num_groups": 32,
             "beta_schedule": "scaled_linear", "beta_start": 0.0015, "beta_end": 0.0195}
    return {"unet": unet_config(model, 16, 3), "scheduler": {**scheduler_config(model), "clip_sample": False},
            "seed": 0}


MINISD_UNET = dict(sample_size=32, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
                   layers_per_block=2, cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
                   down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                   up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
SD_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                    prediction_type="epsilon")


def sd_model(rank: int):
    """miniSD's UNet architecture (random weights) with a LoRA, as the sd_lora family builds it."""
    from diffusers import UNet2DConditionModel

    from diffcredit.families.base import Model
    from diffcredit.families.lora import lora_config

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**MINISD_UNET).requires_grad_(False)
    unet.add_adapter(lora_config({"lora": {"rank": rank, "alpha": rank,
                                           "targets": ["to_q", "to_k", "to_v", "to_out.0"]}}))
    return Model(unet, dict(SD_SCHEDULER))


def timed(net, stamps: list, device):
    """Record the start of every forward pass (on CUDA, synchronised at the second only)."""

    def hook(module, args, kwargs=None):
        if device.type == "cuda" and len(stamps) == 1:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    net.register_forward_pre_hook(hook)


def setup(family: str, rank: int):
    """(the family, a fresh model, training data, plain-loop batch function)."""
    fam = get_family(family)
    rng = np.random.default_rng(0)
    if family == "ddpm":
        spec = cifar_spec()
        data = {"images": rng.integers(0, 256, (1024, 3, 32, 32), dtype=np.uint8)}
        return fam, fam.init(spec), data, lambda d, idx: (d["images"][idx].float() / 127.5 - 1, None)
    if family == "ldm":
        model = get_family("ddpm").init(ldm_spec())
        data = {"latents": rng.normal(size=(1024, 3, 16, 16)).astype(np.float32)}
        return fam, model, data, lambda d, idx: (d["latents"][idx], None)
    model = sd_model(rank)
    data = {"latents": rng.normal(size=(256, 4, 32, 32)).astype(np.float32),
            "text_index": np.zeros(256, dtype=np.int64), "text": rng.normal(size=(1, 77, 768)).astype(np.float32)}
    return fam, model, data, lambda d, idx: (d["latents"][idx], d["text"][d["text_index"][idx]])


def ours(family, steps, batch, device, dtype, stamps, rank) -> None:
    fam, model, data, _ = setup(family, rank)
    timed(model.net, stamps, device)
    ema = 0.9999 if family != "sd_lora" else 0.0
    train(fam, model, data, TrainSpec(steps=steps, batch_size=batch, lr=1e-4, ema_decay=ema, grad_clip=1.0,
                                      antithetic=family == "ddpm"), device, dtype, progress=False)


def plain(family, steps, batch, device, dtype, stamps, rank) -> None:
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    _, model, data, batch_of = setup(family, rank)
    net = model.net.to(device).train()
    timed(net, stamps, device)
    sched = DDPMScheduler(**model.scheduler)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    ema = None if family == "sd_lora" else EMAModel(params, decay=0.9999, use_ema_warmup=True, inv_gamma=1.0,
                                                    power=3 / 4)
    data = {k: torch.from_numpy(v).to(device) for k, v in data.items()}
    n = len(next(iter(data.values())))
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,), device=device)
        x0, cond = batch_of(data, idx)
        noise = torch.randn_like(x0)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), device=device)
        with autocast(device, dtype):
            xt = sched.add_noise(x0, noise, t)
            pred = net(xt, t).sample if cond is None else net(xt, t, encoder_hidden_states=cond).sample
            loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if ema is not None:
            ema.step(params)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", default="ddpm", choices=["ddpm", "ldm", "sd_lora"])
    ap.add_argument("--rank", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), dtype_of(args.precision)
    per_step = {"diffcredit": [], "plain diffusers": []}
    for _ in range(args.repeats):
        for name, fn in (("diffcredit", ours), ("plain diffusers", plain)):
            stamps: list = []
            fn(args.family, args.steps + 1, args.batch, device, dtype, stamps, args.rank)
            if device.type == "cuda":
                torch.cuda.synchronize()
                per_step[name].append((time.perf_counter() - stamps[1]) / (len(stamps) - 1))
            else:
                per_step[name] += np.diff(stamps)[1:].tolist()  # the step after the first
    a, b = (statistics.median(per_step[k]) for k in ("diffcredit", "plain diffusers"))
    what = {"ddpm": "CIFAR-20 UNet", "ldm": "latent UNet (3x16x16)",
            "sd_lora": f"miniSD UNet + rank-{args.rank} LoRA"}[args.family]
    print(f"{args.family}: {what}, batch {args.batch}, {args.device} {args.precision}, {args.threads} threads, "
          f"median of {len(per_step['diffcredit'])} {'runs' if device.type == 'cuda' else 'steps'} each")
    print(f"s/step: diffcredit {a:.3f}, plain diffusers loop {b:.3f}; "
          f"throughput ratio (diffcredit / plain) {b / a:.3f}")


if __name__ == "__main__":
    main()
