"""What a model family provides to the workflow.

Config: `schema` holds the JSON-schema properties of the `model` keys the family
takes besides the common ones (`family`, `seed`, in workflow/schemas/), and
`generate_schema` those of its extra `generate` keys; config.validate checks the
chosen family's keys against them, fills their defaults, and refuses another
family's keys. Class attributes of modules that do not import torch at top level.

Parse time (no torch): `resolve` turns the config's `model` section into the keyed
spec of the untrained model, and `estimate_parameters` sizes jobs. Job time: build,
save and load (no pickles), the trained parameters, the per-sample training loss,
pruning and sampling. The training loop, strategies and stages are generic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


@dataclass
class Model:
    """A loaded model: the network that trains, its noise schedule, family extras."""

    net: Any  # torch.nn.Module
    scheduler: dict  # diffusers scheduler config
    extras: dict = field(default_factory=dict)


# A pretrained part: a hub id or local directory, or {path, subfolder, revision}.
PRETRAINED_REF = {
    "type": ["string", "object", "null"],
    "properties": {
        "path": {"type": "string"},
        "subfolder": {"type": ["string", "null"]},
        "revision": {"type": ["string", "null"]},
    },
    "additionalProperties": False,
}


class Family:
    name: str = ""
    schema: ClassVar[dict] = {}  # its `model` keys (JSON-schema properties)
    generate_schema: ClassVar[dict] = {}  # its `generate` keys besides the common ones
    # Whether its models sample a mix of labels (or captions) they can be told
    # (`condition_on`): what the proxy strategy needs.
    conditional: ClassVar[bool] = False
    # What data.condition may say for this family: ("class", "contributor") for a label-conditional
    # family (the first is auto's choice for labelled data), ("caption",) for a text family.
    condition_kinds: ClassVar[tuple] = ()

    # ---------------------------------------------------------- parse time

    def resolve(self, model_cfg: dict, data: dict, cache=None) -> dict:
        """The keyed spec of the untrained model from `model` and the data's shape
        ({"resolution", "channels"}); raises ValueError on an impossible config.
        `cache` (a data.HashCache) hashes pretrained files once."""
        raise NotImplementedError

    def resolve_generate(self, gen: dict, spec: dict, model_cfg: dict) -> dict:
        """The keyed sampling settings from `generate` (minus batch_size): the common
        keys and this family's `generate_schema` keys (the config's validation refused
        any other)."""
        return gen

    def runtime(self, model_cfg: dict) -> dict:
        """What jobs need besides the keyed spec: where pretrained parts load from."""
        return {}

    def estimate_parameters(self, spec: dict) -> int:
        """A rough parameter count of the model `spec` describes, for job sizing."""
        raise NotImplementedError

    def estimate_trainable(self, spec: dict) -> int:
        """How many of those parameters train (gradients and optimizer state)."""
        return self.estimate_parameters(spec)

    # ---------------------------------------------------------- job time

    def init(self, spec: dict, runtime: dict | None = None) -> Model:
        """v(empty): the seeded untrained model (or the pretrained base)."""
        raise NotImplementedError

    def save(self, model: Model, folder: Path) -> None:
        raise NotImplementedError

    def load(self, folder: Path, runtime: dict | None = None) -> Model:
        raise NotImplementedError

    def trainable(self, model: Model) -> dict:
        """name -> parameter of everything training updates."""
        return {n: p for n, p in model.net.named_parameters() if p.requires_grad}

    def predict(self, model: Model, xt, t, cond=None):
        """The network's output for noised inputs `xt` at timesteps `t` (conditioned on
        `cond`, e.g. text embeddings): what the loss compares with its target."""
        raise NotImplementedError

    def noise_scheduler(self, model: Model):
        """The training noise schedule (a diffusers DDPMScheduler), built once per model."""
        from diffusers import DDPMScheduler

        sched = model.extras.get("noise_scheduler")
        if sched is None:
            sched = model.extras["noise_scheduler"] = DDPMScheduler.from_config(model.scheduler)
        return sched

    def num_timesteps(self, model: Model) -> int:
        return int(model.scheduler["num_train_timesteps"])

    def loss(self, model: Model, x0, noise, t, cond=None):
        """Per-sample denoising loss (shape (B,)) of clean inputs `x0` at timesteps
        `t`, with the target the scheduler's `prediction_type` asks for."""
        sched = self.noise_scheduler(model)
        pred = self.predict(model, sched.add_noise(x0, noise, t), t, cond)
        return diffusion_loss(pred, x0, noise, t, sched)

    def noising(self, model: Model, t):
        """(a, b), each (len(t),) float32 on t's device: x_t = a x0 + b noise at timesteps
        `t` (what `loss` trains on; the gradient attribution methods noise with it)."""
        import torch

        ac = self.noise_scheduler(model).alphas_cumprod.to(device=t.device, dtype=torch.float32)[t]
        return ac.sqrt(), (1 - ac).sqrt()

    def target(self, model: Model, x0, noise, t):
        """What the prediction at timesteps `t` is trained toward."""
        return diffusion_target(x0, noise, t, self.noise_scheduler(model))

    # ---------------------------------------------------------- training data
    #
    # Pixel families train on the contributors' shards as they are. Latent families
    # encode every shard once (the `encode` rule) with their frozen encoders and train
    # on the encoded shards: `encode_spec` says what the encoding depends on (its key).

    def encode_spec(self, spec: dict) -> dict | None:
        """What encoding a shard depends on, or None to train on the images themselves."""
        return None

    def encode_shard(self, encode_spec: dict, arrays: dict, device, batch_size: int, runtime: dict) -> dict:
        """The encoded arrays of one shard's arrays (images, labels, captions)."""
        raise NotImplementedError

    def training_data(self, paths) -> dict:
        """Arrays of every item of the (raw or encoded) shards at `paths`, concatenated."""
        from ..data import read_shard_arrays

        return read_shard_arrays(paths, keys=("images",))

    def target_data(self, images, generate: dict, encode_spec: dict | None, device, batch_size: int,
                    runtime: dict, model: Model | None = None) -> dict:
        """Training arrays (as `training_data` returns them) of generated uint8 images,
        sampled by `model` with the keyed `generate` settings: the attribution methods'
        targets."""
        if encode_spec is not None:
            raise NotImplementedError(f"{self.name} encodes its training data; it must encode targets too")
        return {"images": images}

    def n_items(self, data: dict) -> int:
        return len(data["images"])

    def batch(self, model: Model, data: dict, idx):
        """(x0, cond) of items `idx` of `data` (tensors on the training device): pixels
        in [-1, 1] and no condition here."""
        return data["images"][idx].float().div(127.5).sub(1.0), None

    def remember_data(self, model: Model, data: dict) -> None:
        """Note what the model needs to know of its training data (a conditional family:
        its label counts) before training on `data`; saved with the model."""

    def condition_on(self, model: Model, labels) -> None:
        """Make `model` sample the mix of `labels` (a text family: captions), the proxy strategy."""
        raise NotImplementedError(f"family {self.name} has no conditioning")

    def drop_condition(self, model: Model, cond, generator):
        """The condition of a training step, some of it dropped for classifier-free
        guidance (drawn with the step's `generator`); unchanged here."""
        return cond

    def prune(self, model: Model, ratio: float, importance: str) -> None:
        raise NotImplementedError

    def check_prune(self, spec: dict, ratio: float) -> None:
        """Refuse (ValueError) a prune.ratio that `prune` could not honour on this model."""

    def sample(self, model: Model, n_images: int, spec: dict, device, dtype, progress: bool = True):
        """`n_images` seeded samples as uint8 (N, C, H, W); image i depends only on
        (spec["seed"], i), never on the batch size."""
        raise NotImplementedError


def diffusion_target(x0, noise, t, noise_scheduler):
    """The target of the scheduler's prediction_type."""
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return noise_scheduler.get_velocity(x0, noise, t)
    if kind == "sample":
        return x0
    raise ValueError(f"unsupported prediction_type {kind!r}")


def diffusion_loss(pred, x0, noise, t, noise_scheduler):
    """Per-sample MSE against the target of the scheduler's prediction_type."""
    return (pred.float() - diffusion_target(x0, noise, t, noise_scheduler).float()).pow(2).flatten(1).mean(1)
