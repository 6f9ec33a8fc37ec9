"""Per-coalition cost of sd_lora under sFT and under retraining, and the size of a
coalition's artifact, on Stable Diffusion 1.x's UNet architecture at miniSD's size
(32x32 latents, 77x768 text states; random weights) with the ArtBench LoRA
(rank 256, alpha 256, on to_q, to_k, to_v, to_out.0).

A retrain trains the full-rank adapter from its initialisation with train_full's
recipe (configs/artbench.yaml: 15,625 steps); sFT trains the rank-pruned adapter
(prune.ratio 0.5 of its parameters kept) for fine_tune's 200 steps, at the same batch
size. The step time of each is measured here (CPU seconds of the training loop per
step, median over steps after the first) at a small batch, and the per-coalition
cost is steps x step time. The artifact is what the family saves for a coalition.

    python benchmarks/sd_lora_cost.py [--batch 2] [--steps 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from diffcredit.families import get_family  # noqa: E402
from diffcredit.training import TrainSpec, train  # noqa: E402
from train_throughput import sd_model  # noqa: E402


def step_seconds(model, data, steps: int, batch: int) -> float:
    """Median CPU seconds per training step (the first step excluded)."""
    stamps = []
    model.net.register_forward_pre_hook(lambda m, a: stamps.append(time.process_time()))
    train(get_family("sd_lora"), model, data, TrainSpec(steps=steps + 1, batch_size=batch, lr=1e-4), progress=False)
    return statistics.median(np.diff(stamps)[1:].tolist()) if len(stamps) > 2 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recipe = yaml.safe_load((REPO / "configs" / "artbench.yaml").read_text())
    rank, keep = recipe["model"]["lora"]["rank"], recipe["prune"]["ratio"]
    retrain_steps, sft_steps = recipe["train_full"]["steps"], recipe["fine_tune"]["training"]["steps"]
    family = get_family("sd_lora")
    rng = np.random.default_rng(0)
    data = {"latents": rng.normal(size=(64, 4, 32, 32)).astype(np.float32),
            "text_index": np.zeros(64, dtype=np.int64), "text": rng.normal(size=(1, 77, 768)).astype(np.float32)}

    full = sd_model(rank)
    n_unet = sum(p.numel() for n, p in full.net.named_parameters() if "lora_" not in n)
    n_full = sum(p.numel() for p in family.trainable(full).values())
    pruned = sd_model(rank)
    with torch.no_grad():  # a trained adapter (B != 0), so magnitudes differ between components
        for p in family.trainable(pruned).values():
            p.normal_(0, 0.02)
    family.prune(pruned, keep, "magnitude")
    n_pruned = sum(p.numel() for p in family.trainable(pruned).values())
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, m in (("full", full), ("pruned", pruned)):
            folder = Path(tmp) / name
            folder.mkdir()
            family.save(m, folder)
            sizes[name] = sum(f.stat().st_size for f in folder.iterdir())
    t_full = step_seconds(full, data, args.steps, args.batch)
    t_pruned = step_seconds(pruned, data, args.steps, args.batch)
    retrain, sft = retrain_steps * t_full, sft_steps * t_pruned
    print(f"miniSD UNet ({n_unet / 1e6:.0f}M parameters, frozen) + LoRA rank {rank}: {n_full / 1e6:.1f}M "
          f"parameters; pruned to {keep} kept: {n_pruned / 1e6:.1f}M")
    print(f"CPU s/step at batch {args.batch}, {args.threads} threads: full adapter {t_full:.2f}, "
          f"pruned {t_pruned:.2f} (ratio {t_pruned / t_full:.2f})")
    print(f"per coalition: retrain {retrain_steps} steps = {retrain:.0f} CPU-s, sFT {sft_steps} steps = {sft:.0f} "
          f"CPU-s; sFT / retrain = 1/{retrain / sft:.0f}")
    print(f"artifact per coalition: full adapter {sizes['full'] / 2**20:.1f} MiB, pruned {sizes['pruned'] / 2**20:.1f} "
          f"MiB (the UNet alone: {4 * n_unet / 2**20:.0f} MiB in fp32)")


if __name__ == "__main__":
    main()
