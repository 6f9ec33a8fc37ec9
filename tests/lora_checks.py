"""Checks the text LoRA families (sd_lora, sdxl_lora, flux_lora) share."""

from __future__ import annotations

import numpy as np
import torch

CPU = torch.device("cpu")


def bfloat16_base_round_trip(fam, cfg: dict, data: dict, full, cond, tmp_path) -> np.ndarray:
    """A model of `cfg` (model.dtype bfloat16) given `full`'s float32 adapter: frozen weights
    bfloat16, adapter float32; predictions near `full`'s (bfloat16 keeps about 3 digits);
    training moves the adapter; the saved model records its dtype and loads back in
    bfloat16 with the same outputs. Returns two images it samples."""
    from diffcredit.training import TrainSpec, train

    spec, runtime = fam.resolve(cfg, data), fam.runtime(cfg)
    model = fam.init(spec, runtime)
    assert {p.dtype for n, p in model.net.named_parameters() if "lora_" not in n} == {torch.bfloat16}
    assert {p.dtype for p in fam.trainable(model).values()} == {torch.float32}
    with torch.no_grad():
        for name, p in fam.trainable(model).items():
            p.copy_(fam.trainable(full)[name])
    x, t = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(4)), torch.tensor([50, 600])
    with torch.no_grad():
        low, high = fam.predict(model, x, t, cond), fam.predict(full, x, t, cond)
    assert low.dtype == torch.float32 and (low - high).norm() < 0.1 * high.norm()
    images = np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    enc = fam.encode_shard(fam.encode_spec(spec), {"images": images}, CPU, 4, runtime)
    before = {n: p.detach().clone() for n, p in fam.trainable(model).items()}
    train(fam, model, fam.training_data_from([enc]), TrainSpec(steps=3, batch_size=4, lr=1e-3, seed=0), CPU,
          progress=False)
    assert all(not torch.equal(before[n], p) for n, p in fam.trainable(model).items() if "lora_B" in n)
    fam.save(model, tmp_path)
    assert (tmp_path / "base_dtype.json").is_file()
    again = fam.load(tmp_path, runtime)
    assert {p.dtype for n, p in again.net.named_parameters() if "lora_" not in n} == {torch.bfloat16}
    with torch.no_grad():
        torch.testing.assert_close(fam.predict(again, x, t, cond), fam.predict(model, x, t, cond), rtol=0, atol=0)
    gen = fam.resolve_generate({"n_images": 2, "inference_steps": 2, "seed": 0, "batch_size": 2}, spec, cfg)
    sampled = fam.sample(again, 2, gen, CPU, torch.float32, progress=False)
    assert sampled.shape == (2, 3, 32, 32)
    return sampled
