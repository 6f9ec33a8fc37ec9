"""Denoising training with checkpoints that resume exactly.

All randomness of step t (which items, which timesteps, which noise) is a pure
function of (seed, t), so a run resumed from a checkpoint at step t draws the same
batches as an uninterrupted one. Checkpoints hold the model, optimizer, learning
rate schedule and EMA state; a corrupt one is skipped for the one before it.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .io import atomic_path, list_checkpoints

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2


@dataclass
class TrainSpec:
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int = 0
    ema_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "TrainSpec":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def step_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0] >> 1)


def batch_indices(n_items: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Items of step `step`: consecutive slices of a seeded permutation per epoch."""
    out = []
    pos = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(pos, n_items)
        perm = np.random.default_rng([seed, epoch]).permutation(n_items)
        take = perm[offset : offset + batch_size - len(out)]
        out.extend(take.tolist())
        pos += len(take)
    return np.asarray(out)


def to_model_range(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float().div(127.5).sub(1.0)


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, model.parameters()):
            s.mul_(d).add_(p.detach(), alpha=1 - d)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        for s, p in zip(self.shadow, model.parameters()):
            p.copy_(s)


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(folder: Path, step: int, state: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:08d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for _, old in list_checkpoints(folder)[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return path


def load_latest_checkpoint(folder: Path) -> dict | None:
    """The newest checkpoint that loads; corrupt ones are skipped with a warning."""
    for step, path in reversed(list_checkpoints(folder)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if state.get("step") != step:
                raise ValueError(f"holds step {state.get('step')}, named {step}")
            return state
        except Exception as exc:  # truncated zip, bad pickle, wrong contents
            log.warning("skipping corrupt checkpoint %s (%s)", path, exc)
    return None


# ---------------------------------------------------------------- training


def train(
    model: torch.nn.Module,
    images: np.ndarray,
    spec: TrainSpec,
    scheduler_cfg: dict,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    desc: str = "train",
    progress: bool = True,
) -> dict:
    """Train `model` to predict noise on uint8 `images` (N, C, H, W); returns stats."""
    from diffusers import DDPMScheduler
    from tqdm import tqdm

    if len(images) == 0:
        raise ValueError("cannot train on zero images")
    noise_scheduler = DDPMScheduler(**scheduler_cfg)
    n_t = noise_scheduler.config.num_train_timesteps
    data = to_model_range(images)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.0)
    warmup = max(spec.warmup_steps, 0)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
    )
    ema = EMA(model, spec.ema_decay) if spec.ema_decay > 0 else None
    start = 0
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else None
    if ckpt_dir is not None:
        state = load_latest_checkpoint(ckpt_dir)
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            lr_schedule.load_state_dict(state["lr_schedule"])
            if ema is not None:
                ema.shadow = list(state["ema"])
            start = state["step"]
            log.info("resumed from checkpoint at step %d of %d", start, spec.steps)
    losses = []
    bar = tqdm(total=spec.steps, initial=start, desc=desc, disable=not progress, mininterval=2.0)
    for step in range(start, spec.steps):
        idx = batch_indices(len(data), spec.batch_size, spec.seed, step)
        x0 = data[torch.from_numpy(idx)]
        g = torch.Generator().manual_seed(step_seed(spec.seed, step))
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, n_t, (len(x0),), generator=g)
        xt = noise_scheduler.add_noise(x0, noise, t)
        loss = F.mse_loss(model(xt, t).sample, noise)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"{desc}: loss is {loss.item()} at step {step}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if spec.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        optimizer.step()
        lr_schedule.step()
        if ema is not None:
            ema.update(model, step)
        losses.append(loss.item())
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        done = step + 1
        if ckpt_dir is not None and checkpoint_every > 0 and done % checkpoint_every == 0 and done < spec.steps:
            save_checkpoint(
                ckpt_dir,
                done,
                {
                    "step": done,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "lr_schedule": lr_schedule.state_dict(),
                    "ema": ema.shadow if ema is not None else None,
                },
            )
    bar.close()
    if ema is not None:
        ema.copy_to(model)
    model.eval()
    return {"start_step": start, "steps": spec.steps, "final_loss": float(np.mean(losses[-50:])) if losses else None}
