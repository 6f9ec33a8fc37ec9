"""BLIP image embeddings: the pooled output of the vision model of
`features.blip.model` (a BlipForQuestionAnswering checkpoint, as in the reference
CelebA-HQ diversity score, or any BLIP checkpoint with a vision model). The vision
model is taken from the whole checkpoint: loading BlipVisionModel from it silently
gives random weights."""

from __future__ import annotations

from .base import ImageEncoder, describe_encoder, encoder_runtime


class BLIP(ImageEncoder):
    name = "blip"

    def resolve(self, cfg: dict, reference: dict, cache=None) -> dict:
        part = describe_encoder(cfg, "features.blip", cache, ("blip",))
        return {"model": part["identity"], "class": (part["config"].get("architectures") or ["BlipModel"])[0]}

    def runtime(self, cfg: dict) -> dict:
        return encoder_runtime(cfg, "features.blip")

    def network(self, spec: dict):
        import transformers

        from .. import pretrained

        cls = getattr(transformers, spec["class"], None)
        if cls is None or not spec["class"].startswith("Blip"):
            cls = transformers.BlipForQuestionAnswering
        return cls.from_pretrained(spec["ref"]["path"], **pretrained.load_kwargs(spec["ref"])).vision_model

    def embed(self, model, pixels):
        return model(pixel_values=pixels).pooler_output
