"""The attribution jobs: features of one contributor's items or of the targets
(`attribution_features`), and one method variant's credits (`attribute`)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def _uint8_images(path: str) -> np.ndarray:
    from ..artifacts import read_npz

    return read_npz(path, ("images",))["images"]


def features_job(job: dict, progress: bool = True) -> None:
    """Features of one shard's items (role "train") or of a samples file (role "target")."""
    from ..artifacts import write_npz
    from ..devices import job_device
    from . import get_method

    spec, inputs = job["spec"], job["inputs"]
    method = get_method(job["method"])
    device, _ = job_device(job)
    if spec["kind"] == "similarity":
        feats = method.embed(_uint8_images(inputs["source"]), spec, job.get("method_runtime", {}), device,
                             job["batch_size"])
        arrays = {"features": feats.astype(np.float16)[None]}
    else:
        arrays = _gradient_features(job, device, progress)
    write_npz(job["out"], **arrays)
    if job.get("scratch"):
        import shutil

        shutil.rmtree(job["scratch"], ignore_errors=True)
    log.info("wrote features %s of %d items to %s", arrays["features"].shape[2:], arrays["features"].shape[1],
             job["out"])


def _gradient_features(job: dict, device, progress: bool) -> dict:
    import torch

    from ..families import get_family
    from ..stages.models import contributor_labels, load_model
    from .gradients import featurize, items_per_pass

    spec, inputs = job["spec"], job["inputs"]
    family = get_family(job["family"])
    runtime = job.get("family_runtime") or {}
    model = load_model(family, inputs["model"], job)
    if job["role"] == "train":
        data = family.training_data([inputs["source"]])
        if job.get("condition_labels"):  # data.condition: contributor
            data["labels"] = contributor_labels([inputs["source"]], job["condition_labels"])
    else:
        data = family.target_data(_uint8_images(inputs["source"]), job["generate"], job["encode_spec"], device,
                                  job["batch_size"], runtime, model)
    data = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.items()}
    n_params = sum(p.numel() for p in family.trainable(model).values())
    per_pass = min(job["batch_size"], items_per_pass(n_params, spec["timesteps"], spec["normalize"],
                                                     job["memory_mb"]))
    log.info("%d items, %d trainable parameters, %d items per pass, projection %s", family.n_items(data), n_params,
             per_pass, spec["projection_dim"] or "none")
    return featurize(family, model, data, spec, device, per_pass, progress, job.get("scratch"),
                     residual=spec["residual"])


def attribute_job(job: dict, progress: bool = True) -> None:
    """values.parquet / values.csv in the estimators' format, and a bar chart per property."""
    from ..artifacts import atomic_dir, read_npz
    from ..evaluation import t_interval
    from ..values import credit_table, read_scores, values_table, write_values
    from . import get_method

    spec, inputs = job["spec"], job["inputs"]
    method = get_method(spec["method"])
    credits = method.scores([read_npz(p) for p in inputs["train"]], read_npz(inputs["target"]), spec["variant"])
    players = spec["players"]
    props = read_scores(inputs["scores"])
    tables = []
    for prop in spec["properties"]:
        sign = 1.0 if props[prop]["higher_is_better"] else -1.0
        rows = []
        for c, name in enumerate(players):
            mean, low, high = t_interval(credits[:, c])
            rows.append({"contributor": name, "value": sign * mean, "ci_low": sign * (low if sign > 0 else high),
                         "ci_high": sign * (high if sign > 0 else low)})
        tables.append(credit_table(pd.DataFrame(rows), prop, sign > 0))
    table = values_table(tables, "full", False, job["label"], "attribution", 0)
    with atomic_dir(job["out"]) as tmp:
        write_values(tmp, table, {prop: f"{prop}: {job['label']} attribution of the full model"
                                  for prop in spec["properties"]})
