"""The class-conditional pixel DDPM family: the ddpm family's UNet2DModel with a
class embedding, trained with the condition dropped at random and sampled with
classifier-free guidance (Ho & Salimans, 2022).

The condition is the shard's label: the digit class for the digits source, the
contributor's index for image folders (so the model names the contributor), the
fine class for CIFAR. With K labels the embedding has K + 1 rows; row K is the
dropped condition, which training uses with probability `condition_dropout` and
which guidance takes as the unconditional model:
eps = eps(x, null) + guidance_scale (eps(x, y) - eps(x, null)). Scale 1 samples the
conditional model alone; SurrogateSHAP's code guides the same way (src/models/
diffusion.py), so its CIFAR-20 w = 1.4 is guidance_scale 1.4.

A model keeps how many items of each label it was trained on (`labels.json`),
and sampling draws image i's label from those counts with its own seed, so a
coalition's model generates its own training mix. The untrained model has seen
no labels and samples the dropped condition.
"""

from __future__ import annotations

import json
from pathlib import Path

from .base import Model
from .ddpm import (
    DDPM,
    UNET_SCHEMA,
    build_unet,
    ddim_sample,
    load_unet,
    prune_unet,
    save_unet,
    scheduler_config,
    to_uint8,
    unet_config,
)

LABELS = "labels.json"


class DDPMCond(DDPM):
    name = "ddpm_cond"
    schema = {
        **UNET_SCHEMA,
        "condition_dropout": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.1,
                              "description": "share of training items whose label is replaced by the null label"},
    }
    conditional = True
    condition_kinds = ("class", "contributor")
    generate_schema = {
        "guidance_scale": {"type": "number", "minimum": 0, "default": 1.0,
                           "description": "classifier-free guidance: 1 samples the conditional model alone"},
    }

    def resolve(self, model_cfg: dict, data: dict, cache=None) -> dict:
        classes = int(data.get("classes") or 0)
        if classes < 1:
            raise ValueError("model.family ddpm_cond needs labelled data: the source gave no labels")
        unet = {**unet_config(model_cfg, data["resolution"], data["channels"]), "num_class_embeds": classes + 1}
        return {"unet": unet, "scheduler": scheduler_config(model_cfg), "seed": int(model_cfg["seed"]),
                "classes": classes, "condition_dropout": float(model_cfg["condition_dropout"])}

    def resolve_generate(self, gen: dict, spec: dict, model_cfg: dict) -> dict:
        return {**gen, "guidance_scale": float(gen["guidance_scale"])}

    def estimate_parameters(self, spec: dict) -> int:
        widths = spec["unet"]["block_out_channels"]
        return super().estimate_parameters(spec) + (spec["classes"] + 1) * 4 * widths[0]

    def init(self, spec: dict, runtime: dict | None = None) -> Model:
        return Model(build_unet(spec["unet"], spec["seed"]), dict(spec["scheduler"]),
                     {"condition_dropout": spec["condition_dropout"], "label_counts": {}})

    def save(self, model: Model, folder: Path) -> None:
        save_unet(model.net, folder, model.scheduler)
        (Path(folder) / LABELS).write_text(json.dumps({
            "condition_dropout": model.extras["condition_dropout"],
            "label_counts": {str(k): int(v) for k, v in sorted(model.extras["label_counts"].items())},
        }, indent=2))

    def load(self, folder: Path, runtime: dict | None = None) -> Model:
        net, scheduler = load_unet(folder)
        saved = json.loads((Path(folder) / LABELS).read_text())
        counts = {int(k): int(v) for k, v in saved["label_counts"].items()}
        return Model(net, scheduler, {"condition_dropout": saved["condition_dropout"], "label_counts": counts})

    def null_label(self, model: Model) -> int:
        return int(model.net.config.num_class_embeds) - 1

    # ---------------------------------------------------------- training

    def training_data(self, paths) -> dict:
        from ..data import read_shard_arrays

        return read_shard_arrays(paths, keys=("images", "labels"))

    def target_data(self, images, generate, encode_spec, device, batch_size, runtime, model=None) -> dict:
        """The images (encoded, for a latent family) and the label each was sampled with:
        drawn again from `model`'s label counts and the generate seed, as `denoise` drew them."""
        data = super().target_data(images, generate, encode_spec, device, batch_size, runtime)
        data["labels"] = self.sample_labels(model, len(images), int(generate["seed"]))
        return data

    def remember_data(self, model: Model, data: dict) -> None:
        self.condition_on(model, data["labels"])

    def condition_on(self, model: Model, labels) -> None:
        import numpy as np

        values, counts = np.unique(np.asarray(labels), return_counts=True)
        model.extras["label_counts"] = {int(k): int(v) for k, v in zip(values, counts)}

    def batch(self, model: Model, data: dict, idx):
        return data["images"][idx].float().div(127.5).sub(1.0), data["labels"][idx].long()

    def drop_condition(self, model: Model, cond, generator):
        import torch

        drop = torch.rand(len(cond), generator=generator) < model.extras["condition_dropout"]
        return torch.where(drop.to(cond.device), torch.full_like(cond, self.null_label(model)), cond)

    def predict(self, model: Model, xt, t, cond=None):
        if cond is None:
            cond = self._labels_like(model, xt, self.null_label(model))
        return model.net(xt, t, class_labels=cond).sample

    @staticmethod
    def _labels_like(model: Model, x, label: int):
        import torch

        return torch.full((len(x),), label, dtype=torch.long, device=x.device)

    def prune(self, model: Model, ratio: float, importance: str) -> None:
        prune_unet(model.net, ratio, importance, class_labels=True)

    # ---------------------------------------------------------- sampling

    def sample_labels(self, model: Model, n_images: int, seed: int):
        """Image i's label, drawn from the model's training counts with its own seed
        (the null label for a model trained on nothing)."""
        import numpy as np

        from ..training import step_seed

        counts = model.extras["label_counts"]
        if not counts:
            return np.full(n_images, self.null_label(model))
        labels = np.array(sorted(counts))
        p = np.array([counts[k] for k in labels], dtype=float)
        p /= p.sum()
        return np.array([labels[np.random.default_rng(step_seed(seed + 2, i)).choice(len(labels), p=p)]
                         for i in range(n_images)])

    def denoise(self, model: Model, n_images: int, spec: dict, device, dtype, progress: bool = True):
        import torch

        net = model.net.to(device).eval()
        cfg = net.config
        shape = (cfg.in_channels, cfg.sample_size, cfg.sample_size)
        labels = torch.from_numpy(self.sample_labels(model, n_images, int(spec["seed"]))).to(device)
        scale, null = float(spec["guidance_scale"]), self.null_label(model)
        guided = scale != 1.0 and bool(model.extras["label_counts"])

        def denoise(x, t, start):
            y = labels[start:start + len(x)]
            if not guided:
                return net(x, t, class_labels=y).sample
            cond, uncond = net(torch.cat([x, x]), t, class_labels=torch.cat([y, torch.full_like(y, null)])).sample.chunk(2)
            return uncond + scale * (cond - uncond)

        with torch.no_grad():
            return ddim_sample(denoise, model.scheduler, shape, n_images, spec, device, dtype, progress)

    def sample(self, model: Model, n_images: int, spec: dict, device, dtype, progress: bool = True):
        return to_uint8(self.denoise(model, n_images, spec, device, dtype, progress))
