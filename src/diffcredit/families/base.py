"""What a model family provides to the workflow.

Parse time (no torch): `resolve` turns the config's `model` section into the keyed
spec of the untrained model, and `estimate_parameters` sizes jobs. Job time: build,
save and load (no pickles), the trained parameters, the per-sample training loss,
pruning and sampling. The training loop, strategies and stages are generic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Model:
    """A loaded model: the network that trains, its noise schedule, family extras."""

    net: Any  # torch.nn.Module
    scheduler: dict  # diffusers scheduler config
    extras: dict = field(default_factory=dict)


class Family:
    name: str = ""

    # ---------------------------------------------------------- parse time

    def resolve(self, model_cfg: dict, data: dict) -> dict:
        """The keyed spec of the untrained model from `model` and the data's shape
        ({"resolution", "channels"}); raises ValueError on an impossible config."""
        raise NotImplementedError

    def estimate_parameters(self, spec: dict) -> int:
        """A rough parameter count of the model `spec` describes, for job sizing."""
        raise NotImplementedError

    # ---------------------------------------------------------- job time

    def init(self, spec: dict) -> Model:
        """v(empty): the seeded untrained model (or the pretrained base)."""
        raise NotImplementedError

    def save(self, model: Model, folder: Path) -> None:
        raise NotImplementedError

    def load(self, folder: Path) -> Model:
        raise NotImplementedError

    def trainable(self, model: Model) -> dict:
        """name -> parameter of everything training updates."""
        return {n: p for n, p in model.net.named_parameters() if p.requires_grad}

    def loss(self, model: Model, x0, noise, t):
        """Per-sample denoising loss (shape (B,)) of clean inputs `x0` at timesteps
        `t`, with the target the scheduler's `prediction_type` asks for."""
        raise NotImplementedError

    def encode(self, model: Model, images):
        """Training inputs from uint8 images (N, C, H, W): pixels in [-1, 1] here;
        latent families encode."""
        return images.float().div(127.5).sub(1.0)

    def prune(self, model: Model, ratio: float, importance: str) -> None:
        raise NotImplementedError

    def sample(self, model: Model, n_images: int, spec: dict, device, dtype, progress: bool = True):
        """`n_images` seeded samples as uint8 (N, C, H, W); image i depends only on
        (spec["seed"], i), never on the batch size."""
        raise NotImplementedError
