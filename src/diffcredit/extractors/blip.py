"""BLIP image embeddings: the pooled output of the vision model of
`features.blip.model` (a BlipForQuestionAnswering checkpoint, as in the reference
CelebA-HQ diversity score, or any BLIP checkpoint with a vision model). The vision
model is taken from the whole checkpoint: loading BlipVisionModel from it silently
gives random weights."""

from __future__ import annotations

import numpy as np

from .base import Extractor, describe_encoder, encoder_runtime, pixel_inputs, processor_stats


class BLIP(Extractor):
    name = "blip"
    has_reference = False

    def resolve(self, cfg: dict, reference: dict, cache=None) -> dict:
        part = describe_encoder(cfg, "features.blip", cache, ("blip",))
        return {"model": part["identity"], "class": (part["config"].get("architectures") or ["BlipModel"])[0]}

    def runtime(self, cfg: dict) -> dict:
        return encoder_runtime(cfg, "features.blip")

    def load(self, spec: dict, network: str | None, device):
        import transformers

        from .. import pretrained

        ref = spec["ref"]
        cls = getattr(transformers, spec["class"], None)
        if cls is None or not spec["class"].startswith("Blip"):
            cls = transformers.BlipForQuestionAnswering
        model = cls.from_pretrained(ref["path"], **pretrained.load_kwargs(ref)).vision_model
        model = model.eval().requires_grad_(False).to(device)
        folder = pretrained.local_folder(ref)
        return {"model": model, "input": processor_stats(folder, model.config.image_size), "device": device}

    def extract(self, state, images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
        import torch
        from tqdm import tqdm

        size, mean, std = state["input"]
        out = []
        with torch.no_grad():
            for i in tqdm(range(0, len(images), batch_size), desc="blip", mininterval=2.0):
                x = pixel_inputs(images[i:i + batch_size], size, mean, std, state["device"])
                out.append(state["model"](pixel_values=x).pooler_output.float().cpu().numpy())
        return {"embeds": np.concatenate(out)}
