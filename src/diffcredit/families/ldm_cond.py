"""The class-conditional latent diffusion family: the ldm family (a UNet2DModel on the
latents of a frozen autoencoder, every shard encoded once) with ddpm_cond's class
embedding, condition dropout and classifier-free guidance.

The label is the shard's: the contributor's index for image folders (so the model
names the contributor and the proxy strategy can sample a coalition's own mix), the
class for labelled sources. Encoded shards keep it beside the latents. Everything about
the condition (the null label, the counts a model remembers, how image i's label is
drawn, guidance) is ddpm_cond's; everything about latents (encoding, the scale,
decoding) is ldm's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from .base import Model
from .ddpm import load_unet
from .ddpm_cond import LABELS, DDPMCond
from .ldm import LATENT, LDM


class LDMCond(DDPMCond, LDM):
    name = "ldm_cond"
    schema: ClassVar[dict] = {**LDM.schema, "condition_dropout": DDPMCond.schema["condition_dropout"]}

    def resolve(self, model_cfg: dict, data: dict, cache=None) -> dict:
        classes = int(data.get("classes") or 0)
        if classes < 1:
            raise ValueError("model.family ldm_cond needs labelled data: the source gave no labels")
        spec = LDM.resolve(self, model_cfg, data, cache)
        spec["unet"] = {**spec["unet"], "num_class_embeds": classes + 1}
        return {**spec, "classes": classes, "condition_dropout": float(model_cfg["condition_dropout"])}

    def init(self, spec: dict, runtime: dict | None = None) -> Model:
        model = DDPMCond.init(self, spec, runtime)
        model.extras["latent"] = {"latent_scale": spec["latent_scale"], "autoencoder": spec["autoencoder"]}
        model.extras["runtime"] = runtime or {}
        return model

    def save(self, model: Model, folder: Path) -> None:
        DDPMCond.save(self, model, folder)
        (Path(folder) / LATENT).write_text(json.dumps(model.extras["latent"], indent=2, sort_keys=True))

    def load(self, folder: Path, runtime: dict | None = None) -> Model:
        net, scheduler = load_unet(folder)
        saved = json.loads((Path(folder) / LABELS).read_text())
        return Model(net, scheduler, {
            "condition_dropout": saved["condition_dropout"],
            "label_counts": {int(k): int(v) for k, v in saved["label_counts"].items()},
            "latent": json.loads((Path(folder) / LATENT).read_text()), "runtime": runtime or {}})

    def training_data(self, paths) -> dict:
        from ..data import read_shard_arrays

        return read_shard_arrays(paths, keys=("latents", "labels"))

    def batch(self, model: Model, data: dict, idx):
        return data["latents"][idx].float(), data["labels"][idx].long()

    def sample(self, model: Model, n_images: int, spec: dict, device, dtype, progress: bool = True):
        return LDM.sample(self, model, n_images, spec, device, dtype, progress)
