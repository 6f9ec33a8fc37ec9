"""What each workflow job does. Every function writes its outputs atomically."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from . import data as data_mod
from .io import atomic_dir, atomic_path, verify_file, write_json

log = logging.getLogger(__name__)


def _write_parquet(df, path: str) -> None:
    with atomic_path(path, suffix=".parquet", seal=True) as tmp:
        df.to_parquet(tmp, index=False)


def prepare_shard(spec: dict, out: str) -> None:
    cache = data_mod.HashCache(Path(spec["cache"]))
    contributors = {c.name: c for c in data_mod.describe(spec["data"], cache)}
    c = contributors.get(spec["name"])
    if c is None or c.content_hash != spec["content_hash"]:
        raise RuntimeError(
            f"contributor {spec['name']!r} changed after the workflow was planned; run snakemake again"
        )
    images, labels = data_mod.load_items(spec["data"], c)
    data_mod.write_shard(out, images, labels)
    log.info("wrote %d items of %s to %s", len(images), c.name, out)


def prepare_data(spec: dict, out: str) -> None:
    import pandas as pd

    _write_parquet(pd.DataFrame(spec["rows"]), out)


def init_model(spec: dict, out: str) -> None:
    from .models import build_unet, n_parameters, save_model

    model = build_unet(spec["unet"], spec["seed"])
    with atomic_dir(out) as tmp:
        save_model(model, tmp, spec["scheduler"])
    log.info("untrained model with %d parameters written to %s", n_parameters(model), out)


def _train_and_save(model, scheduler_cfg, spec: dict, shards: list[str], out: str, scratch: str, progress: bool):
    from .models import save_model
    from .training import TrainSpec, train

    images, _ = data_mod.read_shards(shards)
    section = spec["training"]
    log.info("training on %d images of %s for %d steps", len(images), ", ".join(spec["members"]), section["steps"])
    stats = train(
        model,
        images,
        TrainSpec.from_dict(section),
        scheduler_cfg,
        checkpoint_dir=scratch,
        checkpoint_every=section.get("checkpoint_every", 0),
        desc=spec.get("desc", "train"),
        progress=progress,
    )
    with atomic_dir(out) as tmp:
        save_model(model, tmp, scheduler_cfg)
        (tmp / "training.json").write_text(
            json.dumps({"members": spec["members"], "n_images": int(len(images)), "final_loss": stats["final_loss"]}, indent=2)
        )
    shutil.rmtree(scratch, ignore_errors=True)
    log.info("final loss %.4f; model written to %s", stats["final_loss"], out)


def train_model(spec: dict, start: str, shards: list[str], out: str, scratch: str, progress: bool = True) -> None:
    """train_full, fine_tune (sft and retrain): train the start model on the shards."""
    from .models import load_model

    model, scheduler_cfg = load_model(start)
    _train_and_save(model, scheduler_cfg, spec, shards, out, scratch, progress)


def prune_model(spec: dict, start: str, shards: list[str], out: str, scratch: str, progress: bool = True) -> None:
    """Prune the full model, then fine-tune the pruned model on all data."""
    import torch

    from .models import load_model, n_parameters, prune_unet

    model, scheduler_cfg = load_model(start)
    before = n_parameters(model)
    torch.manual_seed(spec["training"].get("seed", 0))
    prune_unet(model, spec["ratio"], spec["importance"])
    log.info("pruned %d -> %d parameters (ratio %.2f)", before, n_parameters(model), spec["ratio"])
    _train_and_save(model, scheduler_cfg, spec, shards, out, scratch, progress)


def generate(spec: dict, model_dir: str, out: str, progress: bool = True) -> None:
    from .models import load_model
    from .sampling import sample_ddim

    model, scheduler_cfg = load_model(model_dir)
    images = sample_ddim(
        model,
        scheduler_cfg,
        n_images=spec["n_images"],
        inference_steps=spec["inference_steps"],
        seed=spec["seed"],
        batch_size=spec["batch_size"],
        eta=spec["eta"],
        progress=progress,
    )
    with atomic_path(out, suffix=".npz", seal=True) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, images=images)
    log.info("wrote %d samples to %s", len(images), out)


def train_classifier(spec: dict, shards: list[str], out: str, progress: bool = True) -> None:
    from .classifier import save_classifier, train_classifier as fit

    images, labels = [], []
    for i, shard in enumerate(shards):
        x, y = data_mod.read_shards([shard])
        images.append(x)
        # Unlabelled folders: the contributor is the class.
        labels.append(np.full(len(y), i) if (y < 0).all() else y)
    images, labels = np.concatenate(images), np.concatenate(labels)
    model, metrics = fit(images, labels, spec, progress=progress)
    acc, need = metrics["heldout_accuracy"], spec["min_accuracy"]
    log.info("classifier held-out accuracy %.4f on %d images", acc, metrics["n_test"])
    if acc < need:
        raise RuntimeError(
            f"classifier held-out accuracy {acc:.4f} is below classifier.min_accuracy {need}; "
            "raise classifier.steps or lower min_accuracy"
        )
    with atomic_dir(out) as tmp:
        save_classifier(model, tmp, metrics, images)


def score(spec: dict, samples: str, classifier_dir: str, out: str) -> None:
    from .classifier import features_and_probs, load_classifier
    from .properties import get

    prop = get(spec["property"])
    model, _ = load_classifier(Path(classifier_dir))
    with np.load(verify_file(samples)) as z:
        images = z["images"]
    feats, probs = features_and_probs(model, images)
    with np.load(Path(classifier_dir) / "reference_stats.npz") as z:
        reference = {k: z[k] for k in z.files}
    value = prop.compute(feats, probs, reference)
    if not np.isfinite(value):
        raise FloatingPointError(f"property {prop.name} of {samples} is {value}")
    write_json(
        out,
        {"property": prop.name, "value": value, "higher_is_better": prop.higher_is_better, "n_images": int(len(images))},
        seal=True,
    )
    log.info("%s = %.6g", prop.name, value)


def design(spec: dict, out: str) -> None:
    import pandas as pd

    from .coalitions import sample_design

    masks = sample_design(len(spec["players"]), spec["budget"], spec["scheme"], spec["seed"])
    df = pd.DataFrame(masks, columns=spec["players"])
    df.insert(0, "row", np.arange(len(df)))
    _write_parquet(df, out)
