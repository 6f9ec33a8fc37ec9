"""CLIP image embeddings (transformers): the projected `image_embeds` of
`features.clip.model` (a CLIPModel or CLIPVisionModelWithProjection directory or hub
id; the aesthetic head expects OpenAI's ViT-L/14). Inputs are resized to the
model's size and normalised as its preprocessor_config.json says."""

from __future__ import annotations

import numpy as np

from .base import Extractor, describe_encoder, encoder_runtime, pixel_inputs, processor_stats


class CLIP(Extractor):
    name = "clip"
    has_reference = False

    def resolve(self, cfg: dict, reference: dict, cache=None) -> dict:
        part = describe_encoder(cfg, "features.clip", cache, ("clip", "clip_vision_model"))
        return {"model": part["identity"]}

    def runtime(self, cfg: dict) -> dict:
        return encoder_runtime(cfg, "features.clip")

    def load(self, spec: dict, network: str | None, device):
        from transformers import CLIPVisionModelWithProjection

        from .. import pretrained

        ref = spec["ref"]
        model = CLIPVisionModelWithProjection.from_pretrained(ref["path"], **pretrained.load_kwargs(ref))
        model = model.eval().requires_grad_(False).to(device)
        folder = pretrained.local_folder(ref)
        return {"model": model, "input": processor_stats(folder, model.config.image_size), "device": device}

    def extract(self, state, images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
        import torch
        from tqdm import tqdm

        size, mean, std = state["input"]
        out = []
        with torch.no_grad():
            for i in tqdm(range(0, len(images), batch_size), desc="clip", mininterval=2.0):
                x = pixel_inputs(images[i:i + batch_size], size, mean, std, state["device"])
                out.append(state["model"](pixel_values=x).image_embeds.float().cpu().numpy())
        return {"embeds": np.concatenate(out)}
