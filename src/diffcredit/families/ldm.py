"""Latent diffusion: a UNet2DModel trained on the latents of a frozen autoencoder.

`model.autoencoder` is a diffusers VQModel or AutoencoderKL (hub id or local
directory, optional subfolder). Every contributor's shard is encoded once by the
`encode` rule: z = latent_scale * E(x), with E the VQ encoder's output before
quantisation or the KL posterior's mode, so encoding is deterministic. Sampling runs
DDIM in latent space and decodes D(z / latent_scale) (the VQ decoder quantises).
`model.latent_scale: auto` takes the autoencoder's `scaling_factor`; the reference
CelebA-HQ model was trained on unscaled latents (latent_scale 1).

The UNet is stored like the pixel family's (pruned widths included) plus
`latent.json`: the scale and the autoencoder's identity it was trained with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from .. import pretrained
from .base import PRETRAINED_REF, Model
from .ddpm import (
    DDPM,
    UNET_SCHEMA,
    load_unet,
    save_unet,
    scheduler_config,
    to_uint8,
    unet_config,
)

AUTOENCODERS = ("VQModel", "AutoencoderKL")
LATENT = "latent.json"


def autoencoder_shape(config: dict) -> tuple[int, int]:
    """(latent channels, spatial down factor) of a VQModel / AutoencoderKL config."""
    if config.get("_class_name") == "VQModel":
        channels = config.get("vq_embed_dim") or config["latent_channels"]
    else:
        channels = config["latent_channels"]
    return int(channels), 2 ** (len(config["block_out_channels"]) - 1)


def load_autoencoder(ref: dict, kind: str):
    import diffusers

    cls = getattr(diffusers, kind)
    try:
        ae = cls.from_pretrained(ref["path"], **pretrained.load_kwargs(ref))
    except OSError as exc:
        raise RuntimeError(f"cannot load the autoencoder {ref['path']}: {exc}") from None
    return ae.eval().requires_grad_(False)


class LDM(DDPM):
    name = "ldm"
    schema: ClassVar[dict] = {
        "autoencoder": {**PRETRAINED_REF, "default": None,
                        "description": "the frozen VQModel or AutoencoderKL, a hub id or local directory (or "
                                       "{path, subfolder, revision})"},
        "latent_scale": {"type": ["number", "string"], "default": "auto",
                         "description": "latents are latent_scale * E(x); auto takes the autoencoder's "
                                        "scaling_factor"},
        **UNET_SCHEMA,
    }

    def resolve(self, model_cfg: dict, data: dict, cache=None) -> dict:
        if not model_cfg.get("autoencoder"):
            raise ValueError("the ldm family needs model.autoencoder: a hub id or local directory of a "
                             "diffusers VQModel or AutoencoderKL")
        ae = pretrained.describe(model_cfg["autoencoder"], "model.autoencoder", cache)
        kind = ae["config"].get("_class_name")
        if kind not in AUTOENCODERS:
            raise ValueError(f"model.autoencoder {ae['ref']['path']} is a {kind}, not one of {AUTOENCODERS}")
        channels, factor = autoencoder_shape(ae["config"])
        if data["channels"] != int(ae["config"].get("in_channels", 3)):
            raise ValueError(f"model.autoencoder takes {ae['config'].get('in_channels', 3)}-channel images; "
                             f"the data has {data['channels']} (data.channels)")
        if data["resolution"] % factor:
            raise ValueError(f"data resolution {data['resolution']} is not divisible by the autoencoder's "
                             f"down-sampling factor {factor}")
        scale = model_cfg.get("latent_scale", "auto")
        if scale in (None, "auto"):
            scale = ae["config"].get("scaling_factor", 1.0)
        unet = unet_config(model_cfg, data["resolution"] // factor, channels)
        sched = {**scheduler_config(model_cfg), "clip_sample": False}
        return {"unet": unet, "scheduler": sched, "seed": int(model_cfg["seed"]),
                "autoencoder": {"class": kind, **ae["identity"]}, "latent_scale": float(scale),
                "image": {"resolution": data["resolution"], "channels": data["channels"]}}

    def runtime(self, model_cfg: dict) -> dict:
        return {"autoencoder": pretrained.located(model_cfg["autoencoder"], "model.autoencoder")}

    # ---------------------------------------------------------- models

    def init(self, spec: dict, runtime: dict | None = None) -> Model:
        model = super().init(spec)
        model.extras["latent"] = {"latent_scale": spec["latent_scale"], "autoencoder": spec["autoencoder"]}
        return model

    def save(self, model: Model, folder: Path) -> None:
        save_unet(model.net, folder, model.scheduler)
        (Path(folder) / LATENT).write_text(json.dumps(model.extras["latent"], indent=2, sort_keys=True))

    def load(self, folder: Path, runtime: dict | None = None) -> Model:
        net, scheduler = load_unet(folder)
        extras = {"latent": json.loads((Path(folder) / LATENT).read_text()), "runtime": runtime or {}}
        return Model(net, scheduler, extras)

    def autoencoder(self, model: Model):
        ae = model.extras.get("autoencoder")
        if ae is None:
            ref = model.extras.get("runtime", {}).get("autoencoder")
            if not ref:
                raise RuntimeError("the ldm family needs the autoencoder's location to sample (job runtime)")
            ae = model.extras["autoencoder"] = load_autoencoder(ref, model.extras["latent"]["autoencoder"]["class"])
        return ae

    # ---------------------------------------------------------- training data

    def encode_spec(self, spec: dict) -> dict:
        return {"autoencoder": spec["autoencoder"], "latent_scale": spec["latent_scale"]}

    def encode_shard(self, encode_spec: dict, arrays: dict, device, batch_size: int, runtime: dict) -> dict:
        import numpy as np
        import torch

        ae = load_autoencoder(runtime["autoencoder"], encode_spec["autoencoder"]["class"]).to(device)
        scale = encode_spec["latent_scale"]
        images = arrays["images"]
        out = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                x = torch.from_numpy(images[start:start + batch_size]).to(device).float().div(127.5).sub(1.0)
                enc = ae.encode(x)
                z = enc.latents if hasattr(enc, "latents") else enc.latent_dist.mode()
                out.append((z * scale).float().cpu().numpy())
        return {"latents": np.concatenate(out).astype(np.float32), "labels": arrays["labels"]}

    def training_data(self, paths) -> dict:
        from ..data import read_shard_arrays

        return read_shard_arrays(paths, keys=("latents",))

    def target_data(self, images, generate, encode_spec, device, batch_size, runtime, model=None) -> dict:
        import numpy as np

        enc = self.encode_shard(encode_spec, {"images": images, "labels": np.full(len(images), -1)}, device,
                                batch_size, runtime)
        return {"latents": enc["latents"]}

    def n_items(self, data: dict) -> int:
        return len(data["latents"])

    def batch(self, model: Model, data: dict, idx):
        return data["latents"][idx].float(), None

    # ---------------------------------------------------------- sampling

    def sample(self, model: Model, n_images: int, spec: dict, device, dtype, progress: bool = True):
        z = self.denoise(model, n_images, spec, device, dtype, progress)
        return self.decode(model, z, device, int(spec["batch_size"]))

    def decode(self, model: Model, z, device, batch_size: int):
        """uint8 images of latents `z` (in the UNet's scaled space)."""
        import torch

        ae = self.autoencoder(model).to(device)
        scale = model.extras["latent"]["latent_scale"]
        with torch.no_grad():
            images = [ae.decode(z[i:i + batch_size].to(device) / scale).sample.float().cpu()
                      for i in range(0, len(z), batch_size)]
        return to_uint8(torch.cat(images))
