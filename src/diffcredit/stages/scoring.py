"""Jobs of the scoring stages: samples, features, reference statistics, properties."""

from __future__ import annotations

import logging

import numpy as np

from ..artifacts import read_npz, write_json, write_npz
from ..devices import job_device
from .models import load_model

log = logging.getLogger(__name__)


def generate(job: dict, progress: bool = True) -> None:
    from ..families import get_family

    device, dtype = job_device(job)
    family = get_family(job["family"])
    model = load_model(family, job["inputs"]["model"], job)
    images = family.sample(model, job["spec"]["n_images"], {**job["spec"], "batch_size": job["batch_size"]},
                           device, dtype, progress)
    write_npz(job["out"], compressed=True, images=images)
    log.info("wrote %d samples to %s", len(images), job["out"])


def _extract(job: dict, images: np.ndarray, names, specs: dict, device) -> dict:
    """{extractor: {array name: array}} of uint8 images, for `names` and the extractors
    they derive from (each encoder runs once)."""
    from ..extractors import get_extractor, in_order

    out = {}
    for name in in_order(names, specs):
        ext = get_extractor(name)
        state = ext.load({**specs[name], **job["runtime"][name]}, job["inputs"].get(name), device)
        used = ext.uses(specs[name])
        out[name] = ext.derive(state, out[used]) if used else ext.extract(state, images, job["batch_size"])
    return out


def features(job: dict, progress: bool = True) -> None:
    device, _ = job_device(job)
    images = read_npz(job["inputs"]["samples"])["images"]
    specs = job["spec"]["extractors"]
    feats = _extract(job, images, sorted(specs), specs, device)
    write_npz(job["out"], **{f"{e}.{k}": v for e, arrays in feats.items() for k, v in arrays.items()})
    log.info("features of %d samples (%s) written to %s", len(images), ", ".join(sorted(specs)), job["out"])


def reference_stats(job: dict, progress: bool = True) -> None:
    from ..extractors import get_extractor

    name = job["extractor"]
    if job.get("stats_file"):
        stats = dict(np.load(job["stats_file"]))
        if "mu" not in stats or "sigma" not in stats or stats["sigma"].shape != (len(stats["mu"]),) * 2:
            raise ValueError(f"{job['stats_file']} must hold 'mu' (d,) and 'sigma' (d, d)")
        write_npz(job["out"], mu=stats["mu"], sigma=stats["sigma"])
        return
    device, _ = job_device(job)
    images = read_npz(job["inputs"]["images"])["images"]
    feats = _extract(job, images, [name], job["specs"], device)
    write_npz(job["out"], **get_extractor(name).reference(feats[name], job["specs"][name]))
    log.info("%s reference statistics of %d images written to %s", name, len(images), job["out"])


def _grouped(arrays: dict) -> dict:
    out: dict = {}
    for k, v in arrays.items():
        ext, _, name = k.partition(".")
        out.setdefault(ext, {})[name] = v
    return out


SHARED_DRAWS_SEED = 0


def score(job: dict, progress: bool = True) -> None:
    from ..properties import compute_all, get, image_replicates

    inputs = job["inputs"]
    feats = _grouped(read_npz(inputs["features"]))
    refs = {role.removeprefix("reference_"): read_npz(p)
            for role, p in inputs.items() if role.startswith("reference_")}
    names = job["spec"]["properties"]
    options = job["spec"]["options"]
    values = compute_all(names, feats, refs, options)
    n_images = len(next(iter(next(iter(feats.values())).values())))
    # shared: replicate b draws the same image indices (the same generation seeds) for every
    # model; own: seeded by the key, every model's resampling its own.
    n_replicates = int(options.get("image_bootstrap", 0))
    replicates = {}
    if n_replicates:
        seed = SHARED_DRAWS_SEED if options.get("image_draws", "own") == "shared" else int(job["key"], 16)
        replicates = image_replicates(names, feats, refs, options, n_replicates, seed=seed)
    write_json(job["out"], {
        "n_images": n_images,
        "properties": {n: {"value": values[n], "higher_is_better": get(n).higher_is_better,
                           **({"replicates": replicates[n]} if n in replicates else {})} for n in names},
    }, seal=True)
    log.info("%s", ", ".join(f"{n} = {v:.6g}" for n, v in values.items()))
