"""What each workflow job does, one function per rule. Every function takes the
job dict of `Plan.job` and writes its output atomically."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from . import data as data_mod
from .artifacts import atomic_dir, atomic_path, verify_file, write_json

log = logging.getLogger(__name__)


def _write_parquet(df, path: str) -> None:
    with atomic_path(path, suffix=".parquet", seal=True) as tmp:
        df.to_parquet(tmp, index=False)


def _write_npz(path: str, **arrays) -> None:
    with atomic_path(path, suffix=".npz", seal=True) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _read_npz(path: str) -> dict:
    with np.load(verify_file(path)) as z:
        return {k: z[k] for k in z.files}


def _load_model(family, folder: str, job: dict):
    """A model artifact, checked against its sidecar first."""
    from .artifacts import verify_dir

    return family.load(verify_dir(folder), job.get("family_runtime") or {})


def _device(job: dict):
    from .devices import dtype_of, setup

    return setup(job.get("device", "cpu"), job.get("threads", 1)), dtype_of(job.get("precision", "fp32"))


# ---------------------------------------------------------------- data


def prepare_shard(job: dict, progress: bool = True) -> None:
    cache = data_mod.HashCache(Path(job["cache"]))
    contributors = {c.name: c for c in data_mod.describe(job["data"], cache)}
    c = contributors.get(job["name"])
    if c is None or c.content_hash != job["content_hash"]:
        raise RuntimeError(
            f"contributor {job['name']!r} changed after the workflow was planned; run snakemake again"
        )
    images, labels = data_mod.load_items(job["data"], c)
    data_mod.write_shard(job["out"], images, labels, data_mod.load_captions(c))
    log.info("wrote %d items of %s to %s", len(images), c.name, job["out"])


def prepare_data(job: dict, progress: bool = True) -> None:
    import pandas as pd

    rows = [{**r, "shard": p} for r, p in zip(job["spec"]["rows"], job["inputs"]["shards"])]
    _write_parquet(pd.DataFrame(rows), job["out"])


def reference_data(job: dict, progress: bool = True) -> None:
    """The reference images (and labels, -1 when unlabelled) in one file."""
    if "shards" in job["inputs"]:
        images, labels = data_mod.read_shards(job["inputs"]["shards"])
    else:
        ref = job["reference"]
        groups, _ = data_mod.describe_reference(ref, data_mod.HashCache(Path(job["cache"])))
        decode = {**ref, "resolution": job["resolution"], "channels": job["channels"]}
        parts = [data_mod.load_items(decode, g) for g in groups]
        images = data_mod.conform(np.concatenate([p[0] for p in parts]), job["resolution"], job["channels"])
        labels = np.concatenate([p[1] for p in parts])
    _write_npz(job["out"], images=images, labels=labels)
    log.info("wrote %d reference images to %s", len(images), job["out"])


def encode(job: dict, progress: bool = True) -> None:
    """One shard encoded by a latent family's frozen encoders."""
    from .families import get_family

    device, _ = _device(job)
    family = get_family(job["family"])
    arrays = _read_npz(job["inputs"]["shard"])
    out = family.encode_shard(job["spec"], arrays, device, int(job["batch_size"]), job["family_runtime"])
    _write_npz(job["out"], **out)
    log.info("encoded %d items to %s (%s)", len(arrays["images"]), job["out"],
             ", ".join(f"{k} {tuple(v.shape)}" for k, v in out.items()))


# ---------------------------------------------------------------- models


def init_model(job: dict, progress: bool = True) -> None:
    from .families import get_family

    family = get_family(job["family"])
    model = family.init(job["spec"], job.get("family_runtime") or {})
    with atomic_dir(job["out"]) as tmp:
        family.save(model, tmp)
    log.info("untrained %s model with %d parameters written to %s", family.name,
             sum(p.numel() for p in model.net.parameters()), job["out"])


def train(job: dict, progress: bool = True) -> None:
    """train_full, prune and fine_tune: (prune,) train the start model on the shards."""
    import torch

    from .families import get_family
    from .training import TrainSpec, train as fit

    device, dtype = _device(job)
    family = get_family(job["family"])
    inputs = job["inputs"]
    model = _load_model(family, inputs["start"], job)
    if job["rule"] == "prune":
        before = sum(p.numel() for p in family.trainable(model).values())
        torch.manual_seed(job["training"].get("seed", 0))
        family.prune(model, job["ratio"], job["importance"])
        log.info("pruned %d -> %d trained parameters (ratio %.2f)", before,
                 sum(p.numel() for p in family.trainable(model).values()), job["ratio"])
    data = family.training_data(inputs["shards"])
    n_images = family.n_items(data)
    section = job["training"]
    log.info("training on %d images of %s for %d steps on %s", n_images, ", ".join(job["members"]),
             section["steps"], device)
    start, cpu_start = time.perf_counter(), time.process_time()
    stats = fit(family, model, data, TrainSpec.from_dict(section), device, dtype,
                checkpoint_dir=job["scratch"], checkpoint_every=section.get("checkpoint_every", 0),
                desc=job.get("desc", "train"), progress=progress, ascent=job.get("ascent", False))
    model.net.to("cpu")
    with atomic_dir(job["out"]) as tmp:
        family.save(model, tmp)
        (tmp / "training.json").write_text(json.dumps({
            "members": job["members"], "n_images": int(n_images), "final_loss": stats["final_loss"],
            "resumed_at": stats["start_step"], "steps": section["steps"], "batch_size": section["batch_size"],
            # This job's time (since a resume, if it resumed): what cost ratios are made of.
            "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start,
            "device": str(device), "threads": job.get("threads"),
        }, indent=2))
    shutil.rmtree(job["scratch"], ignore_errors=True)
    log.info("final loss %s; model written to %s", stats["final_loss"], job["out"])


def generate(job: dict, progress: bool = True) -> None:
    from .families import get_family

    device, dtype = _device(job)
    family = get_family(job["family"])
    model = _load_model(family, job["inputs"]["model"], job)
    images = family.sample(model, job["spec"]["n_images"], {**job["spec"], "batch_size": job["batch_size"]},
                           device, dtype, progress)
    with atomic_path(job["out"], suffix=".npz", seal=True) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, images=images)
    log.info("wrote %d samples to %s", len(images), job["out"])


def train_classifier(job: dict, progress: bool = True) -> None:
    from .extractors.classifier_net import save_classifier, train_classifier as fit

    _device({**job, "device": "cpu"})  # a small CNN: CPU, pinned threads, reproducible
    inputs = job["inputs"]
    if "reference" in inputs:
        ref = _read_npz(inputs["reference"])
        images, labels = ref["images"], ref["labels"]
    else:  # unlabelled: the contributor is the class
        images, labels = [], []
        for i, shard in enumerate(inputs["shards"]):
            x, _ = data_mod.read_shards([shard])
            images.append(x)
            labels.append(np.full(len(x), i))
        images, labels = np.concatenate(images), np.concatenate(labels)
    model, metrics = fit(images, labels, job["spec"], progress=progress)
    acc, need = metrics["heldout_accuracy"], job["min_accuracy"]
    log.info("classifier held-out accuracy %.4f on %d images", acc, metrics["n_test"])
    if acc < need:
        raise RuntimeError(
            f"classifier held-out accuracy {acc:.4f} is below features.classifier.min_accuracy {need}; "
            "raise features.classifier.steps or lower min_accuracy"
        )
    with atomic_dir(job["out"]) as tmp:
        save_classifier(model, tmp, metrics)


# ---------------------------------------------------------------- features and scores


def _extract(job: dict, images: np.ndarray, names, specs: dict, device) -> dict:
    """{extractor: {array name: array}} of uint8 images, for `names` and the extractors
    they derive from (each encoder runs once)."""
    from .extractors import get_extractor, in_order

    out = {}
    for name in in_order(names, specs):
        ext = get_extractor(name)
        state = ext.load({**specs[name], **job["runtime"][name]}, job["inputs"].get(name), device)
        used = ext.uses(specs[name])
        out[name] = ext.derive(state, out[used]) if used else ext.extract(state, images, job["batch_size"])
    return out


def features(job: dict, progress: bool = True) -> None:
    device, _ = _device(job)
    images = _read_npz(job["inputs"]["samples"])["images"]
    specs = job["spec"]["extractors"]
    feats = _extract(job, images, sorted(specs), specs, device)
    _write_npz(job["out"], **{f"{e}.{k}": v for e, arrays in feats.items() for k, v in arrays.items()})
    log.info("features of %d samples (%s) written to %s", len(images), ", ".join(sorted(specs)), job["out"])


def reference_stats(job: dict, progress: bool = True) -> None:
    from .extractors import get_extractor

    name = job["extractor"]
    if job.get("stats_file"):
        stats = dict(np.load(job["stats_file"]))
        if "mu" not in stats or "sigma" not in stats or stats["sigma"].shape != (len(stats["mu"]),) * 2:
            raise ValueError(f"{job['stats_file']} must hold 'mu' (d,) and 'sigma' (d, d)")
        _write_npz(job["out"], mu=stats["mu"], sigma=stats["sigma"])
        return
    device, _ = _device(job)
    images = _read_npz(job["inputs"]["images"])["images"]
    feats = _extract(job, images, [name], job["specs"], device)
    _write_npz(job["out"], **get_extractor(name).reference(feats[name], job["specs"][name]))
    log.info("%s reference statistics of %d images written to %s", name, len(images), job["out"])


def _grouped(arrays: dict) -> dict:
    out: dict = {}
    for k, v in arrays.items():
        ext, _, name = k.partition(".")
        out.setdefault(ext, {})[name] = v
    return out


def score(job: dict, progress: bool = True) -> None:
    from .properties import compute_all, get, image_replicates

    inputs = job["inputs"]
    feats = _grouped(_read_npz(inputs["features"]))
    refs = {role.removeprefix("reference_"): _read_npz(p)
            for role, p in inputs.items() if role.startswith("reference_")}
    names = job["spec"]["properties"]
    options = job["spec"]["options"]
    values = compute_all(names, feats, refs, options)
    n_images = len(next(iter(next(iter(feats.values())).values())))
    # Seeded by the key: every coalition's resampling is its own, and reproducible.
    n_replicates = int(options.get("image_bootstrap", 0))
    replicates = image_replicates(names, feats, refs, options, n_replicates, seed=int(job["key"], 16)) \
        if n_replicates else {}
    write_json(job["out"], {
        "n_images": n_images,
        "properties": {n: {"value": values[n], "higher_is_better": get(n).higher_is_better,
                           **({"replicates": replicates[n]} if n in replicates else {})} for n in names},
    }, seal=True)
    log.info("%s", ", ".join(f"{n} = {v:.6g}" for n, v in values.items()))


# ---------------------------------------------------------------- designs and values


def coalition_sample(job: dict, progress: bool = True) -> None:
    import pandas as pd

    from .coalitions import sample_design

    spec = job["spec"]
    masks = sample_design(len(spec["players"]), spec["budget"], spec["scheme"], spec["seed"])
    df = pd.DataFrame(masks, columns=spec["players"])
    df.insert(0, "row", np.arange(len(df)))
    _write_parquet(df, job["out"])


def shapley_estimate(job: dict, progress: bool = True) -> None:
    from .report import estimate_values

    estimate_values(job["spec"], job["inputs"], job["out"])


def _evaluation(name: str):
    def run(job: dict, progress: bool = True) -> None:
        from . import evaluation

        getattr(evaluation, f"{name}_job")(job)

    return run


def attribution_features(job: dict, progress: bool = True) -> None:
    from .attribution.jobs import features_job

    features_job(job, progress)


def attribute(job: dict, progress: bool = True) -> None:
    from .attribution.jobs import attribute_job

    attribute_job(job, progress)


def summary(job: dict, progress: bool = True) -> None:
    from .summary import summary_job

    summary_job(job)


STAGES = {
    "prepare_shard": prepare_shard,
    "prepare_data": prepare_data,
    "reference_data": reference_data,
    "encode": encode,
    "init_model": init_model,
    "train_full": train,
    "prune": train,
    "fine_tune": train,
    "generate": generate,
    "train_classifier": train_classifier,
    "features": features,
    "reference_stats": reference_stats,
    "score": score,
    "coalition_sample": coalition_sample,
    "shapley_estimate": shapley_estimate,
    "attribution_features": attribution_features,
    "attribute": attribute,
    "fidelity": _evaluation("fidelity"),
    "lds": _evaluation("lds"),
    "removal_sets": _evaluation("removal_sets"),
    "counterfactual": _evaluation("counterfactual"),
    "summary": summary,
}
# Jobs that only move tables and arrays do not import torch.
NO_TORCH = {"prepare_shard", "prepare_data", "reference_data", "coalition_sample", "shapley_estimate", "attribute",
            "fidelity", "lds", "removal_sets", "counterfactual", "summary"}
