"""A small CNN the workflow trains on the reference images (their labels), or on
contributor identity when the reference is unlabelled: its penultimate features
and class probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import CLASSIFIER_CONFIG, Extractor, mean_and_covariance


class Classifier(Extractor):
    name = "classifier"
    trained = True

    def resolve(self, cfg: dict, reference: dict, cache=None) -> dict:
        n = reference["n_classes"] if reference["labelled"] else reference["n_contributors"]
        if n < 2:
            what = "labelled classes in the reference set" if reference["labelled"] else "contributors"
            raise ValueError(
                f"the classifier extractor needs at least 2 classes to learn, found {n} {what}; "
                "use a labelled reference set or a property that needs no classifier"
            )
        return {k: v for k, v in cfg.items() if k != "min_accuracy"}

    def training_settings(self, cfg: dict) -> dict:
        """What the network's training job needs besides the keyed spec."""
        return {"min_accuracy": cfg["min_accuracy"]}

    def check_network(self, cfg: dict, folder: Path) -> None:
        from ..artifacts import read_json

        accuracy = read_json(folder / CLASSIFIER_CONFIG).get("heldout_accuracy")
        if accuracy is not None and accuracy < cfg["min_accuracy"]:
            raise ValueError(
                f"the trained classifier ({folder}) has held-out accuracy {accuracy:.4f}, below "
                f"features.classifier.min_accuracy {cfg['min_accuracy']}; lower min_accuracy or change the "
                "classifier's training (steps, width), which trains a new one"
            )

    def load(self, spec: dict, network: str | None, device):
        from .classifier_net import load_classifier

        model, _ = load_classifier(Path(network))
        return model.to(device)

    def extract(self, state, images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
        from .classifier_net import features_and_probs

        feats, probs = features_and_probs(state, images, batch_size)
        return {"features": feats, "probs": probs}

    def reference(self, features: dict[str, np.ndarray], spec: dict | None = None) -> dict[str, np.ndarray]:
        return mean_and_covariance(features["features"])
