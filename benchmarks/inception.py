"""Inception features and metrics: diffcredit's features + score stages against
torch-fidelity's one-call calculate_metrics on the same images.

Both use torch-fidelity's Inception-v3 ('inception-v3-compat') with the same weights
file (the real one when cached or given with --weights; otherwise a random network of
the real architecture, which costs the same). diffcredit extracts features of the
generated and the reference images, then computes IS, FID, precision and recall from
them; torch-fidelity does its own feature pass and metrics. Reported: images/s of each
(feature extraction dominates) and the largest metric difference.

    python benchmarks/inception.py [--images 200] [--batch 50] [--weights PATH]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))

from diffcredit.extractors import get_extractor  # noqa: E402
from diffcredit.extractors.inception import cached_weights  # noqa: E402
from diffcredit.properties import compute_all  # noqa: E402


class Images(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = torch.from_numpy(x)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--weights")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    weights = args.weights or (str(cached_weights()) if cached_weights().is_file() else None)
    if weights is None:
        from synthetic import write_random_inception

        weights = str(write_random_inception(Path(tempfile.mkdtemp()) / "inception.pth"))
        print("real weights not found: a random Inception of the real architecture")
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (8, 3, 32, 32))
    gen = np.clip(base[rng.integers(0, 8, args.images)] + rng.normal(0, 30, (args.images, 3, 32, 32)), 0, 255)
    real = np.clip(base[rng.integers(0, 8, args.images)] + rng.normal(0, 20, (args.images, 3, 32, 32)), 0, 255)
    gen, real = gen.astype(np.uint8), real.astype(np.uint8)
    device = torch.device(args.device)

    t0 = time.perf_counter()
    ext = get_extractor("inception")
    net = ext.load({"weights_path": weights}, None, device)
    f_gen = ext.extract(net, gen, args.batch)
    ref = ext.reference(ext.extract(net, real, args.batch))
    ours = compute_all(["inception_score", "fid", "precision", "recall"], {"inception": f_gen},
                       {"inception": ref}, {})
    t_ours = time.perf_counter() - t0

    import torch_fidelity

    t0 = time.perf_counter()
    theirs = torch_fidelity.calculate_metrics(
        input1=Images(gen), input2=Images(real), isc=True, fid=True, prc=True, cuda=device.type == "cuda",
        batch_size=args.batch, feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=weights, cache=False, verbose=False)
    t_theirs = time.perf_counter() - t0
    pairs = {"inception_score": "inception_score_mean", "fid": "frechet_inception_distance",
             "precision": "precision", "recall": "recall"}
    diff = {k: abs(ours[k] - theirs[v]) for k, v in pairs.items()}
    n = 2 * args.images
    print(f"{n} images (32x32 -> 299), batch {args.batch}, {args.device}, {args.threads} threads")
    print(f"images/s: diffcredit {n / t_ours:.2f}, torch-fidelity {n / t_theirs:.2f}; "
          f"ratio {t_theirs / t_ours:.3f}")
    for k, v in pairs.items():
        print(f"  {k}: diffcredit {ours[k]:.6f}  torch-fidelity {theirs[v]:.6f}  |diff| {diff[k]:.2e}")
    print(f"largest |diff| {max(diff.values()):.2e}")


if __name__ == "__main__":
    main()
