"""Properties and the scoring classifier."""

import numpy as np
import pytest

from diffcredit.classifier import features_and_probs, train_classifier
from diffcredit.data import load_digits_arrays
from diffcredit.properties import PROPERTIES, class_entropy, frechet_distance, get


def one_hot(classes, k=10):
    p = np.zeros((len(classes), k))
    p[np.arange(len(classes)), classes] = 1.0
    return p


def test_class_entropy_of_known_shares():
    assert class_entropy(None, one_hot(np.arange(100) % 10), {}) == pytest.approx(np.log(10))
    assert class_entropy(None, one_hot(np.full(50, 3)), {}) == 0.0
    # 3/4 of one class, 1/4 of another.
    shares = np.array([0.75, 0.25])
    expected = -(shares * np.log(shares)).sum()
    assert class_entropy(None, one_hot(np.array([0, 0, 0, 1] * 5)), {}) == pytest.approx(expected)


def test_frechet_distance_matches_closed_form():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(400, 5))
    mu, sigma = feats.mean(0), np.cov(feats, rowvar=False)
    assert frechet_distance(feats, None, {"mu": mu, "sigma": sigma}) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    assert frechet_distance(feats, None, {"mu": mu + shift, "sigma": sigma}) == pytest.approx(shift @ shift, rel=1e-6)
    # Scaling the reference covariance by 4 adds trace(S) + 4 trace(S) - 2 * 2 trace(S) = trace(S).
    assert frechet_distance(feats, None, {"mu": mu, "sigma": 4 * sigma}) == pytest.approx(np.trace(sigma), rel=1e-5)


def test_registry_knows_directions_and_refuses_unknown_names():
    assert get("class_entropy").higher_is_better and not get("fid").higher_is_better
    assert set(PROPERTIES) >= {"class_entropy", "fid"}
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
