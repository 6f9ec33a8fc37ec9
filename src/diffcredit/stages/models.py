"""Jobs of the model stages: the untrained model, training (full, pruned, coalitions)
and the classifier feature extractor's network."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from .. import data as data_mod
from ..artifacts import atomic_dir, read_npz, verify_dir
from ..devices import granted_threads, job_device

log = logging.getLogger(__name__)


def load_model(family, folder: str, job: dict):
    """A model artifact, checked against its sidecar first."""
    return family.load(verify_dir(folder), job.get("family_runtime") or {})


def init_model(job: dict, progress: bool = True) -> None:
    from ..families import get_family

    family = get_family(job["family"])
    model = family.init(job["spec"], job.get("family_runtime") or {})
    with atomic_dir(job["out"]) as tmp:
        family.save(model, tmp)
    log.info("untrained %s model with %d parameters written to %s", family.name,
             sum(p.numel() for p in model.net.parameters()), job["out"])


def train(job: dict, progress: bool = True) -> None:
    """train_full, prune and fine_tune: (prune,) train the start model on the shards."""
    import torch

    from ..families import get_family
    from ..training import TrainSpec, train as fit

    device, dtype = job_device(job)
    family = get_family(job["family"])
    inputs = job["inputs"]
    model = load_model(family, inputs["start"], job)
    if job["rule"] == "prune":
        before = sum(p.numel() for p in family.trainable(model).values())
        torch.manual_seed(job["training"].get("seed", 0))
        family.prune(model, job["ratio"], job["importance"])
        log.info("pruned %d -> %d trained parameters (ratio %.2f)", before,
                 sum(p.numel() for p in family.trainable(model).values()), job["ratio"])
    data = family.training_data(inputs["shards"])
    if job.get("condition_labels"):
        data["labels"] = contributor_labels(inputs["shards"], job["condition_labels"])
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
            "device": str(device), "threads": granted_threads(job.get("threads", 1)),
        }, indent=2))
    shutil.rmtree(job["scratch"], ignore_errors=True)
    log.info("final loss %s; model written to %s", stats["final_loss"], job["out"])


def condition(job: dict, progress: bool = True) -> None:
    """The proxy strategy's coalition model: the full model, conditioned on the labels (or,
    for a text family, the captions) of the members' items, by their counts, saved as a
    model of its own. Nothing trains."""
    from ..families import get_family

    start, cpu_start = time.perf_counter(), time.process_time()
    family = get_family(job["family"])
    inputs = job["inputs"]
    model = load_model(family, inputs["start"], job)
    if job.get("condition") == "caption":  # the members' raw shards; none for the empty coalition
        labels = data_mod.read_shard_arrays(inputs["shards"], keys=("captions",)).get("captions", np.array([]))
    elif job.get("condition_labels"):
        labels = contributor_labels(inputs["shards"], job["condition_labels"])
    else:
        labels = data_mod.read_shard_arrays(inputs["shards"], keys=("labels",))["labels"]
    family.condition_on(model, labels)
    with atomic_dir(job["out"]) as tmp:
        family.save(model, tmp)
        shared = link_identical(tmp, Path(inputs["start"]))
        (tmp / "training.json").write_text(json.dumps({
            "members": job["members"], "n_images": int(len(labels)), "final_loss": None, "resumed_at": 0,
            "steps": 0, "batch_size": 0, "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu_start, "device": "cpu",
            "threads": granted_threads(job.get("threads", 1)),
        }, indent=2))
    log.info("full model conditioned on the %d items of %s (%s shared with it by hard link)", len(labels),
             ", ".join(job["members"]), ", ".join(shared) or "no file")


def contributor_labels(shards: list[str], index: dict) -> np.ndarray:
    """data.condition: contributor: every item of shard p labelled index[p], in the order
    the family's training_data concatenates the shards."""
    counts = [len(read_npz(p, ("labels",))["labels"]) for p in shards]
    return np.concatenate([np.full(n, index[p], dtype=np.int64) for p, n in zip(shards, counts)])


def link_identical(folder: Path, source: Path) -> list[str]:
    """Replace each file of `folder` whose bytes equal `source`'s file of the same name by
    a hard link to it: a conditioned model stores its labels, not another copy of the
    full model's weights. Where links cannot be made (another file system), the copy stays."""
    import filecmp
    import os

    shared = []
    for f in sorted(Path(folder).iterdir()):
        s = source / f.name
        if not (f.is_file() and s.is_file() and s.stat().st_size == f.stat().st_size
                and filecmp.cmp(f, s, shallow=False)):
            continue
        link = f.with_name(f".{f.name}.link")
        try:
            os.link(s, link)
        except OSError:
            continue
        os.replace(link, f)
        shared.append(f.name)
    return shared


def train_classifier(job: dict, progress: bool = True) -> None:
    from ..extractors.classifier_net import save_classifier, train_classifier as fit

    job_device({**job, "device": "cpu"})  # a small CNN: CPU, pinned threads, reproducible
    inputs = job["inputs"]
    if "reference" in inputs:
        ref = read_npz(inputs["reference"])
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
