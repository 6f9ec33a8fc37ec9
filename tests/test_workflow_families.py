"""The whole workflow for the latent families on tiny random models of the real
classes: an LDM on a VQ autoencoder judged by BLIP diversity, and Stable Diffusion
LoRA on captioned metadata judged by the CLIP aesthetic score and CLIP diversity."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest

from conftest import planned, run, write_config
from tiny_models import aesthetic_head, blip_model, clip_model, colour_folders, metadata_folder, sd_pipeline, vq_model

pytestmark = pytest.mark.workflow

SMALL = {"estimators": [{"method": "leverage", "budget": 4}],
         "generate": {"n_images": 24, "inference_steps": 4, "batch_size": 24}}


def values(workdir, results="results"):
    return pd.read_csv(workdir / results / "values.csv")


def test_ldm_end_to_end(tmp_path):
    colour_folders(tmp_path / "data", n_contributors=3, per=12)
    cfg = write_config(tmp_path / "ldm.yaml", {
        **SMALL,
        "results": "results",
        "data": {"source": "folder", "root": str(tmp_path / "data"), "resolution": 16, "channels": 3},
        "model": {"family": "ldm", "autoencoder": str(vq_model(tmp_path / "vq")), "latent_scale": 1.0,
                  "block_out_channels": [16, 32], "norm_num_groups": 8, "num_train_timesteps": 100},
        "properties": ["diversity_entropy"],
        "features": {"blip": {"model": str(blip_model(tmp_path / "blip"))}, "diversity": {"k": 4}},
        "attributions": [{"method": "trak", "timesteps": 4}, {"method": "dtrak", "timesteps": 4},
                         {"method": "das", "timesteps": 4, "projection_dim": 16}, {"method": "pixel_similarity",
                                                                                  "reduce": "max"}],
    })
    run(tmp_path, configs=[cfg])
    v = values(tmp_path)
    assert sorted(set(v["contributor"])) == ["c0", "c1", "c2"] and set(v["property"]) == {"diversity_entropy"}
    assert set(v["method"]) == {"leverage", "trak", "dtrak", "das", "pixel_similarity"}
    assert np.isfinite(v["credit"]).all()
    # Latents were encoded once per contributor and the samples decoded to images.
    encoded = sorted((tmp_path / "results" / "data" / "encoded").glob("*.npz"))
    assert len(encoded) == 3
    with np.load(encoded[0]) as z:
        assert z["latents"].shape[1:] == (3, 8, 8)
    samples = next((tmp_path / "results" / "coalitions").glob("*/samples/*.npz"))
    with np.load(samples) as z:
        assert z["images"].shape == (24, 3, 16, 16)
    assert sum(planned(tmp_path, configs=[cfg]).values()) == 0


def test_sd_lora_end_to_end_and_a_changed_caption(tmp_path):
    """sFT and the proxy game (the full adapter sampled with prompts drawn from the
    coalition's own captions: the empty coalition with the empty prompt, the full one
    with everyone's), three properties, gradient and similarity attributions."""
    root = metadata_folder(tmp_path / "data", {"monet": 4, "degas": 4, "manet": 4})
    cfg = write_config(tmp_path / "sd.yaml", {
        **SMALL,
        "estimators": [*SMALL["estimators"], {**SMALL["estimators"][0], "strategy": "proxy"}],
        "results": "results",
        "data": {"source": "folder", "root": str(root), "contributor_column": "artist", "caption_column": "text",
                 "resolution": 32, "channels": 3},
        "model": {"family": "sd_lora", "pretrained": str(sd_pipeline(tmp_path / "pipe")), "lora": {"rank": 4}},
        "generate": {**SMALL["generate"], "prompts": ["a painting", "a sketch"], "guidance_scale": 3.0},
        "properties": ["aesthetic", "aesthetic_q90", "diversity_entropy"],
        "features": {"clip": {"model": str(clip_model(tmp_path / "clip"))},
                     "aesthetic": {"head": str(aesthetic_head(tmp_path / "head.pth"))},
                     "diversity": {"encoder": "clip", "k": 4}},
        "attributions": [{"method": "dtrak", "timesteps": 2}, {"method": "das", "timesteps": 2},
                         {"method": "clip_similarity", "reduce": "mean"}],
    })
    run(tmp_path, configs=[cfg])
    v = values(tmp_path)
    assert set(v["property"]) == {"aesthetic", "aesthetic_q90", "diversity_entropy"}
    assert set(v["method"]) == {"leverage", "dtrak", "das", "clip_similarity"}
    assert set(v.loc[v["method"] == "leverage", "strategy"]) == {"sft", "proxy"}
    assert np.isfinite(v["credit"]).all()
    assert sorted(set(v["contributor"])) == ["degas", "manet", "monet"]
    full = next((tmp_path / "results" / "models" / "full").iterdir()) / "adapter_model.safetensors"
    sizes = set()
    for folder in (tmp_path / "results" / "coalitions").glob("*/conditioned"):
        members = json.loads((folder / "training.json").read_text())["members"]
        assert json.loads((folder / "captions.json").read_text()) == {f"a painting by {m}": 4 for m in members}
        assert (folder / "adapter_model.safetensors").stat().st_ino == full.stat().st_ino
        sizes.add(len(members))
    assert {0, 3} <= sizes and len(sizes) > 2  # the anchors are conditioned too
    # Coalition models are adapters (safetensors + peft config), never a copy of the UNet.
    models = list((tmp_path / "results" / "coalitions").glob("*/model"))
    assert models
    for m in models:
        names = {p.name for p in m.iterdir()}
        assert {"adapter_model.safetensors", "adapter_config.json"} <= names
        assert not any(n.startswith("diffusion_pytorch_model") for n in names)
        assert (m / "adapter_model.safetensors").stat().st_size < 500_000
    # One CLIP pass serves both properties: the features hold CLIP's embeddings once.
    feats = next((tmp_path / "results" / "coalitions").glob("*/features/*.npz"))
    with np.load(feats) as z:
        assert sorted(z.files) == ["aesthetic.scores", "clip.embeds", "diversity.embeds"]
    assert sum(planned(tmp_path, configs=[cfg]).values()) == 0
    # A new caption for one image re-prepares and re-encodes only its contributor's shard.
    rows = list(csv.DictReader(open(root / "metadata.csv")))
    rows[0]["text"] = "a study in blue"
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    jobs = planned(tmp_path, configs=[cfg])
    assert jobs["prepare_shard"] == 1 and jobs["encode"] == 1
    assert "init_model" not in jobs


def test_ddpm_cond_end_to_end_with_the_tree_estimator_and_the_proxy_strategy(tmp_path):
    """A class-conditional DDPM on the tiny digits (contributors are classes, so the
    label names the contributor), guided sampling, the tree surrogate and its pair
    interactions, on sFT coalitions and on proxy ones (the full model sampled with the
    coalition's labels, nothing trained): every model remembers exactly its members'
    labels, and a proxy model's weights are the full model's."""
    from safetensors.numpy import load_file

    cfg = write_config(tmp_path / "cond.yaml", {
        "results": "results",
        "model": {"family": "ddpm_cond", "condition_dropout": 0.2},
        "generate": {"guidance_scale": 2.0},
        "estimators": [{"method": "tree", "budget": 8, "n_boot": 0},  # a fit is ~0.3 s: no resamples here
                       {"method": "tree", "budget": 8, "n_boot": 0, "strategy": "proxy"}],
        "attributions": [{"method": "pixel_similarity", "reduce": "max"}],
    })
    run(tmp_path, configs=[cfg])
    v = values(tmp_path)
    assert set(v["method"]) == {"tree", "pixel_similarity"} and np.isfinite(v["credit"]).all()
    assert set(v.loc[v["method"] == "tree", "strategy"]) == {"sft", "proxy"}
    results = tmp_path / "results"
    trained = [p.parent for p in results.glob("**/model/training.json")] + \
        [p.parent for p in (results / "models").glob("**/training.json")]
    proxies = [p.parent for p in results.glob("coalitions/*/conditioned/training.json")]
    # One model per distinct coalition of the design (a kernel design may repeat one), under each strategy;
    # besides them, the full and the pruned model.
    coalitions = len(list(results.glob("**/model/training.json")))
    assert 0 < coalitions <= 8 and len(proxies) == coalitions and len(trained) == coalitions + 2
    for folder in trained + proxies:
        members = json.loads((folder / "training.json").read_text())["members"]
        counts = json.loads((folder / "labels.json").read_text())["label_counts"]
        assert sorted(map(int, counts)) == sorted(int(m.removeprefix("digit")) for m in members)
    full = next((results / "models" / "full").iterdir()) / "diffusion_pytorch_model.safetensors"
    weights = load_file(full)
    for folder in proxies:
        assert json.loads((folder / "training.json").read_text())["steps"] == 0
        proxy = load_file(folder / "diffusion_pytorch_model.safetensors")
        assert proxy.keys() == weights.keys() and all(np.array_equal(proxy[k], weights[k]) for k in weights)
        # ...stored once: the conditioned model's weights are a hard link to the full model's file
        assert (folder / "diffusion_pytorch_model.safetensors").stat().st_ino == full.stat().st_ino
    properties = v.loc[v["method"] == "tree", "property"].nunique()
    for found in (results / "values").glob("*/interactions.csv"):
        pairs = pd.read_csv(found)
        assert set(pairs["index"]) == {"tree"} and len(pairs) == 6 * properties  # 6 pairs of 4 players
    assert sum(planned(tmp_path, configs=[cfg]).values()) == 0
