"""Seeded DDIM sampling to a compact uint8 array.

Batch b starts from noise drawn with seed (seed, b), so asking for more images
keeps the first ones unchanged.
"""

from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def sample_ddim(
    model,
    scheduler_cfg: dict,
    n_images: int,
    inference_steps: int,
    seed: int,
    batch_size: int = 256,
    eta: float = 0.0,
    progress: bool = True,
) -> np.ndarray:
    """Generate `n_images` as uint8 (N, C, H, W)."""
    from diffusers import DDIMScheduler
    from tqdm import tqdm

    from .training import step_seed

    model.eval()
    scheduler = DDIMScheduler(**scheduler_cfg)
    scheduler.set_timesteps(inference_steps)
    cfg = model.config
    shape = (cfg.in_channels, cfg.sample_size, cfg.sample_size)
    out = []
    n_batches = -(-n_images // batch_size)
    for b in tqdm(range(n_batches), desc="generate", disable=not progress):
        n = min(batch_size, n_images - b * batch_size)
        g = torch.Generator().manual_seed(step_seed(seed, b))
        x = torch.randn((n, *shape), generator=g)
        for t in scheduler.timesteps:
            eps = model(x, t).sample
            x = scheduler.step(eps, t, x, eta=eta, generator=g).prev_sample
        out.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy())
    return np.concatenate(out)
