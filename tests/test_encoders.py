"""CLIP and BLIP features, the aesthetic head and the diversity clusters, each
against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffcredit.extractors import get_extractor, in_order
from diffcredit.extractors.base import CLIP_MEAN, CLIP_STD
from diffcredit.extractors.diversity import assign, ward_clusters
from diffcredit.properties import compute_all
from tiny_models import aesthetic_head, blip_model, clip_model


@pytest.fixture(scope="module")
def enc(tmp_path_factory):
    root = tmp_path_factory.mktemp("enc")
    return {"clip": clip_model(root / "clip"), "blip": blip_model(root / "blip"),
            "head": aesthetic_head(root / "h.pth")}


def images(n=6, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def normalised(x):
    m, s = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (torch.from_numpy(x).float() / 255 - m) / s


def run(name, folder, x):
    ext = get_extractor(name)
    spec = ext.resolve({"model": str(folder)}, {})
    state = ext.load({**spec, **ext.runtime({"model": str(folder)})}, None, torch.device("cpu"))
    return ext.extract(state, x, batch_size=4)["embeds"]


def test_clip_embeddings_are_the_models_image_features(enc):
    from transformers import CLIPModel

    x = images()
    model = CLIPModel.from_pretrained(enc["clip"]).eval()
    with torch.no_grad():
        want = model.get_image_features(pixel_values=normalised(x))
    want = getattr(want, "pooler_output", want)
    np.testing.assert_allclose(run("clip", enc["clip"], x), want.numpy(), rtol=1e-4, atol=1e-5)


def test_blip_embeddings_are_the_vision_models_pooled_output(enc):
    from transformers import BlipForQuestionAnswering

    x = images()
    vision = BlipForQuestionAnswering.from_pretrained(enc["blip"]).vision_model.eval()
    with torch.no_grad():
        want = vision(pixel_values=normalised(x)).pooler_output
    np.testing.assert_allclose(run("blip", enc["blip"], x), want.numpy(), rtol=1e-4, atol=1e-5)


def test_smaller_images_are_resized_to_the_encoders_input(enc):
    small = images(size=16)
    big = torch.nn.functional.interpolate(torch.from_numpy(small).float(), size=(32, 32), mode="bicubic",
                                          antialias=True).clamp(0, 255).round().to(torch.uint8).numpy()
    a, b = run("clip", enc["clip"], small), run("clip", enc["clip"], big)
    assert a.shape == (6, 16)
    np.testing.assert_allclose(a, b, atol=0.05 * np.abs(b).max())


def test_aesthetic_scores_are_the_linear_head_on_normalised_embeddings(enc):
    ext = get_extractor("aesthetic")
    state = ext.load({"head_path": str(enc["head"])}, None, "cpu")
    e = np.random.default_rng(1).normal(size=(7, 16)).astype(np.float32)
    head = torch.nn.Linear(16, 1)
    head.load_state_dict(torch.load(enc["head"], weights_only=True))
    with torch.no_grad():
        t = torch.from_numpy(e).double()
        want = head.double()(t / t.norm(dim=1, keepdim=True)).squeeze(1).numpy()
    scores = ext.derive(state, {"embeds": e})["scores"]
    np.testing.assert_allclose(scores, want, rtol=1e-10)
    values = compute_all(["aesthetic", "aesthetic_q90"], {"aesthetic": {"scores": scores}}, {}, {})
    assert values["aesthetic"] == pytest.approx(want.mean())
    assert values["aesthetic_q90"] == pytest.approx(np.quantile(want, 0.9))


def blobs(k=4, per=10, dim=8, seed=0, spread=0.05):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 3
    x = np.concatenate([c + spread * rng.normal(size=(per, dim)) for c in centres])
    return x, np.repeat(np.arange(k), per), centres


def test_ward_clusters_recover_separated_groups():
    x, truth, _ = blobs()
    labels = ward_clusters(x, 4)
    # The same partition up to renaming.
    pairs = {(int(a), int(b)) for a, b in zip(truth, labels)}
    assert len(pairs) == 4 and len({a for a, _ in pairs}) == 4 and len({b for _, b in pairs}) == 4
    with pytest.raises(ValueError, match="k is 50 but the reference set has 40"):
        ward_clusters(x, 50)


def test_diversity_entropy_in_bits_of_the_cluster_shares():
    x, truth, centres = blobs()
    clusters = ward_clusters(x, 4)
    rng = np.random.default_rng(3)
    # 6 samples near blob 0, 2 near blob 1: shares 3/4, 1/4 over the blobs.
    gen = np.concatenate([centres[0] + 0.05 * rng.normal(size=(6, 8)), centres[1] + 0.05 * rng.normal(size=(2, 8))])
    got = assign(gen, x, clusters)
    # Independent assignment: the cluster with the highest mean dot product with its members.
    for g, c in zip(gen, got):
        means = [np.mean(x[clusters == j] @ g) for j in range(4)]
        assert c == int(np.argmax(means))
    value = compute_all(["diversity_entropy"], {"diversity": {"embeds": gen}},
                        {"diversity": {"embeds": x, "clusters": clusters}}, {})["diversity_entropy"]
    assert value == pytest.approx(-(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25)))


def test_derived_extractors_follow_the_encoder_they_use():
    specs = {"aesthetic": {}, "diversity": {"encoder": "clip", "k": 3}, "clip": {}}
    order = in_order(["diversity", "aesthetic"], specs)
    assert order.index("clip") < order.index("diversity") and order.index("clip") < order.index("aesthetic")
    assert sorted(order) == ["aesthetic", "clip", "diversity"]
