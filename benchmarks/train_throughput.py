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
  the LoRA parameters, no EMA);
- sdxl_lora: SDXL's UNet (2.6B parameters; 1024x1024 images, 128x128 latents, 77x2048
  text states, pooled embedding and size ids) with the family's default rank-16 LoRA;
  the plain loop is the step of train_text_to_image_lora_sdxl.py;
- flux_lora: FLUX.1-dev's transformer (11.9B parameters, bf16; 256x256 images as
  SurrogateSHAP trains, 512 T5 tokens, distilled guidance 3.5) with the family's
  default rank-4 LoRA on its attention and feed-forward layers; the plain loop is the
  step of train_dreambooth_lora_flux.py (weighting "none": uniform sigmas, packed
  latents, target noise - x0).
For the two large ones both loops read the same precomputed latents and text states
(no encoder in the loop), train the same model (built once, random weights of the
real architecture; `--frozen` sets the dtype of its frozen weights, the LoRA is
float32), and `--size small` swaps in a few-layer model for a CPU check. On the CPU a
step's time is the time between the starts of consecutive forward passes (set-up and
the first step excluded) and the median over all repeats is reported (single steps
vary by +-15% on a shared CPU). On CUDA,
where work is queued ahead, a run's step time is the time from the start of its
second forward pass (after a synchronisation) to the end of its last step (after
another), over the steps between; the median over repeats is reported. The loops
alternate.

    python benchmarks/train_throughput.py [--family ddpm|ldm|sd_lora|sdxl_lora|flux_lora] [--batch 8]
        [--steps 8] [--device cpu] [--precision fp32] [--rank 256] [--size full|small] [--frozen float32]
    python benchmarks/train_throughput.py --check-loss
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


# SDXL base 1.0's UNet and FLUX.1-dev's transformer (their config.json), and small ones for a CPU check.
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280),
                 layers_per_block=2, cross_attention_dim=2048, attention_head_dim=(5, 10, 20),
                 transformer_layers_per_block=(1, 2, 10), use_linear_projection=True, norm_num_groups=32,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
SDXL_SMALL = {**SDXL_UNET, "sample_size": 16, "block_out_channels": (32, 64, 64), "attention_head_dim": (2, 4, 4),
              "transformer_layers_per_block": (1, 1, 1), "cross_attention_dim": 64,
              "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 32 + 6 * 8}
FLUX_DEV = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                axes_dims_rope=(16, 56, 56))
FLUX_SMALL = {**FLUX_DEV, "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16,
              "num_attention_heads": 2, "joint_attention_dim": 32, "pooled_projection_dim": 16,
              "axes_dims_rope": (4, 6, 6)}
# FLUX.1-dev's scheduler: dynamic shifting, so its training sigmas are k / N unshifted.
FLUX_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                      max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
BIG: dict = {}  # family -> (model, data): the large models are built once per process


def text_model(family: str, size: str, frozen: str, device):
    """The family's model on `device`: random weights of the real architecture, frozen in
    `frozen`, with the family's default LoRA (float32), and its training data."""
    import diffusers

    from diffcredit.families.base import Model
    from diffcredit.families.flux_lora import FLUX_TARGETS
    from diffcredit.families.lora import float_adapter, lora_config

    if family in BIG:
        return BIG[family]
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    if family == "sdxl_lora":
        cfg = SDXL_UNET if size == "full" else SDXL_SMALL
        with torch.device(device):
            net = diffusers.UNet2DConditionModel(**cfg)
        side, text_dim = cfg["sample_size"], cfg["cross_attention_dim"]
        pooled = cfg["projection_class_embeddings_input_dim"] - 6 * cfg["addition_time_embed_dim"]
        lora = {"rank": 16, "alpha": 16, "targets": ["to_q", "to_k", "to_v", "to_out.0"]}
        res = side * 8
        extras = {"added": {"pooled": pooled, "time_ids": [res, res, 0, 0, res, res]}}
        scheduler, channels, rows, width = dict(SD_SCHEDULER), 4, 77, text_dim
    else:
        cfg = FLUX_DEV if size == "full" else FLUX_SMALL
        with torch.device(device):
            net = diffusers.FluxTransformer2DModel(**cfg)
        side = 32 if size == "full" else 8  # 256x256 images: 16x32x32 latents
        lora = {"rank": 4, "alpha": 4, "targets": FLUX_TARGETS}
        text_dim, pooled = cfg["joint_attention_dim"], cfg["pooled_projection_dim"]
        extras = {"flux": {"guidance": 3.5, "text_dim": text_dim, "pooled_dim": pooled, "dtype": frozen}}
        scheduler, channels, rows, width = dict(FLUX_SCHEDULER), cfg["in_channels"] // 4, 512, max(text_dim, pooled)
        if size != "full":
            rows = 16
    net = net.to(getattr(torch, frozen)).requires_grad_(False)
    net.add_adapter(lora_config({"lora": lora}))
    float_adapter(net)
    text = rng.normal(size=(4, rows + 1, width)).astype(np.float32)
    text[:, -1, pooled:] = 0  # the pooled row, zero-padded
    text[:, :-1, text_dim:] = 0
    data = {"latents": rng.normal(size=(64, channels, side, side)).astype(np.float32),
            "text_index": rng.integers(0, 4, 64), "text": text}
    BIG[family] = (Model(net, scheduler, extras), data)
    return BIG[family]


def timed(net, stamps: list, device):
    """Record the start of every forward pass (on CUDA, synchronised at the second only)."""

    def hook(module, args, kwargs=None):
        if device.type == "cuda" and len(stamps) == 1:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    return net.register_forward_pre_hook(hook)


def setup(family: str, rank: int, size: str = "full", frozen: str = "float32", device=None):
    """(the family, a fresh model, training data, plain-loop batch function)."""
    fam = get_family(family)
    if family in ("sdxl_lora", "flux_lora"):
        model, data = text_model(family, size, frozen, device)
        return fam, model, data, lambda d, idx: (d["latents"][idx], d["text"][d["text_index"][idx]])
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


def ours(family, steps, batch, device, dtype, stamps, rank, size, frozen) -> None:
    fam, model, data, _ = setup(family, rank, size, frozen, device)
    hook = timed(model.net, stamps, device)
    ema = 0.9999 if family in ("ddpm", "ldm") else 0.0
    train(fam, model, data, TrainSpec(steps=steps, batch_size=batch, lr=1e-4, ema_decay=ema, grad_clip=1.0,
                                      antithetic=family == "ddpm"), device, dtype, progress=False)
    hook.remove()


def plain(family, steps, batch, device, dtype, stamps, rank, size, frozen) -> None:
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    _, model, data, batch_of = setup(family, rank, size, frozen, device)
    net = model.net.to(device).train()
    hook = timed(net, stamps, device)
    if family in ("sdxl_lora", "flux_lora"):
        (plain_sdxl if family == "sdxl_lora" else plain_flux)(model, data, steps, batch, device, dtype)
        hook.remove()
        return
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
    hook.remove()


def plain_sdxl(model, data, steps, batch, device, dtype) -> None:
    """The training step of diffusers' train_text_to_image_lora_sdxl.py on cached latents
    and prompt embeddings."""
    from diffusers import DDPMScheduler

    net, added = model.net, model.extras["added"]
    sched = DDPMScheduler(**model.scheduler)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    latents = torch.from_numpy(data["latents"]).to(device)
    embeds = torch.from_numpy(data["text"][:, :-1]).to(device)
    pooled = torch.from_numpy(data["text"][:, -1, : added["pooled"]]).to(device)
    index = torch.from_numpy(data["text_index"]).to(device)
    for _ in range(steps):
        idx = torch.randint(0, len(latents), (batch,), device=device)
        x0, cap = latents[idx], index[idx]
        noise = torch.randn_like(x0)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), device=device)
        time_ids = torch.tensor([added["time_ids"]]).to(device).repeat(batch, 1)
        with autocast(device, dtype):
            pred = net(sched.add_noise(x0, noise, t), t, encoder_hidden_states=embeds[cap],
                       added_cond_kwargs={"text_embeds": pooled[cap], "time_ids": time_ids}).sample
            loss = F.mse_loss(pred.float(), noise.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()


def plain_flux(model, data, steps, batch, device, dtype) -> None:
    """The training step of diffusers' train_dreambooth_lora_flux.py (weighting "none") on
    cached latents and prompt embeddings."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from diffusers.training_utils import compute_density_for_timestep_sampling

    net, flux = model.net, model.extras["flux"]
    sched = FlowMatchEulerDiscreteScheduler(**model.scheduler)
    sigmas_all, steps_all = sched.sigmas.to(device), sched.timesteps.to(device)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    weight = net.dtype
    latents = torch.from_numpy(data["latents"]).to(device)
    embeds = torch.from_numpy(data["text"][:, :-1, : flux["text_dim"]]).to(device, weight)
    pooled = torch.from_numpy(data["text"][:, -1, : flux["pooled_dim"]]).to(device, weight)
    index = torch.from_numpy(data["text_index"]).to(device)
    text_ids = torch.zeros(embeds.shape[1], 3, device=device, dtype=weight)
    for _ in range(steps):
        idx = torch.randint(0, len(latents), (batch,), device=device)
        x0, cap = latents[idx], index[idx]
        b, c, h, w = x0.shape
        image_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, device, weight)
        noise = torch.randn_like(x0)
        u = compute_density_for_timestep_sampling("none", batch_size=b)
        k = (u * sched.config.num_train_timesteps).long().to(device)
        sigma = sigmas_all[k].view(-1, 1, 1, 1)
        noisy = FluxPipeline._pack_latents((1 - sigma) * x0 + sigma * noise, b, c, h, w)
        guidance = torch.full([1], flux["guidance"], device=device).expand(b)
        with autocast(device, dtype):
            pred = net(hidden_states=noisy.to(weight), timestep=steps_all[k] / 1000, guidance=guidance,
                       pooled_projections=pooled[cap], encoder_hidden_states=embeds[cap], txt_ids=text_ids,
                       img_ids=image_ids, return_dict=False)[0]
            pred = FluxPipeline._unpack_latents(pred, h * 8, w * 8, 8)
            loss = F.mse_loss(pred.float(), (noise - x0).float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()


def check_flux_loss() -> None:
    """The plain FLUX step's loss (diffusers' sigmas, packing, timestep input) against the
    family's on the same items, on a small model with a non-zero adapter."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    fam = get_family("flux_lora")
    model, data = text_model("flux_lora", "small", "float32", torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in fam.trainable(model).values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    x0 = torch.from_numpy(data["latents"][:3])
    cond = torch.from_numpy(data["text"][data["text_index"][:3]])
    noise, k = torch.randn(x0.shape, generator=g), torch.tensor([10, 400, 990])
    sched = FlowMatchEulerDiscreteScheduler(**model.scheduler)
    sigma = sched.sigmas[k].view(-1, 1, 1, 1)
    b, c, h, w = x0.shape
    flux = model.extras["flux"]
    with torch.no_grad():
        pred = model.net(hidden_states=FluxPipeline._pack_latents((1 - sigma) * x0 + sigma * noise, b, c, h, w),
                         timestep=sched.timesteps[k] / 1000, guidance=torch.full([b], flux["guidance"]),
                         pooled_projections=cond[:, -1, : flux["pooled_dim"]],
                         encoder_hidden_states=cond[:, :-1, : flux["text_dim"]],
                         txt_ids=torch.zeros(cond.shape[1] - 1, 3),
                         img_ids=FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, "cpu", torch.float32)).sample
        plain_loss = (FluxPipeline._unpack_latents(pred, h * 8, w * 8, 8) - (noise - x0)).pow(2).flatten(1).mean(1)
        ours = fam.loss(model, x0, noise, sched.config.num_train_timesteps - 1 - k, cond)
    print(f"flux loss, plain step {plain_loss.tolist()}, family {ours.tolist()}; "
          f"max relative difference {((plain_loss - ours).abs() / plain_loss).max():.1e}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", default="ddpm", choices=["ddpm", "ldm", "sd_lora", "sdxl_lora", "flux_lora"])
    ap.add_argument("--rank", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", default="full", choices=["full", "small"])
    ap.add_argument("--frozen", default=None, choices=["float32", "bfloat16"],
                    help="dtype of the frozen weights (default: flux_lora bfloat16, others float32)")
    ap.add_argument("--check-loss", action="store_true", help="check the plain FLUX step's loss against the family's")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.check_loss:
        return check_flux_loss()
    device, dtype = torch.device(args.device), dtype_of(args.precision)
    frozen = args.frozen or ("bfloat16" if args.family == "flux_lora" else "float32")
    per_step = {"diffcredit": [], "plain diffusers": []}
    for _ in range(args.repeats):
        for name, fn in (("diffcredit", ours), ("plain diffusers", plain)):
            stamps: list = []
            fn(args.family, args.steps + 1, args.batch, device, dtype, stamps, args.rank, args.size, frozen)
            if device.type == "cuda":
                torch.cuda.synchronize()
                per_step[name].append((time.perf_counter() - stamps[1]) / (len(stamps) - 1))
            else:
                per_step[name] += np.diff(stamps)[1:].tolist()  # the step after the first
    a, b = (statistics.median(per_step[k]) for k in ("diffcredit", "plain diffusers"))
    what = {"ddpm": "CIFAR-20 UNet", "ldm": "latent UNet (3x16x16)",
            "sd_lora": f"miniSD UNet + rank-{args.rank} LoRA",
            "sdxl_lora": f"SDXL UNet{' (small)' if args.size == 'small' else ''} + rank-16 LoRA, {frozen} frozen",
            "flux_lora": f"FLUX.1-dev transformer{' (small)' if args.size == 'small' else ''} + rank-4 LoRA, "
                         f"{frozen} frozen"}[args.family]
    print(f"{args.family}: {what}, batch {args.batch}, {args.device} {args.precision}, {args.threads} threads, "
          f"median of {len(per_step['diffcredit'])} {'runs' if device.type == 'cuda' else 'steps'} each")
    print(f"s/step: diffcredit {a:.3f}, plain diffusers loop {b:.3f}; "
          f"throughput ratio (diffcredit / plain) {b / a:.3f}")


if __name__ == "__main__":
    main()
