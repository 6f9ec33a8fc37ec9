"""Denoising training of any family, with checkpoints that resume exactly.

All randomness of step t (which items, which timesteps, which noise) is a pure
function of (seed, t) and drawn on the CPU, so a run resumed from a checkpoint at
step t draws the same batches as an uninterrupted one, on any device. Checkpoints
hold the trained parameters, optimizer, learning rate schedule and EMA state; a
corrupt one is skipped for the one before it.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .artifacts import atomic_path, list_checkpoints

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2
LOG_EVERY = 50


@dataclass
class TrainSpec:
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int = 0
    ema_decay: float = 0.0
    grad_clip: float = 1.0
    weight_decay: float = 0.0
    antithetic: bool = False
    seed: int = 0
    schedule: str = "constant"  # after warmup: constant, or cosine decay to zero at the last step

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


def timesteps(n: int, n_t: int, antithetic: bool, g: torch.Generator) -> torch.Tensor:
    """Uniform timesteps; antithetic pairs (t, T-1-t) halve the loss variance."""
    if not antithetic:
        return torch.randint(0, n_t, (n,), generator=g)
    t = torch.randint(0, n_t, (n // 2 + 1,), generator=g)
    return torch.cat([t, n_t - 1 - t])[:n]


def lr_factor(spec: TrainSpec, step: int) -> float:
    """The learning rate of step `step` (0-based) over spec.lr: linear warmup, then
    constant or a cosine decay that reaches zero after the last step."""
    warmup = max(spec.warmup_steps, 0)
    if step < warmup:
        return (step + 1) / warmup
    if spec.schedule == "cosine":
        span = max(spec.steps - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup + 1) / span))
    return 1.0


class EMA:
    def __init__(self, params: list, decay: float):
        self.decay = decay
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self, params: list, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in params], 1 - d)

    @torch.no_grad()
    def copy_to(self, params: list) -> None:
        for s, p in zip(self.shadow, params):
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


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on `device`. To CUDA through pinned memory, so the copy does not
    wait for the queued steps (a copy from pageable memory synchronises the stream)."""
    if device.type != "cuda":
        return x
    return x.pin_memory().to(device, non_blocking=True)


def train(
    family,
    model,
    data: dict | np.ndarray,
    spec: TrainSpec,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    desc: str = "train",
    progress: bool = True,
    ascent: bool = False,
) -> dict:
    """Train `model` (a family's Model) on `data` (the family's training arrays, see
    `Family.training_data`; a bare array is uint8 images (N, C, H, W)); returns stats.

    With `ascent`, the loss is maximised (gradient ascent on data to forget).
    """
    from tqdm import tqdm

    from .devices import autocast

    if isinstance(data, np.ndarray):
        data = {"images": data}
    n_items = family.n_items(data)
    if n_items == 0:
        raise ValueError("cannot train on zero images")
    device = device or torch.device("cpu")
    if device.type == "cuda":
        # cuDNN's attention backward fails (illegal memory access) on FLUX's shapes with torch 2.11 on
        # an H200; flash and memory-efficient attention serve instead (docs/performance.md).
        torch.backends.cuda.enable_cudnn_sdp(False)
    net = model.net.to(device)
    net.train()
    named = family.trainable(model)
    params = list(named.values())
    family.remember_data(model, data)  # the host arrays
    data = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in data.items()}
    n_t = family.num_timesteps(model)
    optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(spec, s))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and dtype == torch.float16)
    ema = EMA(params, spec.ema_decay) if spec.ema_decay > 0 else None
    start = 0
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else None
    if ckpt_dir is not None:
        state = load_latest_checkpoint(ckpt_dir)
        if state is not None:
            with torch.no_grad():
                for name, value in state["params"].items():
                    named[name].copy_(value)
            optimizer.load_state_dict(state["optimizer"])
            lr_schedule.load_state_dict(state["lr_schedule"])
            if ema is not None:
                ema.shadow = [s.to(device) for s in state["ema"]]
            start = state["step"]
            log.info("resumed from checkpoint at step %d of %d", start, spec.steps)
    sign = -1.0 if ascent else 1.0
    window, n_window = torch.zeros((), device=device), 0
    losses = []
    bar = tqdm(total=spec.steps, initial=start, desc=desc, disable=not progress, mininterval=2.0)
    for step in range(start, spec.steps):
        idx = _to(torch.from_numpy(batch_indices(n_items, spec.batch_size, spec.seed, step)), device)
        x0, cond = family.batch(model, data, idx)
        g = torch.Generator().manual_seed(step_seed(spec.seed, step))
        noise = _to(torch.randn(x0.shape, generator=g), device)
        t = _to(timesteps(len(x0), n_t, spec.antithetic, g), device)
        cond = family.drop_condition(model, cond, g)
        with autocast(device, dtype):
            loss = family.loss(model, x0, noise, t, cond).mean()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(sign * loss).backward()
        if spec.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        lr_schedule.step()
        if ema is not None:
            ema.update(params, step)
        window += loss.detach()
        n_window += 1
        done = step + 1
        if done % LOG_EVERY == 0 or done == spec.steps:
            mean = window.item() / n_window  # one host sync per window, not per step
            window.zero_()
            n_window = 0
            if not math.isfinite(mean):
                raise FloatingPointError(f"{desc}: loss is {mean} near step {step}; lower the learning rate")
            losses.append(mean)
            bar.set_postfix(loss=f"{mean:.4f}")
        bar.update(1)
        if ckpt_dir is not None and checkpoint_every > 0 and done % checkpoint_every == 0 and done < spec.steps:
            save_checkpoint(
                ckpt_dir,
                done,
                {
                    "step": done,
                    "params": {k: v.detach().cpu() for k, v in named.items()},
                    "optimizer": optimizer.state_dict(),
                    "lr_schedule": lr_schedule.state_dict(),
                    "ema": [s.cpu() for s in ema.shadow] if ema is not None else None,
                },
            )
    bar.close()
    if ema is not None:
        ema.copy_to(params)
    net.eval()
    return {"start_step": start, "steps": spec.steps, "final_loss": losses[-1] if losses else None}
