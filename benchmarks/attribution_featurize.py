"""Featurization throughput and peak memory of the gradient attribution methods against
the same computation in MadryLab's `traker` (0.3), on the same model and items.

Both compute, per item, the gradient over every parameter of the embedded default's
UNet (config.yaml) of the diffusion loss averaged over K uniform timesteps with fixed
noise (TRAK's output function for diffusion models), with torch.func (vmap of grad),
then project it to `--dim` with a Gaussian matrix generated in blocks on the device:
diffcredit's GradientFeaturizer and Projector; traker's FunctionalGradientComputer
(with a model output class for the diffusion loss) and BasicProjector (its CPU
projector; the CUDA one needs the fast_jl extension). Each runs in its own process
(peak memory = that process's maximum resident set), alternating, `--repeats` times;
the median items per second over the timed batches (the first batch excluded) is
reported. The projected features of the two are compared through their Gram
matrices, which a projection keeps in expectation.

    python benchmarks/attribution_featurize.py [--items 256] [--batch 64] [--timesteps 10]
        [--dim 1024] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from diffcredit.attribution.gradients import GradientFeaturizer  # noqa: E402
from diffcredit.families import get_family  # noqa: E402

DDPM = get_family("ddpm")


def default_model():
    model = yaml.safe_load((REPO / "config.yaml").read_text())["model"]
    model.setdefault("seed", 0)
    return DDPM.init(DDPM.resolve(model, {"resolution": 8, "channels": 1}))


def items(n: int) -> torch.Tensor:
    from sklearn.datasets import load_digits

    x = load_digits().images[:n].astype(np.float32) / 16.0 * 2 - 1
    return torch.from_numpy(x[:, None])


def run_diffcredit(args) -> tuple[list[float], np.ndarray]:
    model = default_model()
    spec = {"output": "loss", "normalize": False, "timesteps": args.timesteps, "projection_dim": args.dim,
            "projection_seed": 0}
    f = GradientFeaturizer(DDPM, model, spec, 0, torch.device("cpu"), (1, 8, 8))
    x = items(args.items)
    times, out = [], []
    for start in range(0, len(x), args.batch):
        t0 = time.perf_counter()
        out.append(f.features(x[start:start + args.batch], None))
        times.append(time.perf_counter() - t0)
    return times, torch.cat(out).numpy()


def traker_gradients(model, timesteps: int):
    """traker's per-sample gradient computer for diffcredit's timestep-averaged loss."""
    from trak.gradient_computers import FunctionalGradientComputer
    from trak.modelout_functions import AbstractModelOutput

    # The same timesteps, noise and loss as diffcredit's (one draw per timestep).
    ref = GradientFeaturizer(DDPM, model, {"output": "loss", "normalize": False, "timesteps": timesteps,
                                           "projection_dim": None, "projection_seed": 0},
                             0, torch.device("cpu"), (1, 8, 8))
    a, b, t, eps = ref.a.view(-1, 1, 1, 1), ref.b.view(-1, 1, 1, 1), ref.t, ref.eps
    net = model.net

    class DiffusionLoss(AbstractModelOutput):
        def __init__(self):
            pass

        def get_output(self, module, weights, buffers, image):
            x = image.unsqueeze(0).expand(len(t), *image.shape)
            pred = torch.func.functional_call(module, (weights, buffers), (a * x + b * eps, t)).sample
            return (pred - eps).pow(2).flatten(1).mean(1).mean()

        def get_out_to_loss_grad(self, module, weights, buffers, batch):
            return torch.ones(len(batch[0]), 1)

    n_params = sum(p.numel() for p in net.parameters())
    computer = FunctionalGradientComputer(net, DiffusionLoss(), n_params, torch.float32, torch.device("cpu"))

    def flat(x):
        g = computer.compute_per_sample_grad((x,))
        return torch.cat([g[n].reshape(len(g[n]), -1) for n in dict(net.named_parameters())], dim=1).detach()

    return flat, n_params


def run_traker(args) -> tuple[list[float], np.ndarray]:
    from trak.projectors import BasicProjector, ProjectionType

    flat, n_params = traker_gradients(default_model(), args.timesteps)
    proj = BasicProjector(n_params, args.dim, 0, ProjectionType.normal, torch.device("cpu"))
    x = items(args.items)
    times, out = [], []
    for start in range(0, len(x), args.batch):
        t0 = time.perf_counter()
        out.append(proj.project(flat(x[start:start + args.batch]), model_id=0).detach())
        times.append(time.perf_counter() - t0)
    return times, torch.cat(out).numpy()


def child(args) -> None:
    torch.set_num_threads(args.threads)
    times, feats = (run_diffcredit if args.impl == "diffcredit" else run_traker)(args)
    np.save(args.out, feats)
    per_item = [args.batch / s for s in times[1:]] or [args.batch / times[0]]
    print(json.dumps({"items_per_s": statistics.median(per_item),
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--timesteps", type=int, default=10)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--impl", choices=["diffcredit", "traker"])
    p.add_argument("--out")
    args = p.parse_args()
    if args.impl:
        return child(args)
    results = {"diffcredit": [], "traker": []}
    base = [sys.executable, __file__, "--items", str(args.items), "--batch", str(args.batch), "--timesteps",
            str(args.timesteps), "--dim", str(args.dim), "--threads", str(args.threads)]
    tmp = Path("/tmp")
    for _ in range(args.repeats):
        for impl in results:
            out = subprocess.run(base + ["--impl", impl, "--out", str(tmp / f"bench_{impl}.npy")], check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1]
            results[impl].append(json.loads(out))
    # The same gradients before projection (a few items).
    model = default_model()
    exact = GradientFeaturizer(DDPM, model, {"output": "loss", "normalize": False, "timesteps": args.timesteps,
                                             "projection_dim": None, "projection_seed": 0}, 0, torch.device("cpu"),
                               (1, 8, 8)).gradients(items(4), None)
    other = traker_gradients(model, args.timesteps)[0](items(4))
    grad_err = float((exact - other).norm() / other.norm())
    ours, theirs = np.load(tmp / "bench_diffcredit.npy"), np.load(tmp / "bench_traker.npy")
    g1, g2 = ours @ ours.T, theirs @ theirs.T
    iu = np.triu_indices(len(g1))
    n_params = sum(p.numel() for p in default_model().net.parameters())
    print(f"model: the default UNet ({n_params:,} parameters); {args.items} digits, batch {args.batch}, "
          f"K = {args.timesteps}, projection {args.dim}, {args.threads} threads, CPU, {args.repeats} repeats")
    rate = {k: statistics.median(r["items_per_s"] for r in v) for k, v in results.items()}
    peak = {k: statistics.median(r["peak_mib"] for r in v) for k, v in results.items()}
    for k in results:
        print(f"{k:>10}: {rate[k]:7.1f} items/s  peak {peak[k]:7.0f} MiB  (runs: "
              + ", ".join(f"{r['items_per_s']:.1f}" for r in results[k]) + ")")
    print(f"throughput ratio diffcredit / traker: {rate['diffcredit'] / rate['traker']:.2f}; "
          f"peak memory ratio: {peak['diffcredit'] / peak['traker']:.2f}")
    print(f"unprojected gradients of 4 items: relative difference {grad_err:.1e}")
    print(f"Gram matrices of the two projections (independent random matrices): Pearson "
          f"{np.corrcoef(g1[iu], g2[iu])[0, 1]:.4f}")


if __name__ == "__main__":
    main()
