"""Properties, checked against independent computations, and the classifier."""

import numpy as np
import pytest
import torch

from diffcredit.data import load_digits_arrays
from diffcredit.extractors.classifier_net import features_and_probs, train_classifier
from diffcredit.properties import PROPERTIES, class_entropy, compute_all, frechet_distance, get


def one_hot(classes, k=10):
    p = np.zeros((len(classes), k))
    p[np.arange(len(classes)), classes] = 1.0
    return {"probs": p}


def test_class_entropy_of_known_shares():
    assert class_entropy(one_hot(np.arange(100) % 10), {}, {}) == pytest.approx(np.log(10))
    assert class_entropy(one_hot(np.full(50, 3)), {}, {}) == 0.0
    shares = np.array([0.75, 0.25])
    expected = -(shares * np.log(shares)).sum()
    assert class_entropy(one_hot(np.array([0, 0, 0, 1] * 5)), {}, {}) == pytest.approx(expected)


def test_frechet_distance_matches_closed_form():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(400, 5))
    mu, sigma = feats.mean(0), np.cov(feats, rowvar=False)
    assert frechet_distance(feats, {"mu": mu, "sigma": sigma}) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    assert frechet_distance(feats, {"mu": mu + shift, "sigma": sigma}) == pytest.approx(shift @ shift, rel=1e-6)
    # Scaling the reference covariance by 4 adds trace(S) + 4 trace(S) - 2 * 2 trace(S) = trace(S).
    assert frechet_distance(feats, {"mu": mu, "sigma": 4 * sigma}) == pytest.approx(np.trace(sigma), rel=1e-5)


def test_frechet_distances_agree_with_torch_fidelity():
    """classifier_fd (numpy) and fid (torch-fidelity) compute the same formula."""
    rng = np.random.default_rng(3)
    gen, real = rng.normal(size=(300, 6)), rng.normal(loc=0.4, scale=1.3, size=(400, 6))
    ref = {"mu": real.mean(0), "sigma": np.cov(real, rowvar=False)}
    ours = compute_all(["classifier_fd", "fid"], {"classifier": {"features": gen}, "inception": {"pool3": gen}},
                       {"classifier": ref, "inception": ref}, {})
    assert ours["classifier_fd"] == pytest.approx(ours["fid"], rel=1e-10)
    assert ours["fid"] > 0.5


def test_inception_score_matches_its_definition():
    """exp(E KL(p(y|x) || p(y))) per split, averaged over 10 splits of a fixed shuffle."""
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3.0, size=(200, 7))
    got = compute_all(["inception_score"], {"inception": {"logits": logits}}, {"inception": {}}, {})["inception_score"]
    perm = np.random.RandomState(2020).permutation(200)
    p = torch.from_numpy(logits[perm]).softmax(1).numpy()
    scores = []
    for i in range(10):
        chunk = p[i * 20 : (i + 1) * 20]
        q = chunk.mean(0)
        scores.append(np.exp((chunk * (np.log(chunk) - np.log(q))).sum(1).mean()))
    assert got == pytest.approx(np.mean(scores), rel=1e-10)


def brute_force_precision_recall(gen, real, k=3):
    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # the k-th neighbour besides itself

    r_real, r_gen = radii(real), radii(gen)
    d = np.linalg.norm(gen[:, None] - real[None], axis=-1)  # (gen, real)
    precision = (d <= r_real[None]).any(1).mean()
    recall = (d.T <= r_gen[None]).any(1).mean()
    return precision, recall


def test_precision_and_recall_match_a_brute_force_computation():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(60, 4))
    gen = rng.normal(loc=0.7, scale=0.6, size=(50, 4))
    got = compute_all(["precision", "recall"], {"inception": {"pool3": gen}}, {"inception": {"pool3": real}}, {})
    p, r = brute_force_precision_recall(gen, real)
    assert (got["precision"], got["recall"]) == pytest.approx((p, r))
    assert 0 < got["precision"] < 1 and 0 < got["recall"] < 1


def test_registry_knows_directions_extractors_and_refuses_unknown_names():
    assert get("class_entropy").higher_is_better and not get("classifier_fd").higher_is_better
    assert {p: PROPERTIES[p].extractor for p in ("fid", "inception_score", "precision", "recall")} == dict.fromkeys(
        ("fid", "inception_score", "precision", "recall"), "inception")
    with pytest.raises(ValueError, match="unknown property 'sharpness'"):
        get("sharpness")


def test_digits_classifier_reaches_97_percent():
    images, labels = load_digits_arrays()
    spec = {"steps": 1500, "batch_size": 128, "lr": 0.003, "holdout": 0.2, "seed": 0}
    model, metrics = train_classifier(images, labels, spec, progress=False)
    assert metrics["heldout_accuracy"] >= 0.97
    assert metrics["n_test"] == round(0.2 * len(images))
    feats, probs = features_and_probs(model, images[:32])
    assert feats.shape == (32, 64) and np.allclose(probs.sum(1), 1.0)


def test_image_replicates_recompute_each_property_on_the_same_resampled_images():
    from diffcredit.properties import class_entropy, image_replicates

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=40)
    feats = {"classifier": {"probs": probs, "features": rng.normal(size=(40, 3))}}
    refs = {"classifier": {"mu": np.zeros(3), "sigma": np.eye(3)}}
    reps = image_replicates(["class_entropy", "classifier_fd", "fid"], feats, refs, {}, 7, seed=11)
    assert set(reps) == {"class_entropy", "classifier_fd"}  # fid is not resampled
    draws = np.random.default_rng(11).integers(0, 40, (7, 40))
    want = [class_entropy({"probs": probs[d]}, {}, {}) for d in draws]
    np.testing.assert_allclose(reps["class_entropy"], want)
    assert np.std(reps["class_entropy"]) > 0
    assert image_replicates(["class_entropy"], feats, refs, {}, 0, seed=1) == {}


@pytest.mark.parametrize("draws", ["shared", "own"])
def test_image_replicates_share_their_draws_across_models_or_not(tmp_path, draws):
    """shared: replicate b of every model's score resamples the same image indices (the
    models share their generation seeds); own: each score's draws are seeded by its key."""
    import json

    from diffcredit.artifacts import atomic_path
    from diffcredit.stages.scoring import SHARED_DRAWS_SEED, score

    n, reps = 40, 50
    rng = np.random.default_rng(7)
    found = {}
    for key in ("00000000000000aa", "00000000000000bb"):
        scores = rng.normal(5.0, 1.0, n).astype(np.float32)
        feats = tmp_path / f"{key}.npz"
        with atomic_path(feats, suffix=".npz", seal=True) as tmp:
            np.savez(tmp, **{"aesthetic.scores": scores})
        out = tmp_path / f"{key}.json"
        score({"key": key, "inputs": {"features": str(feats)}, "out": str(out),
               "spec": {"properties": ["aesthetic"], "options": {"image_bootstrap": reps, "image_draws": draws}}})
        seed = SHARED_DRAWS_SEED if draws == "shared" else int(key, 16)
        idx = np.random.default_rng(seed).integers(0, n, (reps, n))
        want = scores[idx].mean(axis=1)
        found[key] = json.loads(out.read_text())["properties"]["aesthetic"]["replicates"]
        np.testing.assert_allclose(found[key], want, rtol=1e-6)
