"""Offline stand-ins written by the tests: a CIFAR-100 python archive with a few
images per class, and Inception weights of the real architecture, randomly
initialised so that features do not collapse."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_cifar100(root: Path, per_class: int = 6, classes=range(100), seed: int = 0) -> Path:
    """root/cifar-100-python/{train,test,meta} in the archive's own format. Each
    class has its own colour and stripe frequency, plus noise."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", per_class), ("test", max(1, per_class // 3))):
        data, labels = [], []
        for c in classes:
            colour = np.random.default_rng(c).integers(40, 216, 3)
            xx = np.arange(32)
            stripes = 40 * np.sin(xx * (1 + c % 7) * np.pi / 16)
            for _ in range(n):
                img = colour[:, None, None] + stripes[None, None, :] + rng.normal(0, 12, (3, 32, 32))
                data.append(np.clip(img, 0, 255).astype(np.uint8).reshape(-1))
                labels.append(c)
        batch = {"data": np.stack(data), "fine_labels": labels, "coarse_labels": [c // 5 for c in labels],
                 "filenames": [f"img{i}.png" for i in range(len(labels))]}
        with open(folder / split, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"fine{c:02d}" for c in range(100)],
                     "coarse_label_names": [f"coarse{c:02d}" for c in range(20)]}, f)
    return Path(root)


def write_random_inception(path: Path, seed: int = 0, fc_std: float = 0.05) -> Path:
    """torch-fidelity's Inception-v3 with kaiming-initialised convolutions (the
    default init collapses its features to ~0: FID 0, IS 1), saved as its weights file."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):
            return None

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({}, path)
    torch.manual_seed(seed)
    net = Unloaded("inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        torch.nn.init.normal_(net.fc.weight, std=fc_std)
        torch.nn.init.zeros_(net.fc.bias)
    torch.save(net.state_dict(), path)
    return path
