"""The pixel DDPM family: a diffusers UNet2DModel on images.

A pruned UNet has layer widths its diffusers config cannot describe. It is stored
as the dense config (config.json), the pruned weights (safetensors) and
`structure.json`: the module attributes that differ from a dense build. Loading
rebuilds the dense model, applies those attributes, resizes the parameters and
loads the weights; nothing is pickled.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .base import Family, Model, diffusion_loss  # noqa: F401  (diffusion_loss: re-exported)

log = logging.getLogger(__name__)

WEIGHTS = "diffusion_pytorch_model.safetensors"
STRUCTURE = "structure.json"
SCHEDULER = "scheduler_config.json"
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def unet_config(model_spec: dict, resolution: int, channels: int) -> dict:
    """diffusers UNet2DModel kwargs from the config's model section."""
    widths = list(model_spec["block_out_channels"])
    attn = set(model_spec.get("attention_levels", []))
    bad = sorted(a for a in attn if not 0 <= a < len(widths))
    if bad:
        raise ValueError(f"model.attention_levels {bad} outside 0..{len(widths) - 1}")
    down = ["AttnDownBlock2D" if i in attn else "DownBlock2D" for i in range(len(widths))]
    up = ["AttnUpBlock2D" if i in attn else "UpBlock2D" for i in reversed(range(len(widths)))]
    groups = int(model_spec["norm_num_groups"])
    for w in widths:
        if w % groups:
            raise ValueError(f"model.block_out_channels {widths} must be multiples of norm_num_groups {groups}")
    if resolution % (2 ** (len(widths) - 1)):
        raise ValueError(
            f"resolution {resolution} is not divisible by 2^{len(widths) - 1}, "
            f"needed by {len(widths)} UNet levels"
        )
    return dict(
        sample_size=resolution,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(widths),
        layers_per_block=int(model_spec["layers_per_block"]),
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        norm_num_groups=groups,
        attention_head_dim=model_spec.get("attention_head_dim"),
        add_attention=bool(model_spec.get("mid_attention", True)),
        dropout=float(model_spec.get("dropout", 0.0)),
        flip_sin_to_cos=bool(model_spec.get("flip_sin_to_cos", True)),
        freq_shift=int(model_spec.get("freq_shift", 0)),
        downsample_padding=int(model_spec.get("downsample_padding", 1)),
    )


def scheduler_config(model_spec: dict) -> dict:
    prediction = model_spec.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise ValueError(f"model.prediction_type {prediction!r}: use one of {PREDICTION_TYPES}")
    return dict(
        num_train_timesteps=int(model_spec.get("num_train_timesteps", 1000)),
        beta_schedule=model_spec.get("beta_schedule", "linear"),
        beta_start=float(model_spec.get("beta_start", 0.0001)),
        beta_end=float(model_spec.get("beta_end", 0.02)),
        prediction_type=prediction,
        clip_sample=True,
    )


def build_unet(config: dict, seed: int):
    import torch
    from diffusers import UNet2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DModel(**config)


# ---------------------------------------------------------------- structure


def _simple_attrs(module) -> dict:
    """Int-valued attributes that describe a module's widths."""
    out = {}
    for name, value in vars(module).items():
        if name.startswith("_") or isinstance(value, bool):
            continue
        if isinstance(value, int):
            out[name] = value
        elif isinstance(value, tuple) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            out[name] = list(value)
    return out


def structure_diff(model, dense) -> dict:
    """Module attributes and tensor shapes of `model` that differ from `dense`."""
    dense_modules = dict(dense.named_modules())
    attrs = {}
    for name, module in model.named_modules():
        ref = _simple_attrs(dense_modules[name])
        changed = {k: v for k, v in _simple_attrs(module).items() if ref.get(k) != v}
        if changed:
            attrs[name] = changed
    dense_state = dense.state_dict()
    shapes = {k: list(v.shape) for k, v in model.state_dict().items() if v.shape != dense_state[k].shape}
    return {"attributes": attrs, "shapes": shapes}


def apply_structure(model, structure: dict) -> None:
    import torch

    modules = dict(model.named_modules())
    for name, attrs in structure["attributes"].items():
        for k, v in attrs.items():
            setattr(modules[name], k, tuple(v) if isinstance(v, list) else v)
    for full_name, shape in structure["shapes"].items():
        owner_name, _, leaf = full_name.rpartition(".")
        owner = modules[owner_name]
        old = getattr(owner, leaf)
        new = torch.empty(shape, dtype=old.dtype)
        if isinstance(old, torch.nn.Parameter):
            setattr(owner, leaf, torch.nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            owner._buffers[leaf] = new


# ---------------------------------------------------------------- save/load


def save_unet(model, folder: str | Path, scheduler_cfg: dict) -> None:
    """save_pretrained (safetensors), the scheduler, and the structure of a pruned model."""
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    (folder / SCHEDULER).write_text(json.dumps(scheduler_cfg, indent=2, sort_keys=True))
    dense = build_unet(dict(model.config), seed=0)
    structure = structure_diff(model, dense)
    if structure["attributes"] or structure["shapes"]:
        (folder / STRUCTURE).write_text(json.dumps(structure, indent=2, sort_keys=True))


def load_unet(folder: str | Path):
    """(unet, scheduler config) saved by `save_unet`."""
    from diffusers import UNet2DModel
    from safetensors.torch import load_file

    folder = Path(folder)
    scheduler_cfg = json.loads((folder / SCHEDULER).read_text())
    if not (folder / STRUCTURE).is_file():
        return UNet2DModel.from_pretrained(folder), scheduler_cfg
    config = json.loads((folder / "config.json").read_text())
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    model = UNet2DModel.from_config(config)
    apply_structure(model, json.loads((folder / STRUCTURE).read_text()))
    model.load_state_dict(load_file(folder / WEIGHTS), strict=True)
    return model, scheduler_cfg


def n_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- pruning


def prune_unet(model, ratio: float, importance: str = "magnitude", class_labels: bool = False):
    """Structured channel pruning with torch-pruning, then fix diffusers' cached widths."""
    import torch
    import torch_pruning as tp
    from diffusers.models.attention_processor import Attention
    from diffusers.models.downsampling import Downsample2D
    from diffusers.models.upsampling import Upsample2D

    if importance == "magnitude":
        imp = tp.importance.MagnitudeImportance(p=2)
    elif importance == "random":
        imp = tp.importance.RandomImportance()
    else:
        raise ValueError(f"unknown prune.importance {importance!r}: use 'magnitude' or 'random'")
    cfg = model.config
    device = next(model.parameters()).device
    example = {
        "sample": torch.zeros(1, cfg.in_channels, cfg.sample_size, cfg.sample_size, device=device),
        "timestep": torch.tensor([1], device=device),
    }
    if class_labels:  # a class-conditional UNet takes its labels too
        example["class_labels"] = torch.zeros(1, dtype=torch.long, device=device)
    heads = {}
    for m in model.modules():
        if isinstance(m, Attention):
            for layer in (m.to_q, m.to_k, m.to_v):
                heads[layer] = m.heads
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=imp,
        pruning_ratio=ratio,
        ignored_layers=[model.conv_out],
        num_heads=heads,
        out_channel_groups={},
    )
    pruner.step()
    for m in model.modules():
        if isinstance(m, (Upsample2D, Downsample2D)):
            m.channels = m.conv.in_channels
            m.out_channels = m.conv.out_channels
        if isinstance(m, Attention):
            m.inner_dim = m.to_q.out_features
        if isinstance(m, torch.nn.GroupNorm) and m.num_channels % m.num_groups:
            raise ValueError(
                f"pruning ratio {ratio} left {m.num_channels} channels in a GroupNorm of "
                f"{m.num_groups} groups; choose another prune.ratio"
            )
    return model


# ---------------------------------------------------------------- loss and sampling


def image_noise(shape, seed: int, start: int, n: int, device):
    """Initial noise of images start..start+n-1: image i from its own seed (seed, i)."""
    import torch

    from ..training import step_seed

    out = torch.empty((n, *shape))
    for j in range(n):
        g = torch.Generator().manual_seed(step_seed(seed, start + j))
        out[j] = torch.randn(shape, generator=g)
    return out.to(device)


def ddim_sample(denoise, scheduler_cfg: dict, shape, n_images: int, spec: dict, device, dtype, progress=True):
    """Seeded DDIM from `denoise(x, t, start) -> prediction` (x holds images start,
    start + 1, ...); returns float samples in the model's space, on the CPU. eta > 0
    draws each image's step noise from its own seed."""
    import torch
    from diffusers import DDIMScheduler
    from tqdm import tqdm

    from ..devices import autocast

    scheduler = DDIMScheduler(**{**scheduler_cfg, "steps_offset": 1, "set_alpha_to_one": False})
    scheduler.set_timesteps(spec["inference_steps"])
    eta, seed, batch = float(spec.get("eta", 0.0)), int(spec["seed"]), int(spec["batch_size"])
    out = []
    bar = tqdm(total=n_images, desc="generate", disable=not progress, mininterval=2.0)
    for start in range(0, n_images, batch):
        n = min(batch, n_images - start)
        x = image_noise(shape, seed, start, n, device)
        for i, t in enumerate(scheduler.timesteps):
            with autocast(device, dtype):
                pred = denoise(x, t, start)
            extra = {}
            if eta > 0:  # per-image step noise, independent of the batch layout
                extra["variance_noise"] = image_noise(shape, seed + 1 + i, start, n, device)
            x = scheduler.step(pred.float(), t, x, eta=eta, **extra).prev_sample
        out.append(x.float().cpu())
        bar.update(n)
    bar.close()
    return torch.cat(out)


def to_uint8(x):
    import torch

    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


# The `model` keys of a UNet2DModel and its noise schedule (ldm takes them too).
UNET_SCHEMA = {
    "block_out_channels": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1,
                           "default": [32, 64]},
    "layers_per_block": {"type": "integer", "minimum": 1, "default": 1},
    "norm_num_groups": {"type": "integer", "minimum": 1, "default": 8},
    "attention_levels": {"type": "array", "items": {"type": "integer", "minimum": 0}, "default": []},
    "attention_head_dim": {"type": ["integer", "null"], "minimum": 1, "default": None},
    "mid_attention": {"type": "boolean", "default": False},
    "num_train_timesteps": {"type": "integer", "minimum": 2, "default": 1000},
    "beta_schedule": {"enum": ["linear", "scaled_linear", "squaredcos_cap_v2"], "default": "squaredcos_cap_v2"},
    "beta_start": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.0001},
    "beta_end": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.02},
    "prediction_type": {"enum": list(PREDICTION_TYPES), "default": "epsilon",
                        "description": "the training target; sampling follows it"},
    "dropout": {"type": "number", "minimum": 0, "maximum": 1, "default": 0},
    "flip_sin_to_cos": {"type": "boolean", "default": True,
                        "description": "time embedding layout (false, with freq_shift 1, in google/ddpm-cifar10-32)"},
    "freq_shift": {"type": "integer", "minimum": 0, "default": 0},
    "downsample_padding": {"type": "integer", "minimum": 0, "default": 1},
}


class DDPM(Family):
    name = "ddpm"
    schema = UNET_SCHEMA

    def resolve(self, model_cfg: dict, data: dict, cache=None) -> dict:
        unet = unet_config(model_cfg, data["resolution"], data["channels"])
        return {"unet": unet, "scheduler": scheduler_config(model_cfg), "seed": int(model_cfg["seed"])}

    def estimate_parameters(self, spec: dict) -> int:
        u = spec["unet"]
        widths, layers = u["block_out_channels"], u["layers_per_block"]
        # Down resnets ~18 c^2 each, up resnets (skip concat) ~27 c^2, two mid resnets.
        per_level = sum(c * c * (18 * layers + 27 * (layers + 1)) for c in widths)
        return int(per_level + 36 * widths[-1] ** 2)

    def init(self, spec: dict, runtime: dict | None = None) -> Model:
        return Model(build_unet(spec["unet"], spec["seed"]), dict(spec["scheduler"]))

    def save(self, model: Model, folder: Path) -> None:
        save_unet(model.net, folder, model.scheduler)

    def load(self, folder: Path, runtime: dict | None = None) -> Model:
        net, scheduler = load_unet(folder)
        return Model(net, scheduler)

    def predict(self, model: Model, xt, t, cond=None):
        return model.net(xt, t).sample

    def prune(self, model: Model, ratio: float, importance: str) -> None:
        prune_unet(model.net, ratio, importance)

    def check_prune(self, spec: dict, ratio: float) -> None:
        """Every GroupNorm keeps at least one channel per group: past 1 - groups / narrowest
        width, torch-pruning prunes less rather than more (on widths [16, 32] with 8 groups,
        0.9 kept three times the parameters of 0.5, and 0.99 pruned nothing)."""
        widths, groups = spec["unet"]["block_out_channels"], spec["unet"]["norm_num_groups"]
        top = 1.0 - groups / min(widths)
        if ratio > top + 1e-12:
            raise ValueError(f"prune.ratio {ratio} would leave the narrowest level ({min(widths)} channels) fewer "
                             f"than its {groups} norm groups, and the pruner would then prune less, not more; use at "
                             f"most {top:.4g}, or more channels per level")

    def denoise(self, model: Model, n_images: int, spec: dict, device, dtype, progress: bool = True):
        """Seeded DDIM samples in the UNet's space (pixels here, latents for ldm), float on the CPU."""
        import torch

        net = model.net.to(device).eval()
        cfg = net.config
        shape = (cfg.in_channels, cfg.sample_size, cfg.sample_size)
        with torch.no_grad():
            return ddim_sample(lambda x, t, start: self.predict(model, x, t), model.scheduler, shape, n_images, spec, device,
                               dtype, progress)

    def sample(self, model: Model, n_images: int, spec: dict, device, dtype, progress: bool = True):
        return to_uint8(self.denoise(model, n_images, spec, device, dtype, progress))
