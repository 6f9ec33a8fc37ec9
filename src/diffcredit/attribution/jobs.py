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
    from . import get_method

    spec, inputs = job["spec"], job["inputs"]
    method = get_method(job["method"])
    if spec["kind"] == "similarity":
        from ..devices import setup

        device = setup(job.get("device", "cpu"), job.get("threads", 1))
        feats = method.embed(_uint8_images(inputs["source"]), spec, job.get("method_runtime", {}), device,
                             job["batch_size"])
        arrays = {"features": feats.astype(np.float16)[None]}
    else:
        arrays = _gradient_features(job, progress)
    write_npz(job["out"], **arrays)
    if job.get("scratch"):
        import shutil

        shutil.rmtree(job["scratch"], ignore_errors=True)
    log.info("wrote features %s of %d items to %s", arrays["features"].shape[2:], arrays["features"].shape[1],
             job["out"])


def _gradient_features(job: dict, progress: bool) -> dict:
    import torch

    from ..devices import setup
    from ..families import get_family
    from ..artifacts import verify_dir
    from .gradients import featurize, items_per_pass

    spec, inputs = job["spec"], job["inputs"]
    device = setup(job.get("device", "cpu"), job.get("threads", 1))
    family = get_family(job["family"])
    runtime = job.get("family_runtime") or {}
    model = family.load(verify_dir(inputs["model"]), runtime)
    if job["role"] == "train":
        data = family.training_data([inputs["source"]])
    else:
        data = family.target_data(_uint8_images(inputs["source"]), job["generate"], job["encode_spec"], device,
                                  job["batch_size"], runtime)
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
    from ..evaluation import t_interval
    from ..artifacts import atomic_dir, read_json, verify_file
    from ..report import plot_values
    from ..artifacts import read_npz as read
    from . import get_method

    spec, inputs = job["spec"], job["inputs"]
    method = get_method(spec["method"])
    credits = method.scores([read(p) for p in inputs["train"]], read(inputs["target"]), spec["variant"])
    players = spec["players"]
    props = read_json(verify_file(inputs["scores"]))["properties"]
    tables = []
    for prop in spec["properties"]:
        sign = 1.0 if props[prop]["higher_is_better"] else -1.0
        rows = []
        for c, name in enumerate(players):
            mean, low, high = t_interval(credits[:, c])
            rows.append({"contributor": name, "value": sign * mean, "ci_low": sign * (low if sign > 0 else high),
                         "ci_high": sign * (high if sign > 0 else low)})
        df = pd.DataFrame(rows)
        df.insert(0, "property", prop)
        df["higher_is_better"] = sign > 0
        df["credit"] = sign * df["value"]
        df["rank"] = df["credit"].rank(ascending=False, method="min").astype(int)
        tables.append(df)
    table = pd.concat(tables, ignore_index=True)
    for col, val in (("strategy", "full"), ("shrink", False), ("method", job["label"]), ("scheme", "attribution"),
                     ("budget", 0)):
        table.insert(0, col, val)
    with atomic_dir(job["out"]) as tmp:
        table.to_parquet(tmp / "values.parquet", index=False)
        table.to_csv(tmp / "values.csv", index=False)
        for prop in spec["properties"]:
            plot_values(table[table["property"] == prop], tmp / f"{prop}.png",
                        f"{prop}: {job['label']} attribution of the full model")
