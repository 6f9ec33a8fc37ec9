"""FLUX fine-tuned with LoRA: the sd_lora family on a FluxPipeline's transformer.

`model.pretrained` is a diffusers FluxPipeline (hub id or local directory, e.g.
black-forest-labs/FLUX.1-dev). What differs from sd_lora:

- The adapter goes on the FluxTransformer2DModel; default targets are the attention
  projections and feed-forward layers of its blocks (to_q/k/v, to_out.0, the text
  stream's add_q/k/v_proj and to_add_out, ff and ff_context), rank 4, as SurrogateSHAP's
  and diffusers' FLUX LoRA scripts train it.
- Flow matching: an item at noise level s in (0, 1] is x_s = (1 - s) x0 + s noise and the
  transformer predicts noise - x0. s is drawn uniformly from the scheduler's training
  sigmas, the "none" weighting of those scripts: {1/N, ..., 1} (N its
  num_train_timesteps), shifted by its `shift` where that is static (FLUX.1-dev's shift
  is dynamic, applied only in sampling, so its training levels are unshifted). Latents are the VAE
  posterior's mode, shifted by the VAE's shift_factor and scaled by its scaling_factor,
  packed into 2x2 patches with the pipeline's own helpers.
- Guidance: FLUX.1-dev is guidance-distilled; its transformer takes the guidance scale
  as an input. Training feeds `model.guidance` (3.5, the scripts' default) and sampling
  `generate.guidance_scale` (3.5); a transformer without a guidance embedding (schnell)
  takes neither. There is no negative prompt and no DDIM: sampling is the pipeline's own
  flow-matching Euler scheduler with its resolution-dependent shift.
- Text: the T5 encoder's hidden states (`model.max_sequence_length` tokens, 512) and the
  CLIP encoder's pooled output, encoded once per distinct caption by the pipeline's own
  `encode_prompt`; the pooled embedding is one more row (zero-padded), as in sdxl_lora.
- Weights: the frozen transformer and text encoders load in `model.dtype` (bfloat16, as
  the FLUX scripts train; a 12B transformer in float32 takes 48 GB), the VAE in float32;
  the adapter is float32 and the transformer's inputs are cast to its weights' dtype.
- The gradient attribution methods featurize the flow-matching loss (the family's
  `noising` and `target`) of the adapter's parameters.

Rank pruning, adapter-only artifacts and seeded sampling are sd_lora's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from .. import pretrained
from .base import Model
from .ddpm import image_noise
from .sd_lora import SDLoRA

CONDITIONING = "conditioning.json"
# What SurrogateSHAP's FLUX LoRA trains (its text_to_image_flux/train_lora_flux.py).
FLUX_TARGETS = ["attn.to_k", "attn.to_q", "attn.to_v", "attn.to_out.0", "attn.add_k_proj", "attn.add_q_proj",
                "attn.add_v_proj", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj",
                "ff_context.net.2"]
MAX_SEQUENCE_LENGTH = 512  # the pipeline's maximum


class FluxLoRA(SDLoRA):
    name = "flux_lora"
    pipeline = "FluxPipeline"
    components = ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
    denoiser = "transformer"
    default_targets: ClassVar[list] = FLUX_TARGETS
    latent_multiple = 2  # 2x2 patches
    default_rank = 4
    default_guidance = 3.5
    schema: ClassVar[dict] = {
        **SDLoRA.schema,
        "pretrained": {**SDLoRA.schema["pretrained"], "description": "the base FluxPipeline, a hub id or local "
                       "directory"},
        "guidance": {"type": ["number", "null"], "minimum": 0, "default": None,
                     "description": "the distilled guidance scale fed to the transformer in training (default 3.5; "
                                    "only for a transformer with a guidance embedding, as FLUX.1-dev's)"},
        "max_sequence_length": {"type": "integer", "minimum": 1, "maximum": MAX_SEQUENCE_LENGTH,
                                "default": MAX_SEQUENCE_LENGTH,
                                "description": "T5 tokens per caption, in training and sampling"},
        "dtype": {"enum": ["bfloat16", "float16", "float32"], "default": "bfloat16",
                  "description": "the dtype of the frozen pretrained weights (transformer, text encoders); the "
                                 "adapter trains in float32"},
    }
    generate_schema: ClassVar[dict] = {
        "prompts": SDLoRA.generate_schema["prompts"],
        "guidance_scale": {"type": "number", "minimum": 0,
                           "description": "the distilled guidance scale of sampling (default 3.5)"},
    }

    # ---------------------------------------------------------- parse time

    def conditioning(self, unet_cfg: dict, resolution: int) -> dict:
        if "joint_attention_dim" not in unet_cfg or "pooled_projection_dim" not in unet_cfg:
            raise ValueError("model.pretrained: the transformer has no joint_attention_dim or pooled_projection_dim: "
                             "not a FluxTransformer2DModel")
        return {"flux": {"guidance": self.default_guidance if unet_cfg.get("guidance_embeds") else None,
                         "text_dim": int(unet_cfg["joint_attention_dim"]),
                         "pooled_dim": int(unet_cfg["pooled_projection_dim"])}}

    def resolve(self, model_cfg: dict, data: dict, cache=None) -> dict:
        spec = super().resolve(model_cfg, data, cache)
        given = model_cfg.get("guidance")
        if given is not None:
            if spec["flux"]["guidance"] is None:
                raise ValueError("model.guidance: the transformer has no guidance embedding (a FLUX.1-schnell-like "
                                 "model); leave it unset")
            spec["flux"]["guidance"] = float(given)
        spec["text"] = {**spec["text"], "max_length": int(model_cfg.get("max_sequence_length") or MAX_SEQUENCE_LENGTH)}
        spec["dtype"] = model_cfg.get("dtype") or "bfloat16"
        return spec

    def resolve_generate(self, gen: dict, spec: dict, model_cfg: dict) -> dict:
        prompts = gen.get("prompts") or ([model_cfg["prompt"]] if model_cfg.get("prompt") else None)
        if not prompts:
            raise ValueError(f"{self.name} trained on per-image captions needs generate.prompts to sample from")
        if spec["flux"]["guidance"] is None and gen.get("guidance_scale") is not None:
            raise ValueError("generate.guidance_scale: the transformer has no guidance embedding; leave it unset")
        guided = spec["flux"]["guidance"] is not None
        return {**gen, "prompts": list(prompts), "resolution": spec["resolution"],
                "guidance_scale": gen.get("guidance_scale", self.default_guidance) if guided else None,
                "max_sequence_length": spec["text"]["max_length"]}

    # ---------------------------------------------------------- models

    def init(self, spec: dict, runtime: dict | None = None) -> Model:
        model = super().init(spec, runtime)
        model.extras["flux"] = dict(spec["flux"])
        return model

    def save(self, model: Model, folder: Path) -> None:
        super().save(model, folder)
        (Path(folder) / CONDITIONING).write_text(json.dumps(model.extras["flux"], indent=2, sort_keys=True))

    def load(self, folder: Path, runtime: dict | None = None) -> Model:
        model = super().load(folder, runtime)
        model.extras["flux"] = json.loads((Path(folder) / CONDITIONING).read_text())
        return model

    def predict(self, model: Model, xt, t, cond=None):
        """Velocity (noise - x0) of latents `xt` (B, C, h, w) at timestep indices `t` (noise
        level (t + 1) / N); `cond` is (B, L + 1, D): L T5 rows, then the pooled CLIP embedding."""
        import torch
        from diffusers import FluxPipeline

        flux, dtype = model.extras["flux"], model.net.dtype  # inputs in the frozen weights' dtype
        b, c, h, w = xt.shape
        packed = FluxPipeline._pack_latents(xt, b, c, h, w).to(dtype)
        img_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, xt.device, dtype)
        hidden, pooled = cond[:, :-1, : flux["text_dim"]].to(dtype), cond[:, -1, : flux["pooled_dim"]].to(dtype)
        txt_ids = torch.zeros(hidden.shape[1], 3, device=xt.device, dtype=dtype)
        if t.dim() == 0:
            t = t.expand(b)
        guidance = None if flux["guidance"] is None else torch.full((b,), flux["guidance"], device=xt.device,
                                                                     dtype=dtype)
        timestep = self._level(model, t) * self.num_timesteps(model) / 1000  # as the pipeline passes it
        out = model.net(hidden_states=packed, timestep=timestep.to(dtype),
                        guidance=guidance, pooled_projections=pooled, encoder_hidden_states=hidden,
                        txt_ids=txt_ids, img_ids=img_ids).sample
        return FluxPipeline._unpack_latents(out, h, w, 1).to(xt.dtype)

    def _level(self, model: Model, t):
        """Noise level s in (0, 1] of timestep index t in [0, N): the scheduler's training
        sigma, (t + 1) / N shifted as its static shift shifts it."""
        s = (t.float() + 1) / self.num_timesteps(model)
        shift = float(model.scheduler.get("shift", 1.0))
        if not model.scheduler.get("use_dynamic_shifting", False) and shift != 1.0:
            s = shift * s / (1 + (shift - 1) * s)
        return s

    def noising(self, model: Model, t):
        s = self._level(model, t)
        return 1 - s, s

    def target(self, model: Model, x0, noise, t):
        return noise - x0

    def loss(self, model: Model, x0, noise, t, cond=None):
        """Per-sample flow-matching loss."""
        a, b = self.noising(model, t)
        shape = (-1,) + (1,) * (x0.dim() - 1)
        pred = self.predict(model, a.view(shape).to(x0.dtype) * x0 + b.view(shape).to(x0.dtype) * noise, t, cond)
        return (pred.float() - self.target(model, x0, noise, t).float()).pow(2).flatten(1).mean(1)

    # ---------------------------------------------------------- training data

    def encode_text(self, ref: dict, prompts: list[str], device, batch_size: int = 64,
                    encode_spec: dict | None = None):
        """(n, L + 1, D) float32: the T5 hidden states (`encode_spec`'s max_length tokens,
        its dtype's encoders), then the pooled CLIP embedding as the last row (each
        zero-padded to D, the larger of the two)."""
        import numpy as np
        import torch
        from diffusers import FluxPipeline

        encode_spec = encode_spec or {}
        max_length = (encode_spec.get("text") or {}).get("max_length") or MAX_SEQUENCE_LENGTH
        try:
            pipe = FluxPipeline.from_pretrained(ref["path"], transformer=None, vae=None,
                                                **pretrained.dtype_kwargs(encode_spec.get("dtype")),
                                                **pretrained.load_kwargs(ref))
        except OSError as exc:
            raise RuntimeError(f"cannot load the text encoders of {ref['path']}: {exc}") from None
        pipe.text_encoder.to(device).requires_grad_(False)
        pipe.text_encoder_2.to(device).requires_grad_(False)
        out = []
        with torch.no_grad():
            for start in range(0, len(prompts), batch_size):
                hidden, pooled, _ = pipe.encode_prompt(prompts[start:start + batch_size], prompt_2=None,
                                                       device=device, max_sequence_length=max_length)
                d = max(hidden.shape[-1], pooled.shape[-1])
                rows = torch.zeros(len(hidden), hidden.shape[1] + 1, d, dtype=torch.float32)
                rows[:, :-1, : hidden.shape[-1]] = hidden.float().cpu()
                rows[:, -1, : pooled.shape[-1]] = pooled.float().cpu()
                out.append(rows.numpy())
        return np.concatenate(out).astype(np.float32)

    # ---------------------------------------------------------- sampling

    def pipeline_with(self, model: Model):
        from diffusers import FluxPipeline

        ref = model.extras["runtime"]["pretrained"]
        return FluxPipeline.from_pretrained(ref["path"], transformer=model.net,
                                            **pretrained.dtype_kwargs(self.base_dtype(model)),
                                            **pretrained.load_kwargs(ref))

    def sample(self, model: Model, n_images: int, spec: dict, device, dtype, progress: bool = True):
        import numpy as np
        import torch
        from diffusers import FluxPipeline
        from tqdm import tqdm

        from ..devices import autocast

        pipe = self.pipeline_with(model).to(device)
        pipe.set_progress_bar_config(disable=True)
        res = int(spec["resolution"])
        shape = (pipe.transformer.config.in_channels // 4, res // pipe.vae_scale_factor, res // pipe.vae_scale_factor)
        seed, batch = int(spec["seed"]), int(spec["batch_size"])
        out = []
        bar = tqdm(total=n_images, desc="generate", disable=not progress, mininterval=2.0)
        for start in range(0, n_images, batch):
            n = min(batch, n_images - start)
            latents = FluxPipeline._pack_latents(image_noise(shape, seed, start, n, device), n, *shape)
            with torch.no_grad(), autocast(device, dtype):
                images = pipe(self.prompts_of(model, spec, start, n), height=res, width=res,
                              num_inference_steps=int(spec["inference_steps"]),
                              guidance_scale=float(spec["guidance_scale"] or 0.0),
                              max_sequence_length=int(spec["max_sequence_length"]), latents=latents,
                              output_type="np").images
            out.append(np.rint(np.clip(images, 0, 1) * 255).astype(np.uint8).transpose(0, 3, 1, 2))
            bar.update(n)
        bar.close()
        return np.concatenate(out)
