"""Global properties of a set of generated images, in a registry.

A property is a cheap function of one extractor's features of the samples and of
that extractor's reference statistics, with a direction. The Inception metrics come
from torch-fidelity's own functions (FID, Inception Score, precision/recall), so they
agree with its one-call `calculate_metrics` on the same features; FID's Frechet
distance also equals clean-fid's `frechet_distance` (its sqrtm form) on them, so with
`features.inception.resize: clean` (clean-fid's resizer before the network) `fid` is
clean-fid's clean-mode FID (tests/test_clean_fid.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Property:
    name: str
    extractor: str
    higher_is_better: bool
    description: str
    compute: Callable  # (features: dict, reference: dict, options: dict) -> float
    needs_reference_features: bool = False  # not computable from mean/covariance alone
    # Recomputed on resampled images to measure image-sampling noise; off where a
    # recomputation costs too much (a 2048-d covariance, k-NN over the reference).
    resample: bool = True
    # Judges how good the images are (a canary of noisy images must lose credit), rather
    # than only how varied they are (noise can add variety).
    quality: bool = True


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


# ---------------------------------------------------------------- metrics


def class_shares(probs: np.ndarray) -> np.ndarray:
    counts = np.bincount(probs.argmax(1), minlength=probs.shape[1])
    return counts / counts.sum()


def class_entropy(features: dict, reference: dict, options: dict) -> float:
    shares = class_shares(features["probs"])
    nz = shares[shares > 0]
    return float(-(nz * np.log(nz)).sum())


def frechet_distance(x: np.ndarray, reference: dict) -> float:
    """Frechet distance of features `x` to reference mu/sigma, by the eigenvalue form
    torch-fidelity uses (tr sqrt(S1 S2) = sum sqrt(eig(S1 S2))); numpy only, so a job
    scoring classifier features does not import torch."""
    if len(x) < 2:
        raise ValueError("the Frechet distance needs at least 2 generated images")
    x = np.asarray(x)
    mu, sigma = x.mean(0), np.cov(x, rowvar=False)
    mu_r, sigma_r = reference["mu"], reference["sigma"]
    diff = mu - mu_r
    tr_covmean = np.sum(np.sqrt(np.linalg.eigvals(sigma.dot(sigma_r)).astype("complex128")).real)
    return float(diff.dot(diff) + np.trace(sigma) + np.trace(sigma_r) - 2 * tr_covmean)


def classifier_fd(features: dict, reference: dict, options: dict) -> float:
    return frechet_distance(features["features"], reference)


def fid(features: dict, reference: dict, options: dict) -> float:
    import torch
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    stats = fid_features_to_statistics(torch.from_numpy(np.ascontiguousarray(features["pool3"])))
    ref = {k: reference[k].astype(stats[k].dtype) for k in ("mu", "sigma")}
    return float(fid_statistics_to_metric(stats, ref, verbose=False)["frechet_inception_distance"])


def inception_score(features: dict, reference: dict, options: dict) -> float:
    import torch
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = torch.from_numpy(np.ascontiguousarray(features["logits"]))
    return float(isc_features_to_metric(logits, splits=int(options.get("isc_splits", 10)))["inception_score_mean"])


def precision_recall(features: dict, reference: dict, options: dict) -> tuple[float, float]:
    """Kynkaanniemi et al. (2019) improved precision and recall, k nearest neighbours."""
    import torch
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    gen = torch.from_numpy(np.ascontiguousarray(features["pool3"]))
    real = torch.from_numpy(np.ascontiguousarray(reference["pool3"])).to(gen.dtype)
    return calculate_precision_recall_full(gen, real, neighborhood=int(options.get("prc_neighborhood", 3)))


register(Property("class_entropy", "classifier", True,
                  "entropy (nats) of the classifier's predicted class shares of the samples: diversity",
                  class_entropy, quality=False))
register(Property("classifier_fd", "classifier", False,
                  "Frechet distance between classifier features of the samples and of the reference images",
                  classifier_fd))
register(Property("fid", "inception", False,
                  "Frechet Inception distance (pool3) between the samples and the reference images", fid,
                  resample=False))
register(Property("inception_score", "inception", True,
                  "Inception Score of the samples (mean over 10 splits)", inception_score))
register(Property("precision", "inception", True,
                  "improved precision (k = 3): share of samples inside the reference manifold",
                  lambda f, r, o: precision_recall(f, r, o)[0], needs_reference_features=True, resample=False))
register(Property("recall", "inception", True,
                  "improved recall (k = 3): share of reference images inside the samples' manifold",
                  lambda f, r, o: precision_recall(f, r, o)[1], needs_reference_features=True, resample=False,
                  quality=False))


def diversity_entropy(features: dict, reference: dict, options: dict) -> float:
    from .extractors.diversity import assign

    clusters = reference["clusters"]
    shares = np.bincount(assign(features["embeds"], reference["embeds"], clusters),
                         minlength=int(clusters.max()) + 1) / len(features["embeds"])
    nz = shares[shares > 0]
    return float(-(nz * np.log2(nz)).sum())


register(Property("diversity_entropy", "diversity", True,
                  "entropy (bits) of the shares of the samples in the Ward clusters of the reference images' "
                  "embeddings (features.diversity: encoder blip or clip, k clusters)", diversity_entropy,
                  needs_reference_features=True, quality=False))
register(Property("aesthetic", "aesthetic", True,
                  "mean LAION aesthetic score of the samples (linear head on CLIP embeddings)",
                  lambda f, r, o: float(np.mean(f["scores"]))))
register(Property("aesthetic_q90", "aesthetic", True,
                  "90th percentile of the samples' LAION aesthetic scores",
                  lambda f, r, o: float(np.quantile(f["scores"], 0.9))))


def image_replicates(names: list[str], features: dict, references: dict, options: dict, n: int,
                     seed: int) -> dict:
    """{name: n values of the property on the samples resampled with replacement}, for
    the properties that resample: the spread a finite number of generated images adds.
    Replicate b draws the same images for every property."""
    props = [get(name) for name in names if get(name).resample]
    if n <= 0 or not props:
        return {}
    n_images = len(next(iter(features[props[0].extractor].values())))
    draws = np.random.default_rng(seed).integers(0, n_images, (n, n_images))
    out = {p.name: [] for p in props}
    for idx in draws:
        for p in props:
            feats = {k: v[idx] for k, v in features[p.extractor].items()}
            out[p.name].append(float(p.compute(feats, references.get(p.extractor, {}), options)))
    return out


def compute_all(names: list[str], features: dict, references: dict, options: dict) -> dict:
    """{name: value} of every property in `names`; precision and recall share one pass."""
    out, cache = {}, {}
    for name in names:
        prop = get(name)
        feats, ref = features[prop.extractor], references.get(prop.extractor, {})
        if name in ("precision", "recall"):
            if "prc" not in cache:
                cache["prc"] = precision_recall(feats, ref, options)
            value = cache["prc"][0 if name == "precision" else 1]
        else:
            value = prop.compute(feats, ref, options)
        if not np.isfinite(value):
            raise FloatingPointError(f"property {name} is {value}")
        out[name] = float(value)
    return out
