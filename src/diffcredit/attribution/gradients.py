"""Per-sample gradient features of a diffusion model (TRAK, D-TRAK, DAS).

The feature of an item x0 (pixels, or latents with a text condition) is the gradient,
over every trainable parameter of the family, of an output function of the network's
prediction at K uniform timesteps t = 0, T/K, 2T/K, ..., each noised as the family
trains (its `noising`: x_t = a x0 + b noise) with one fixed draw per (seed, t) shared
by every item, training and generated alike:

    loss     mean over pixels of (prediction - family's target)^2   (TRAK)
    sq_norm  mean over pixels of prediction^2               (D-TRAK)
    mean     mean over pixels of prediction                 (DAS)

The gradient of the mean over the K timesteps is one backward pass per item
(torch.func: vmap of grad over items); DAS normalises each timestep's gradient to unit
norm before averaging (vmap of jacrev). Features are projected to `projection_dim`
with a seeded Gaussian matrix N(0, 1/d), generated on the CPU in blocks of parameters
(the same on every device), which keeps inner products in expectation; without a
projection they are the gradients themselves.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import timestep_grid  # noqa: F401 (part of this module's interface)

OUTPUTS = ("loss", "sq_norm", "mean")
BLOCK_ENTRIES = 1 << 24  # entries per generated block of the projection matrix (64 MiB; changes the matrix)


def fixed_noise(shape, seed: int, timesteps: list[int]) -> torch.Tensor:
    """(K, *shape): one standard normal draw per (seed, t), on the CPU."""
    from ..training import step_seed

    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(step_seed(seed, t)))
                        for t in timesteps])


class Projector:
    """x (B, P) -> x R (B, d), R with N(0, 1/d) entries generated block by block from `seed`."""

    def __init__(self, n_params: int, dim: int, seed: int):
        self.n_params, self.dim, self.seed = n_params, dim, seed
        self.rows = max(1, BLOCK_ENTRIES // dim)  # parameters per block

    def block(self, j: int, device) -> torch.Tensor:
        from ..training import step_seed

        rows = min(self.rows, self.n_params - j * self.rows)
        g = torch.Generator().manual_seed(step_seed(self.seed, j))
        return torch.randn((rows, self.dim), generator=g).div_(math.sqrt(self.dim)).to(device)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], self.dim, device=x.device, dtype=torch.float32)
        for j in range(math.ceil(self.n_params / self.rows)):
            a = j * self.rows
            out += x[:, a:a + self.rows].float() @ self.block(j, x.device)
        return out


def plain_attention(net) -> None:
    """Attention as explicit matmuls: vmap has no batching rule for the fused CPU kernel
    (it falls back to a slow loop over items)."""
    from diffusers.models.attention_processor import Attention, AttnProcessor

    try:
        from diffusers.models.attention import AttentionModuleMixin
    except ImportError:  # diffusers before its attention classes were split
        AttentionModuleMixin = ()

    for module in net.modules():
        if isinstance(module, Attention):
            module.set_processor(AttnProcessor())
        elif isinstance(module, AttentionModuleMixin):  # the newer attention classes (FLUX's)
            module.set_attention_backend("_native_math")


class _Predict(torch.nn.Module):
    """The family's prediction as a module over the network, for torch.func.functional_call."""

    def __init__(self, family, model):
        super().__init__()
        self.net = model.net
        self._family, self._model = family, model

    def forward(self, xt, t, cond):
        return self._family.predict(self._model, xt, t, cond)


class GradientFeaturizer:
    """Gradient features of items of one model under one featurizer spec and noise seed."""

    def __init__(self, family, model, spec: dict, seed: int, device, sample_shape):
        if spec["output"] not in OUTPUTS:
            raise ValueError(f"unknown output {spec['output']!r}; known: {OUTPUTS}")
        self.family, self.model, self.spec, self.device = family, model, spec, device
        model.net.to(device).eval()
        plain_attention(model.net)
        self.trainable = family.trainable(model)
        self.names = list(self.trainable)
        self.n_params = sum(p.numel() for p in self.trainable.values())
        self.params = {f"net.{n}": p.detach() for n, p in self.trainable.items()}
        self.wrapper = _Predict(family, model)
        ts = timestep_grid(family.num_timesteps(model), spec["timesteps"])
        self.t = torch.tensor(ts, device=device, dtype=torch.long)
        self.a, self.b = family.noising(model, self.t)
        self.eps = fixed_noise(tuple(sample_shape), seed, ts).to(device)
        dim = spec.get("projection_dim")
        self.projector = Projector(self.n_params, dim, spec["projection_seed"]) if dim else None

    @property
    def dim(self) -> int:
        return self.projector.dim if self.projector else self.n_params

    def _noised(self, x0):
        """(K, ...) noised copies of one item, and the K clean copies."""
        k = len(self.t)
        x = x0.unsqueeze(0).expand(k, *x0.shape)
        shape = (k,) + (1,) * x0.dim()
        return self.a.view(shape) * x + self.b.view(shape) * self.eps, x

    def outputs(self, params, x0, cond):
        """(K,) the output function at each timestep for one item."""
        from torch.func import functional_call

        xt, x = self._noised(x0)
        c = None if cond is None else cond.unsqueeze(0).expand(len(self.t), *cond.shape)
        pred = functional_call(self.wrapper, params, (xt, self.t, c)).float()
        kind = self.spec["output"]
        if kind == "loss":
            return self._loss(pred, x)
        if kind == "sq_norm":
            return pred.pow(2).flatten(1).mean(1)
        return pred.flatten(1).mean(1)

    def _loss(self, pred, x):
        """(K,) squared error of the K predictions against the family's training target."""
        target = self.family.target(self.model, x, self.eps, self.t)
        return (pred.float() - target.float()).pow(2).flatten(1).mean(1)

    def _flat(self, grads: dict, lead: int) -> torch.Tensor:
        return torch.cat([grads[f"net.{n}"].reshape(*grads[f"net.{n}"].shape[:lead], -1) for n in self.names], -1)

    def gradients(self, x0, cond) -> torch.Tensor:
        """(B, P) per-item gradients of the timestep-averaged output (each timestep's
        gradient at unit norm first when the spec says `normalize`)."""
        from torch.func import grad, jacrev, vmap

        in_dims = (None, 0, None if cond is None else 0)
        if not self.spec.get("normalize"):
            g = vmap(grad(lambda p, x, c: self.outputs(p, x, c).mean()), in_dims=in_dims)(self.params, x0, cond)
            return self._flat(g, 1)
        j = self._flat(vmap(jacrev(self.outputs), in_dims=in_dims)(self.params, x0, cond), 2)  # (B, K, P)
        return (j / j.norm(dim=-1, keepdim=True).clamp_min(1e-30)).mean(1)

    def features(self, x0, cond) -> torch.Tensor:
        g = self.gradients(x0.to(self.device), None if cond is None else cond.to(self.device))
        return self.projector.project(g) if self.projector else g.float()

    @torch.no_grad()
    def residuals(self, x0, cond) -> torch.Tensor:
        """(B,) root mean squared training residual over the K timesteps (DAS's r_i)."""
        x0 = x0.to(self.device)
        out = []
        for i in range(len(x0)):
            xt, x = self._noised(x0[i])
            c = None if cond is None else cond[i].to(self.device).unsqueeze(0).expand(len(self.t), *cond[i].shape)
            pred = self.family.predict(self.model, xt, self.t, c).float()
            out.append(self._loss(pred, x).mean().sqrt())
        return torch.stack(out)


def items_per_pass(n_params: int, timesteps: int, normalize: bool, budget_mb: int) -> int:
    """How many items' gradients fit in `budget_mb` at once."""
    per_item = 4 * n_params * (timesteps + 1 if normalize else 2)
    return max(1, int(budget_mb * 2**20 // per_item))


def featurize(family, model, data: dict, spec: dict, device, batch_size: int, progress: bool = True,
              scratch=None, residual: bool = False) -> dict:
    """Features of every item of `data` (a family's training arrays, as tensors):
    {"features": (S, n, d) float32[, "residual": (S, n)]}, one row block per noise seed.
    `scratch`: a folder where finished chunks are kept, so a killed job resumes."""
    from pathlib import Path

    from tqdm import tqdm

    n = family.n_items(data)
    x_probe, _ = family.batch(model, data, torch.arange(min(n, 1)))
    feats, res = [], []
    for seed in spec["seeds"]:
        f = GradientFeaturizer(family, model, spec, seed, device, x_probe.shape[1:])
        rows, rrows = [], []
        bar = tqdm(total=n, desc=f"features (seed {seed})", disable=not progress, mininterval=5.0)
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(n, start + batch_size))
            done = Path(scratch) / f"seed{seed}-{start}-{start + len(idx)}.npz" if scratch else None
            if done is not None and done.is_file():
                with np.load(done) as z:
                    rows.append(z["features"])
                    rrows.append(z["residual"])
            else:
                x0, cond = family.batch(model, data, idx)
                fx = f.features(x0, cond).cpu().numpy().astype(np.float32)
                rx = f.residuals(x0, cond).cpu().numpy().astype(np.float32) if residual else np.zeros(len(idx),
                                                                                                       np.float32)
                rows.append(fx)
                rrows.append(rx)
                if done is not None:
                    done.parent.mkdir(parents=True, exist_ok=True)
                    tmp = done.with_suffix(".tmp.npz")
                    np.savez(tmp, features=fx, residual=rx)
                    tmp.replace(done)
            bar.update(len(idx))
        bar.close()
        feats.append(np.concatenate(rows) if rows else np.zeros((0, f.dim), np.float32))
        res.append(np.concatenate(rrows) if rrows else np.zeros(0, np.float32))
    out = {"features": np.stack(feats)}
    if residual:
        out["residual"] = np.stack(res)
    return out
