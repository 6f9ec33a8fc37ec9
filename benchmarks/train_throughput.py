"""Training throughput of diffcredit's loop against a plain diffusers loop.

The same model (configs/cifar20.yaml's UNet, 35.7M parameters), batch, optimizer,
EMA and gradient clipping; the plain loop is the shape of diffusers'
train_unconditional.py (random batches, DDPMScheduler.add_noise, MSE on the noise,
AdamW, EMAModel). On the CPU a step's time is the time between the starts of
consecutive forward passes (set-up and the first step excluded) and the median over
all repeats is reported (single steps vary by +-15% on a shared CPU). On CUDA,
where work is queued ahead, a run's step time is the time from the start of its
second forward pass (after a synchronisation) to the end of its last step (after
another), over the steps between; the median over repeats is reported. The loops
alternate.

    python benchmarks/train_throughput.py [--batch 8] [--steps 8] [--device cpu] [--precision fp32]
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


def timed(net, stamps: list, device):
    """Record the start of every forward pass (on CUDA, synchronised at the second only)."""

    def hook(module, args):
        if device.type == "cuda" and len(stamps) == 1:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    net.register_forward_pre_hook(hook)


def ours(spec, images, steps, batch, device, dtype, stamps) -> None:
    family = get_family("ddpm")
    model = family.init(spec)
    timed(model.net, stamps, device)
    train(family, model, images, TrainSpec(steps=steps, batch_size=batch, lr=1e-4, ema_decay=0.9999,
                                           grad_clip=1.0, antithetic=True), device, dtype, progress=False)


def plain(spec, images, steps, batch, device, dtype, stamps) -> None:
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    family = get_family("ddpm")
    net = family.init(spec).net.to(device).train()
    timed(net, stamps, device)
    sched = DDPMScheduler(**spec["scheduler"])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.0)
    ema = EMAModel(net.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)
    data = torch.from_numpy(images).to(device)
    for _ in range(steps):
        idx = torch.randint(0, len(data), (batch,), device=device)
        x0 = data[idx].float() / 127.5 - 1
        noise = torch.randn_like(x0)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), device=device)
        with autocast(device, dtype):
            loss = F.mse_loss(net(sched.add_noise(x0, noise, t), t).sample.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        ema.step(net.parameters())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), dtype_of(args.precision)
    spec = cifar_spec()
    images = np.random.default_rng(0).integers(0, 256, (1024, 3, 32, 32), dtype=np.uint8)
    per_step = {"diffcredit": [], "plain diffusers": []}
    for _ in range(args.repeats):
        for name, fn in (("diffcredit", ours), ("plain diffusers", plain)):
            stamps: list = []
            fn(spec, images, args.steps + 1, args.batch, device, dtype, stamps)
            if device.type == "cuda":
                torch.cuda.synchronize()
                per_step[name].append((time.perf_counter() - stamps[1]) / (len(stamps) - 1))
            else:
                per_step[name] += np.diff(stamps)[1:].tolist()  # the step after the first
    a, b = (statistics.median(per_step[k]) for k in ("diffcredit", "plain diffusers"))
    print(f"CIFAR-20 UNet, batch {args.batch}, {args.device} {args.precision}, {args.threads} threads, "
          f"median of {len(per_step['diffcredit'])} {'runs' if device.type == 'cuda' else 'steps'} each")
    print(f"s/step: diffcredit {a:.3f}, plain diffusers loop {b:.3f}; "
          f"throughput ratio (diffcredit / plain) {b / a:.3f}")


if __name__ == "__main__":
    main()
