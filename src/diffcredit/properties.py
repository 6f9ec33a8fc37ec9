"""Global properties of a set of generated images, in a registry.

Each property maps generated uint8 images to one number and says whether higher
is better. Properties here are computed with the workflow's classifier: its class
predictions and its penultimate-layer features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Property:
    name: str
    higher_is_better: bool
    description: str
    compute: Callable  # (features, probs, reference) -> float


PROPERTIES: dict[str, Property] = {}


def register(prop: Property) -> Property:
    if prop.name in PROPERTIES:
        raise ValueError(f"property {prop.name!r} is already registered")
    PROPERTIES[prop.name] = prop
    return prop


def get(name: str) -> Property:
    try:
        return PROPERTIES[name]
    except KeyError:
        raise ValueError(f"unknown property {name!r}; known: {sorted(PROPERTIES)}") from None


def class_shares(probs: np.ndarray) -> np.ndarray:
    counts = np.bincount(probs.argmax(1), minlength=probs.shape[1])
    return counts / counts.sum()


def class_entropy(features: np.ndarray, probs: np.ndarray, reference: dict) -> float:
    shares = class_shares(probs)
    nz = shares[shares > 0]
    return float(-(nz * np.log(nz)).sum())


def frechet_distance(features: np.ndarray, probs: np.ndarray, reference: dict) -> float:
    from cleanfid.fid import frechet_distance as fd

    if len(features) < 2:
        raise ValueError("the Frechet distance needs at least 2 generated images")
    mu = features.mean(0)
    sigma = np.cov(features, rowvar=False)
    return float(fd(mu, sigma, reference["mu"], reference["sigma"]))


register(
    Property(
        "class_entropy",
        higher_is_better=True,
        description="entropy (nats) of the predicted class shares of the samples: diversity",
        compute=class_entropy,
    )
)
register(
    Property(
        "fid",
        higher_is_better=False,
        description="Frechet distance between classifier features of samples and of the real data",
        compute=frechet_distance,
    )
)
