"""Stable Diffusion fine-tuned with LoRA: only the adapter trains and is stored.

`model.pretrained` is a diffusers StableDiffusionPipeline (hub id or local directory;
lambdalabs/miniSD-diffusers in the paper). A peft LoRA goes on the UNet modules named
by `model.lora.targets` (default the attention projections to_q, to_k, to_v,
to_out.0, rank 256, alpha = rank); the text encoder and the VAE stay frozen.

- v(empty) is the base pipeline: the untrained adapter has B = 0, so its images are
  the base model's. Retraining a coalition trains that adapter from its seeded init.
- Pruning is LoRA-rank pruning: every rank component k of a module (the rank-one
  update scale * B[:, k] A[k]) is scored by ||B[:, k]|| * ||A[k]|| (or at random), and
  the lowest go until the adapter has `prune.ratio` of its parameters LEFT (for this
  family the ratio is the share kept, as in the paper; for pixel models the share
  removed). Each module keeps alpha / r, so what is kept computes exactly what it did.
- An adapter is `adapter_model.safetensors` plus `adapter_config.json` (peft's
  LoraConfig: rank and alpha per module): megabytes, no pickles, never the base model.
- Training data: every shard is encoded once (the `encode` rule): VAE latents (the
  posterior's mode, times the VAE's scaling_factor) and the text encoder's hidden
  states of each distinct caption (per-image captions from the data's metadata, or
  `model.prompt` for all images).
- Weights: the frozen UNet and text encoder load in `model.dtype` (float32 by default;
  bfloat16 as diffusers' LoRA scripts train on a GPU), the adapter is float32 and the
  UNet's inputs are cast to its weights' dtype; the VAE encodes in float32. A saved
  model records that dtype (base_dtype.json) and loads back in it.
- Sampling: the pipeline with the adapter, `generate.prompts` (default model.prompt,
  image i gets prompt i mod their number), `generate.guidance_scale` (7.5),
  `generate.negative_prompt`, DDIM (or the pipeline's own scheduler with
  `generate.scheduler: pipeline`) for `generate.inference_steps`; image i's initial
  noise depends only on (seed, i).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from .. import pretrained
from .base import PRETRAINED_REF, Family, Model
from .ddpm import image_noise
from .lora import adapter_state, denoiser_inventory, float_adapter, lora_config, matches, prune_ranks, set_adapter

ADAPTER = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
BASE_DTYPE = "base_dtype.json"
CAPTIONS = "captions.json"
SCHEDULER = "scheduler_config.json"
DEFAULT_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
# A pipeline component: (module, class) of what its folder holds.
COMPONENT_CLASSES = {
    "unet": ("diffusers", "UNet2DConditionModel"), "vae": ("diffusers", "AutoencoderKL"),
    "transformer": ("diffusers", "FluxTransformer2DModel"),
    "text_encoder": ("transformers", "CLIPTextModel"), "tokenizer": ("transformers", "CLIPTokenizer"),
    "text_encoder_2": ("transformers", "CLIPTextModelWithProjection"), "tokenizer_2": ("transformers", "CLIPTokenizer"),
}


def load_component(ref: dict, name: str, dtype: str | None = None):
    """A frozen pipeline component, its weights in `dtype` (a torch dtype's name; None: float32)."""
    import importlib

    module, cls = COMPONENT_CLASSES[name]
    kwargs = {**pretrained.load_kwargs(ref), **pretrained.dtype_kwargs(dtype)}
    sub = f"{kwargs.pop('subfolder')}/{name}" if kwargs.get("subfolder") else name
    try:
        part = getattr(importlib.import_module(module), cls).from_pretrained(ref["path"], subfolder=sub, **kwargs)
    except OSError as exc:
        raise RuntimeError(f"cannot load {name} of {ref['path']}: {exc}") from None
    if hasattr(part, "requires_grad_"):
        part.eval().requires_grad_(False)
    return part


class SDLoRA(Family):
    name = "sd_lora"
    pipeline = "StableDiffusionPipeline"
    components = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
    denoiser = "unet"  # the component the adapter goes on
    default_targets: ClassVar[list] = DEFAULT_TARGETS
    latent_multiple = 8  # the denoiser's latents must be a multiple of this in size
    default_rank = 256  # the paper's
    default_guidance = 7.5
    conditional = True  # the proxy strategy: a coalition's prompts drawn from its members' captions
    condition_kinds = ("caption",)
    schema: ClassVar[dict] = {
        "pretrained": {**PRETRAINED_REF, "default": None,
                       "description": "the base StableDiffusionPipeline, a hub id or local directory"},
        "lora": {
            "type": "object", "additionalProperties": False, "default": {},
            "description": "the adapter on the UNet (default rank: the family's; alpha = rank; the attention "
                           "projections)",
            "properties": {
                "rank": {"type": "integer", "minimum": 1},
                "alpha": {"type": ["number", "null"], "exclusiveMinimum": 0},
                "targets": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            },
        },
        "prompt": {"type": ["string", "null"], "default": None,
                   "description": "the caption of every image (unless data.caption_column gives one per image)"},
        "dtype": {"enum": ["bfloat16", "float16", "float32"],
                  "description": "the dtype of the frozen pretrained weights (UNet, text encoders; the VAE encodes "
                                 "in float32); the adapter trains in float32. Default float32; bfloat16 halves "
                                 "the memory and trains faster on a GPU (docs/performance.md)"},
    }
    generate_schema: ClassVar[dict] = {
        "prompts": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                    "description": "image i is generated from prompt i mod their number (default [model.prompt])"},
        "guidance_scale": {"type": "number", "minimum": 0, "description": "classifier-free guidance (default 7.5)"},
        "negative_prompt": {"type": "string"},
        "scheduler": {"enum": ["ddim", "pipeline"], "description": "DDIM (default) or the pipeline's own scheduler"},
    }

    # ---------------------------------------------------------- parse time

    def resolve(self, model_cfg: dict, data: dict, cache=None) -> dict:
        if not model_cfg.get("pretrained"):
            raise ValueError(f"the {self.name} family needs model.pretrained: a hub id or local directory of a "
                             f"diffusers {self.pipeline}")
        pipe = pretrained.describe(model_cfg["pretrained"], "model.pretrained", cache, "model_index.json")
        kind = pipe["config"].get("_class_name")
        missing = [c for c in self.components if c not in pipe["config"]]
        if kind != self.pipeline or missing:
            raise ValueError(f"model.pretrained {pipe['ref']['path']} is a {kind}"
                             f"{' without ' + ', '.join(missing) if missing else ''}, not a {self.pipeline}")
        unet_cfg = self._component_config(pipe, self.denoiser, cache)
        vae_cfg = self._component_config(pipe, "vae", cache)
        sched = self._component_config(pipe, "scheduler", cache, "scheduler_config.json")
        inventory = self._inventory(pipe, unet_cfg, cache)
        lora = dict(model_cfg.get("lora") or {})
        rank = int(lora.get("rank", self.default_rank))
        targets = list(lora.get("targets") or self.default_targets)
        unmatched = [t for t in targets if not any(matches(t, n) for n in inventory["modules"])]
        if unmatched:
            raise ValueError(f"model.lora.targets {unmatched} match no Linear or Conv2d module of the "
                             f"{self.denoiser} (e.g. {', '.join(inventory['modules'][:3])}, ...; attention "
                             "projections are to_q, to_k, to_v, to_out.0)")
        factor = 2 ** (len(vae_cfg["block_out_channels"]) - 1)
        if data["channels"] != 3:
            raise ValueError(f"the {self.name} family trains on RGB images: set data.channels: 3")
        if data["resolution"] % (factor * self.latent_multiple):
            raise ValueError(f"data resolution {data['resolution']} must be a multiple of "
                             f"{factor * self.latent_multiple} (the VAE down-samples by {factor} and the "
                             f"{self.denoiser} needs latents divisible by {self.latent_multiple})")
        lora_size = sum(rank * size for name, size in inventory["sizes"].items()
                        if any(matches(t, name) for t in targets))
        prompt = model_cfg.get("prompt")
        if not data.get("captions") and not prompt:
            raise ValueError(f"{self.name} needs captions: model.prompt (one for every image) or "
                             "data.caption_column (per image, from the metadata file)")
        return {**self.conditioning(unet_cfg, data["resolution"]),
            "pretrained": pipe["identity"],
            "lora": {"rank": rank, "alpha": float(lora.get("alpha") or rank), "targets": targets},
            "seed": int(model_cfg["seed"]),
            "scheduler": {k: v for k, v in sched.items() if not k.startswith("_")},
            "resolution": data["resolution"],
            "latent": {"channels": int(vae_cfg["latent_channels"]), "size": data["resolution"] // factor},
            "text": {"captions": True} if data.get("captions") else {"prompt": prompt},
            "n_parameters": inventory["n_parameters"] + lora_size,
            "n_trainable": lora_size,
            # float32, the default, is left out of the spec: a model's key does not change when it is named
            **({"dtype": model_cfg["dtype"]} if model_cfg.get("dtype") not in (None, "float32") else {}),
        }

    def conditioning(self, unet_cfg: dict, resolution: int) -> dict:
        """What the UNet is conditioned on besides the text's hidden states (nothing here)."""
        return {}

    def _component_config(self, pipe: dict, name: str, cache, file: str = "config.json") -> dict:
        if pipe["folder"] is None:  # a hub id: the component's file from the hub's cache
            ref = pipe["ref"]
            sub = f"{ref['subfolder']}/{name}" if ref["subfolder"] else name
            return pretrained.describe({**ref, "subfolder": sub}, f"model.pretrained ({name})", cache, file)["config"]
        path = Path(pipe["folder"]) / name / file
        if not path.is_file():
            raise ValueError(f"model.pretrained {pipe['folder']} has no {name}/{file}")
        return json.loads(path.read_text())

    def _inventory(self, pipe: dict, unet_cfg: dict, cache) -> dict:
        from ..keys import sha256_hex

        cls = COMPONENT_CLASSES[self.denoiser][1]
        if cache is None:
            return denoiser_inventory(unet_cfg, cls)
        # Cached by the config's content: building it costs importing torch once.
        digest = sha256_hex(json.dumps(unet_cfg, sort_keys=True))
        return cache.get_memo(f"{cls}-inventory-2 {digest}", lambda: denoiser_inventory(unet_cfg, cls))

    def runtime(self, model_cfg: dict) -> dict:
        return {"pretrained": pretrained.located(model_cfg["pretrained"], "model.pretrained"),
                "prompt": model_cfg.get("prompt")}

    def resolve_generate(self, gen: dict, spec: dict, model_cfg: dict) -> dict:
        out = dict(gen)
        prompts = gen.get("prompts") or ([model_cfg["prompt"]] if model_cfg.get("prompt") else None)
        if not prompts:
            raise ValueError(f"{self.name} trained on per-image captions needs generate.prompts to sample from")
        out["prompts"] = list(prompts)
        out["resolution"] = spec["resolution"]
        out.setdefault("guidance_scale", self.default_guidance)
        out.setdefault("scheduler", "ddim")
        if out["scheduler"] not in ("ddim", "pipeline"):
            raise ValueError(f"generate.scheduler {out['scheduler']!r}: use ddim or pipeline")
        return out

    def estimate_parameters(self, spec: dict) -> int:
        return int(spec["n_parameters"])

    def estimate_trainable(self, spec: dict) -> int:
        return int(spec["n_trainable"])

    # ---------------------------------------------------------- models

    def _denoiser(self, runtime: dict, dtype: str | None = None):
        return load_component(runtime["pretrained"], self.denoiser, dtype)

    def _saved_dtype(self, folder: Path) -> str | None:
        """The dtype of the pretrained weights under the model saved at `folder` (None: float32)."""
        path = Path(folder) / BASE_DTYPE
        return json.loads(path.read_text())["dtype"] if path.is_file() else None

    def base_dtype(self, model: Model) -> str | None:
        """The dtype name of the model's frozen weights (None: float32)."""
        return model.extras.get("dtype")

    def init(self, spec: dict, runtime: dict | None = None) -> Model:
        import torch

        unet = self._denoiser(runtime, spec.get("dtype"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec["seed"])
            unet.add_adapter(lora_config(spec))
        float_adapter(unet)
        model = Model(unet, dict(spec["scheduler"]), {"runtime": runtime})
        if spec.get("dtype"):
            model.extras["dtype"] = spec["dtype"]
        return model

    def save(self, model: Model, folder: Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        config = model.net.peft_config["default"]
        save_file(adapter_state(model.net), str(folder / ADAPTER), metadata={"format": "pt"})
        (folder / ADAPTER_CONFIG).write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list))
        (folder / SCHEDULER).write_text(json.dumps(model.scheduler, indent=2, sort_keys=True))
        if "captions" in model.extras:
            (folder / CAPTIONS).write_text(json.dumps(model.extras["captions"], indent=2, sort_keys=True))
        if model.extras.get("dtype"):
            (folder / BASE_DTYPE).write_text(json.dumps({"dtype": model.extras["dtype"]}))

    def load(self, folder: Path, runtime: dict | None = None) -> Model:
        from peft import LoraConfig
        from safetensors.torch import load_file

        folder = Path(folder)
        config = LoraConfig.from_pretrained(str(folder))
        dtype = self._saved_dtype(folder)
        unet = self._denoiser(runtime, dtype)
        set_adapter(unet, config, load_file(str(folder / ADAPTER)))
        model = Model(unet, json.loads((folder / SCHEDULER).read_text()), {"runtime": runtime})
        if dtype:
            model.extras["dtype"] = dtype
        if (folder / CAPTIONS).is_file():
            model.extras["captions"] = json.loads((folder / CAPTIONS).read_text())
        return model

    def condition_on(self, model: Model, captions) -> None:
        """Make `model` sample prompts drawn from `captions` in proportion to their counts
        (the empty prompt when there are none)."""
        from collections import Counter

        model.extras["captions"] = dict(sorted(Counter(str(c) for c in captions).items()))

    def prompts_of(self, model: Model, spec: dict, start: int, n: int) -> list[str]:
        """The prompts of images start..start + n - 1: generate.prompts in turn, or for a
        conditioned model image i's own draw from its captions (seeded by (seed, i))."""
        import numpy as np

        from ..training import step_seed

        counts = model.extras.get("captions") if model is not None else None
        if counts is None:
            prompts = spec["prompts"]
            return [prompts[i % len(prompts)] for i in range(start, start + n)]
        if not counts:
            return [""] * n
        captions = sorted(counts)
        p = np.array([counts[c] for c in captions], dtype=float)
        p /= p.sum()
        seed = int(spec["seed"])
        return [captions[np.random.default_rng(step_seed(seed + 2, i)).choice(len(captions), p=p)]
                for i in range(start, start + n)]

    def trainable(self, model: Model) -> dict:
        return {n: p for n, p in model.net.named_parameters() if "lora_" in n}

    def predict(self, model: Model, xt, t, cond=None):
        dtype = model.net.dtype  # the frozen weights'; inputs are cast to it, the output back
        return model.net(xt.to(dtype), t, encoder_hidden_states=cond.to(dtype)).sample.to(xt.dtype)

    def prune(self, model: Model, ratio: float, importance: str) -> None:
        import torch

        state = adapter_state(model.net)
        ranks, new = prune_ranks(state, ratio, importance, seed=int(torch.initial_seed()) % 2**31)
        spec = {"lora": {"rank": model.net.peft_config["default"].r,
                         "alpha": model.net.peft_config["default"].lora_alpha}}
        if not new:
            raise ValueError(f"prune.ratio {ratio} keeps no rank component of the adapter; raise it")
        set_adapter(model.net, lora_config(spec, ranks), new)

    # ---------------------------------------------------------- training data

    def encode_spec(self, spec: dict) -> dict:
        out = {"pretrained": spec["pretrained"], "text": spec["text"], "resolution": spec["resolution"]}
        return {**out, "dtype": spec["dtype"]} if spec.get("dtype") else out

    def encode_shard(self, encode_spec: dict, arrays: dict, device, batch_size: int, runtime: dict) -> dict:
        import numpy as np
        import torch

        ref = runtime["pretrained"]
        vae = load_component(ref, "vae").to(device)
        latents = []
        with torch.no_grad():
            for start in range(0, len(arrays["images"]), batch_size):
                x = torch.from_numpy(arrays["images"][start:start + batch_size]).to(device).float() / 127.5 - 1
                z = vae.encode(x).latent_dist.mode()
                z = (z - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor
                latents.append(z.float().cpu().numpy())
        del vae
        if encode_spec["text"].get("captions"):
            captions = [str(c) for c in arrays["captions"]]
        else:
            captions = [encode_spec["text"]["prompt"]] * len(arrays["images"])
        unique = sorted(set(captions))
        position = {c: i for i, c in enumerate(unique)}
        index = np.asarray([position[c] for c in captions], dtype=np.int64)
        text = self.encode_text(ref, unique, device, batch_size, encode_spec)
        return {"latents": np.concatenate(latents).astype(np.float32), "text_index": index, "text": text}

    def encode_text(self, ref: dict, prompts: list[str], device, batch_size: int = 64,
                    encode_spec: dict | None = None):
        """(n, L, D) float32 text conditioning of `prompts` (the tokenizer's length)."""
        import numpy as np
        import torch

        tokenizer = load_component(ref, "tokenizer")
        encoder = load_component(ref, "text_encoder", (encode_spec or {}).get("dtype")).to(device)
        out = []
        with torch.no_grad():
            for start in range(0, len(prompts), batch_size):
                ids = tokenizer(prompts[start:start + batch_size], padding="max_length",
                                max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt")
                out.append(encoder(ids.input_ids.to(device))[0].float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def training_data(self, paths) -> dict:
        from ..artifacts import read_npz

        shards = [read_npz(p, ("latents", "text_index", "text")) for p in paths]
        return self.training_data_from(shards)

    def training_data_from(self, shards: list[dict]) -> dict:
        """Encoded shards joined: latents, and caption indices into the joined caption table."""
        import numpy as np

        offsets = np.cumsum([0] + [len(s["text"]) for s in shards])
        return {"latents": np.concatenate([s["latents"] for s in shards]),
                "text_index": np.concatenate([s["text_index"] + o for s, o in zip(shards, offsets)]),
                "text": np.concatenate([s["text"] for s in shards])}

    def target_data(self, images, generate, encode_spec, device, batch_size, runtime, model=None) -> dict:
        """A generated image's caption: the prompt it was sampled with."""
        captions = self.prompts_of(model, generate, 0, len(images))
        enc = self.encode_shard({**encode_spec, "text": {**encode_spec["text"], "captions": True}},
                                {"images": images, "captions": captions}, device, batch_size, runtime)
        return self.training_data_from([enc])

    def n_items(self, data: dict) -> int:
        return len(data["latents"])

    def batch(self, model: Model, data: dict, idx):
        return data["latents"][idx].float(), data["text"][data["text_index"][idx]].float()

    # ---------------------------------------------------------- sampling

    def pipeline_with(self, model: Model):
        """The base pipeline with the model's UNet (its adapter on)."""
        from diffusers import StableDiffusionPipeline

        ref = model.extras["runtime"]["pretrained"]
        return StableDiffusionPipeline.from_pretrained(ref["path"], unet=model.net, safety_checker=None,
                                                       feature_extractor=None, requires_safety_checker=False,
                                                       **pretrained.dtype_kwargs(self.base_dtype(model)),
                                                       **pretrained.load_kwargs(ref))

    def sample(self, model: Model, n_images: int, spec: dict, device, dtype, progress: bool = True):
        import numpy as np
        import torch
        from diffusers import DDIMScheduler
        from tqdm import tqdm

        from ..devices import autocast
        from ..training import step_seed

        pipe = self.pipeline_with(model)
        if spec.get("scheduler", "ddim") == "ddim":
            pipe.scheduler = DDIMScheduler.from_config({**pipe.scheduler.config, "steps_offset": 1})
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        size = pipe.vae_scale_factor
        res = int(spec["resolution"])
        shape = (pipe.unet.config.in_channels, res // size, res // size)
        seed, batch = int(spec["seed"]), int(spec["batch_size"])
        out = []
        bar = tqdm(total=n_images, desc="generate", disable=not progress, mininterval=2.0)
        for start in range(0, n_images, batch):
            n = min(batch, n_images - start)
            latents = image_noise(shape, seed, start, n, device).to(pipe.unet.dtype)  # the pipeline does not cast
            gens = [torch.Generator(device).manual_seed(step_seed(seed + 1, start + j)) for j in range(n)]
            with torch.no_grad(), autocast(device, dtype):
                images = pipe(self.prompts_of(model, spec, start, n), height=res, width=res,
                              num_inference_steps=int(spec["inference_steps"]),
                              guidance_scale=float(spec["guidance_scale"]),
                              negative_prompt=[spec["negative_prompt"]] * n if spec.get("negative_prompt") else None,
                              eta=float(spec.get("eta", 0.0)), generator=gens,
                              latents=latents, output_type="np").images
            out.append(np.rint(np.clip(images, 0, 1) * 255).astype(np.uint8).transpose(0, 3, 1, 2))
            bar.update(n)
        bar.close()
        return np.concatenate(out)
