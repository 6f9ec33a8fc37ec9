"""The class-conditional latent family: latents and labels encoded once, the class
embedding and guidance of ddpm_cond on the ldm's latents, storage, and a whole run of
image folders (the label names the contributor) under sFT and the proxy strategy."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import planned, run, write_config
from diffcredit.artifacts import atomic_dir
from diffcredit.config import validate
from diffcredit.families import get_family
from diffcredit.training import TrainSpec, train
from tiny_models import colour_folders, kl_autoencoder

FAMILY = get_family("ldm_cond")
CPU = torch.device("cpu")
SCHEMA = __import__("pathlib").Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    ae = kl_autoencoder(tmp_path_factory.mktemp("ae") / "kl")
    cfg = validate({"model": {"family": "ldm_cond", "autoencoder": str(ae), "block_out_channels": [16, 32],
                              "norm_num_groups": 8, "num_train_timesteps": 50, "condition_dropout": 0.2}},
                   SCHEMA)["model"]
    spec = FAMILY.resolve(cfg, {"resolution": 16, "channels": 3, "classes": 3})
    return cfg, spec, FAMILY.runtime(cfg)


def test_the_spec_is_the_ldms_with_a_null_row(setup):
    cfg, spec, _ = setup
    ldm = get_family("ldm").resolve(cfg, {"resolution": 16, "channels": 3})
    assert spec["unet"] == {**ldm["unet"], "num_class_embeds": 4}
    assert spec["latent_scale"] == 0.5 and spec["classes"] == 3 and spec["condition_dropout"] == 0.2
    with pytest.raises(ValueError, match="ldm_cond needs labelled data"):
        FAMILY.resolve(cfg, {"resolution": 16, "channels": 3, "classes": 0})


def test_training_on_encoded_latents_remembers_labels_and_round_trips(setup, tmp_path):
    _, spec, runtime = setup
    rng = np.random.default_rng(0)
    arrays = {"images": rng.integers(0, 256, (12, 3, 16, 16), dtype=np.uint8),
              "labels": np.array([0, 2] * 6, dtype=np.int64)}
    enc = FAMILY.encode_shard(FAMILY.encode_spec(spec), arrays, CPU, 4, runtime)
    assert enc["latents"].shape == (12, 4, 8, 8) and np.array_equal(enc["labels"], arrays["labels"])
    m = FAMILY.init(spec, runtime)
    data = {"latents": enc["latents"], "labels": enc["labels"]}
    x0, y = FAMILY.batch(m, {k: torch.from_numpy(v) for k, v in data.items()}, torch.tensor([0, 3]))
    assert x0.shape == (2, 4, 8, 8) and y.tolist() == [0, 2]
    train(FAMILY, m, data, TrainSpec(steps=3, batch_size=4, lr=1e-3, seed=0), CPU, torch.float32, progress=False)
    assert m.extras["label_counts"] == {0: 6, 2: 6}
    with atomic_dir(tmp_path / "m") as tmp:
        FAMILY.save(m, tmp)
    again = FAMILY.load(tmp_path / "m", runtime)
    assert again.extras["label_counts"] == {0: 6, 2: 6} and again.extras["latent"] == m.extras["latent"]
    gen = {"n_images": 3, "inference_steps": 3, "batch_size": 2, "seed": 1, "eta": 0.0, "guidance_scale": 2.0}
    a = FAMILY.sample(m, 3, gen, CPU, torch.float32, progress=False)
    b = FAMILY.sample(again, 3, gen, CPU, torch.float32, progress=False)
    assert a.shape == (3, 3, 16, 16) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    # The images are the autoencoder's decoding of the guided latents.
    z = FAMILY.denoise(m, 3, gen, CPU, torch.float32, progress=False)
    np.testing.assert_array_equal(FAMILY.decode(m, z, CPU, 2), a)


@pytest.mark.workflow
def test_ldm_cond_end_to_end_under_sft_and_the_proxy_strategy(tmp_path):
    colour_folders(tmp_path / "data", n_contributors=3, per=8)
    cfg = write_config(tmp_path / "c.yaml", {
        "results": "results",
        "data": {"source": "folder", "root": str(tmp_path / "data"), "resolution": 16, "channels": 3},
        "model": {"family": "ldm_cond", "autoencoder": str(kl_autoencoder(tmp_path / "kl")),
                  "block_out_channels": [16, 32], "norm_num_groups": 8, "num_train_timesteps": 100},
        "generate": {"n_images": 24, "inference_steps": 4, "batch_size": 24, "guidance_scale": 1.5},
        "estimators": [{"method": "stratified", "budget": 6}, {"method": "stratified", "budget": 6,
                                                                "strategy": "proxy"}],
        "attributions": [{"method": "dtrak", "timesteps": 2}],  # contributor labels, encoded labelled targets
    })
    run(tmp_path, configs=[cfg])
    v = pd.read_csv(tmp_path / "results" / "values.csv")
    assert set(v["strategy"]) == {"sft", "proxy", "full"} and np.isfinite(v["value"]).all()
    assert set(v.loc[v["strategy"] == "full", "method"]) == {"dtrak"}
    assert sorted(set(v["contributor"])) == ["c0", "c1", "c2"]
    # Image folders have no labels: the condition is the contributor (data.condition: auto), one index
    # each, so every model (trained or conditioned) remembers exactly its members' indices.
    results = tmp_path / "results"
    index = {}
    full = next((results / "models" / "full").iterdir())
    assert json.loads((full / "labels.json").read_text())["label_counts"] == {"0": 8, "1": 8, "2": 8}
    folders = list(results.glob("coalitions/*/conditioned")) + list(results.glob("coalitions/*/model"))
    assert len(folders) > 4
    for folder in folders:
        members = json.loads((folder / "training.json").read_text())["members"]
        counts = json.loads((folder / "labels.json").read_text())["label_counts"]
        assert len(counts) == len(members) and all(n == 8 for n in counts.values())
        if len(members) == 1:
            index.setdefault(members[0], set()).update(counts)
    assert all(len(v) == 1 for v in index.values()) and len(set.union(*index.values())) == len(index)
    assert len(list((tmp_path / "results" / "data" / "encoded").glob("*.npz"))) == 3
    assert sum(planned(tmp_path, configs=[cfg]).values()) == 0
