"""The same guarantees on a GPU: reported as skipped (with the reason) where there
is none; run on a GPU machine with `pytest tests/test_cuda.py`."""

import numpy as np
import pytest
import torch

from diffcredit.families import get_family
from diffcredit.families.base import Model
from diffcredit.families.ddpm import build_unet, scheduler_config, unet_config
from diffcredit.training import TrainSpec, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DDPM = get_family("ddpm")
MODEL = {"block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 8, "num_train_timesteps": 100,
         "attention_levels": [1], "attention_head_dim": 8}


def model():
    return Model(build_unet(unet_config(MODEL, 16, 3), 0), scheduler_config(MODEL))


def data():
    return np.random.default_rng(0).integers(0, 256, (64, 3, 16, 16), dtype=np.uint8)


@pytest.mark.parametrize("precision", [torch.float32, torch.bfloat16, torch.float16])
def test_training_on_cuda_learns_and_resumes_exactly(tmp_path, precision):
    cuda = torch.device("cuda")
    spec = TrainSpec(steps=40, batch_size=16, lr=2e-3, ema_decay=0.9, seed=0)
    a = model()
    stats = train(DDPM, a, data(), spec, cuda, precision, progress=False)
    assert np.isfinite(stats["final_loss"])
    # A run that finds the checkpoint of step 20 (as a killed one would) ends with
    # the uninterrupted run's weights.
    c = model()
    train(DDPM, c, data(), spec, cuda, precision, tmp_path, checkpoint_every=20, progress=False)
    d = model()
    resumed = train(DDPM, d, data(), spec, cuda, precision, tmp_path, checkpoint_every=20, progress=False)
    assert resumed["start_step"] == 20
    for k, v in c.net.state_dict().items():
        assert torch.equal(v, d.net.state_dict()[k]), k


def test_sampling_on_cuda_is_seeded():
    cuda = torch.device("cuda")
    spec = {"inference_steps": 5, "seed": 3, "batch_size": 8, "eta": 0.0}
    a = DDPM.sample(model(), 8, spec, cuda, torch.float32, progress=False)
    b = DDPM.sample(model(), 8, spec, cuda, torch.float32, progress=False)
    assert np.array_equal(a, b)
