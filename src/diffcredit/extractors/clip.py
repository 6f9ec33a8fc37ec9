"""CLIP image embeddings (transformers): the projected `image_embeds` of
`features.clip.model` (a CLIPModel or CLIPVisionModelWithProjection directory or hub
id; the aesthetic head expects OpenAI's ViT-L/14). Inputs are resized to the
model's size and normalised as its preprocessor_config.json says."""

from __future__ import annotations

from .base import ImageEncoder, describe_encoder, encoder_runtime


class CLIP(ImageEncoder):
    name = "clip"

    def resolve(self, cfg: dict, reference: dict, cache=None) -> dict:
        part = describe_encoder(cfg, "features.clip", cache, ("clip", "clip_vision_model"))
        return {"model": part["identity"]}

    def runtime(self, cfg: dict) -> dict:
        return encoder_runtime(cfg, "features.clip")

    def network(self, spec: dict):
        from transformers import CLIPVisionModelWithProjection

        from .. import pretrained

        return CLIPVisionModelWithProjection.from_pretrained(spec["ref"]["path"], **pretrained.load_kwargs(spec["ref"]))

    def embed(self, model, pixels):
        return model(pixel_values=pixels).image_embeds
