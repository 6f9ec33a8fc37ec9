"""A small CNN classifier: the network of the `classifier` feature extractor.

It gives class predictions (for class_entropy) and penultimate-layer features
(for a Frechet distance). It is trained once per dataset content, on a seeded
split, and refuses to be used below its configured held-out accuracy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import CLASSIFIER_CONFIG as CONFIG

log = logging.getLogger(__name__)

WEIGHTS = "classifier.safetensors"


class SmallCNN(nn.Module):
    def __init__(self, channels: int, n_classes: int, width: int = 32, feature_dim: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.GELU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * width, feature_dim),
            nn.GELU(),
        )
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _prep(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).float().div(127.5).sub(1.0)


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random shifts of up to one pixel: cheap, label-preserving."""
    pad = F.pad(x, (1, 1, 1, 1), mode="replicate")
    h, w = x.shape[-2:]
    dy, dx = torch.randint(0, 3, (2,), generator=g).tolist()
    return pad[..., dy : dy + h, dx : dx + w]


def train_classifier(images: np.ndarray, labels: np.ndarray, spec: dict, progress: bool = True):
    """Train on a seeded split; returns (model, metrics)."""
    from tqdm import tqdm

    seed = int(spec.get("seed", 0))
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError("the classifier needs at least 2 classes in the data")
    remap = {int(c): i for i, c in enumerate(classes)}
    y_all = np.asarray([remap[int(c)] for c in labels])
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(images))
    n_test = max(1, int(round(len(images) * float(spec.get("holdout", 0.2)))))
    test, train = perm[:n_test], perm[n_test:]
    x_train, y_train = _prep(images[train]), torch.from_numpy(y_all[train])
    x_test, y_test = _prep(images[test]), torch.from_numpy(y_all[test])
    torch.manual_seed(seed)
    model = SmallCNN(images.shape[1], len(classes), int(spec.get("width", 32)), int(spec.get("feature_dim", 64)))
    opt = torch.optim.AdamW(model.parameters(), lr=float(spec.get("lr", 3e-3)), weight_decay=1e-4)
    steps, bs = int(spec["steps"]), int(spec.get("batch_size", 128))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(spec.get("lr", 3e-3)), total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(steps), desc="classifier", disable=not progress, mininterval=2.0):
        idx = torch.randint(0, len(x_train), (bs,), generator=g)
        loss = F.cross_entropy(model(_augment(x_train[idx], g)), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    metrics = {"heldout_accuracy": acc, "n_train": int(len(train)), "n_test": int(n_test), "classes": [int(c) for c in classes]}
    return model, metrics


@torch.no_grad()
def features_and_probs(model: SmallCNN, images: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    device = next(model.parameters()).device
    feats, probs = [], []
    for i in range(0, len(images), batch_size):
        f = model.features(_prep(images[i : i + batch_size]).to(device))
        feats.append(f.double().cpu().numpy())
        probs.append(F.softmax(model.head(f), dim=1).double().cpu().numpy())
    return np.concatenate(feats), np.concatenate(probs)


def save_classifier(model: SmallCNN, folder: Path, metrics: dict) -> None:
    from safetensors.torch import save_file

    save_file(model.state_dict(), folder / WEIGHTS)
    cfg = {
        "channels": model.body[0].in_channels,
        "n_classes": model.head.out_features,
        "width": model.body[0].out_channels,
        "feature_dim": model.head.in_features,
        **metrics,
    }
    (folder / CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True))


def load_classifier(folder: Path) -> tuple[SmallCNN, dict]:
    from safetensors.torch import load_file

    from ..artifacts import verify_dir

    verify_dir(folder)
    cfg = json.loads((folder / CONFIG).read_text())
    model = SmallCNN(cfg["channels"], cfg["n_classes"], cfg["width"], cfg["feature_dim"])
    model.load_state_dict(load_file(folder / WEIGHTS))
    model.eval()
    return model, cfg
