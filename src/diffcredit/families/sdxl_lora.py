"""Stable Diffusion XL fine-tuned with LoRA: the sd_lora family on an SDXL pipeline.

`model.pretrained` is a diffusers StableDiffusionXLPipeline (hub id or local directory,
e.g. stabilityai/stable-diffusion-xl-base-1.0). What differs from sd_lora:

- Text: two frozen CLIP encoders. A caption's conditioning is the penultimate hidden
  states of both, joined along the feature axis (what the UNet cross-attends to), and
  the second encoder's projected pooled embedding, as diffusers' SDXL pipeline builds
  them. Encoded once per distinct caption; the pooled embedding is stored as one more
  token row (zero-padded), so a caption is one array like sd_lora's and the gradient
  attribution methods see one conditioning tensor.
- Size conditioning: SDXL's UNet also takes (original size, crop corner, target size).
  Images are centre-cropped and resized to `data.resolution` when read, so every
  training image is conditioned on (resolution, resolution), (0, 0), (resolution,
  resolution), which is what the pipeline passes when sampling at that size. The
  original size and crop of each file are not kept (a photo smaller than the
  resolution is conditioned as if it were as large).
- Defaults: LoRA rank 16 on the UNet's attention projections (diffusers' SDXL LoRA
  script uses 4; the paper's SD recipe 256 is meant for a UNet a tenth the size),
  guidance scale 5.0 (the SDXL pipeline's).

Rank pruning, adapter-only artifacts, encoded training data and seeded sampling are
sd_lora's.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import pretrained
from .base import Model
from .sd_lora import SDLoRA, load_component

CONDITIONING = "conditioning.json"


class SDXLLoRA(SDLoRA):
    name = "sdxl_lora"
    pipeline = "StableDiffusionXLPipeline"
    components = ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
    default_rank = 16
    default_guidance = 5.0

    def conditioning(self, unet_cfg: dict, resolution: int) -> dict:
        if unet_cfg.get("addition_embed_type") != "text_time":
            raise ValueError(f"model.pretrained: the UNet's addition_embed_type is "
                             f"{unet_cfg.get('addition_embed_type')!r}, not 'text_time': not an SDXL UNet")
        pooled = int(unet_cfg["projection_class_embeddings_input_dim"]) - 6 * int(unet_cfg["addition_time_embed_dim"])
        if pooled <= 0:
            raise ValueError("model.pretrained: the UNet's projection_class_embeddings_input_dim leaves no room for "
                             "the pooled text embedding")
        return {"added": {"pooled": pooled, "time_ids": [resolution, resolution, 0, 0, resolution, resolution]}}

    # ---------------------------------------------------------- models

    def init(self, spec: dict, runtime: dict | None = None) -> Model:
        model = super().init(spec, runtime)
        model.extras["added"] = dict(spec["added"])
        return model

    def save(self, model: Model, folder: Path) -> None:
        super().save(model, folder)
        (Path(folder) / CONDITIONING).write_text(json.dumps(model.extras["added"], indent=2, sort_keys=True))

    def load(self, folder: Path, runtime: dict | None = None) -> Model:
        model = super().load(folder, runtime)
        model.extras["added"] = json.loads((Path(folder) / CONDITIONING).read_text())
        return model

    def predict(self, model: Model, xt, t, cond=None):
        """`cond` is (B, L + 1, D): L token rows, then the pooled embedding padded to D."""
        import torch

        added, dtype = model.extras["added"], model.net.dtype  # inputs in the frozen weights' dtype
        hidden, pooled = cond[:, :-1].to(dtype), cond[:, -1, : added["pooled"]].to(dtype)
        time_ids = torch.tensor(added["time_ids"], dtype=dtype, device=hidden.device).expand(len(cond), 6)
        if t.dim() == 0:
            t = t.expand(len(xt))
        return model.net(xt.to(dtype), t, encoder_hidden_states=hidden,
                         added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample.to(xt.dtype)

    # ---------------------------------------------------------- training data

    def encode_text(self, ref: dict, prompts: list[str], device, batch_size: int = 64,
                    encode_spec: dict | None = None):
        """(n, L + 1, D1 + D2) float32: both encoders' penultimate hidden states, joined,
        and the pooled embedding of the second as the last row (L: the tokenizers' length)."""
        import numpy as np
        import torch

        dtype = (encode_spec or {}).get("dtype")
        tokenizers = [load_component(ref, "tokenizer"), load_component(ref, "tokenizer_2")]
        encoders = [load_component(ref, "text_encoder", dtype).to(device),
                    load_component(ref, "text_encoder_2", dtype).to(device)]
        lengths = {tok.model_max_length for tok in tokenizers}
        if len(lengths) != 1:
            raise ValueError(f"model.pretrained: the two tokenizers pad to different lengths {sorted(lengths)}")
        out = []
        with torch.no_grad():
            for start in range(0, len(prompts), batch_size):
                chunk = prompts[start:start + batch_size]
                hidden, pooled = [], None
                for tok, enc in zip(tokenizers, encoders):
                    ids = tok(chunk, padding="max_length", max_length=tok.model_max_length, truncation=True,
                              return_tensors="pt").input_ids.to(device)
                    result = enc(ids, output_hidden_states=True)
                    hidden.append(result.hidden_states[-2])
                    pooled = result[0]  # the last encoder's: its projected pooled output
                hidden = torch.cat(hidden, dim=-1)
                row = torch.zeros(len(chunk), 1, hidden.shape[-1], dtype=hidden.dtype, device=hidden.device)
                row[:, 0, : pooled.shape[-1]] = pooled
                out.append(torch.cat([hidden, row], dim=1).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    # ---------------------------------------------------------- sampling

    def pipeline_with(self, model: Model):
        from diffusers import StableDiffusionXLPipeline

        ref = model.extras["runtime"]["pretrained"]
        return StableDiffusionXLPipeline.from_pretrained(ref["path"], unet=model.net,
                                                         **pretrained.dtype_kwargs(self.base_dtype(model)),
                                                         **pretrained.load_kwargs(ref))
