"""Jobs of the data stages: contributor shards, the manifest, reference images, encoded shards."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .. import data as data_mod
from ..artifacts import read_npz, write_npz, write_parquet
from ..devices import job_device

log = logging.getLogger(__name__)


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


def canary_shard(job: dict, progress: bool = True) -> None:
    """A canary's images, made from its original's shard or the pooled real shards."""
    from ..canaries import make

    arrays = data_mod.read_shard_arrays(job["inputs"]["shards"])
    images, labels, captions = make(job["spec"], arrays["images"], arrays["labels"], arrays.get("captions"))
    data_mod.write_shard(job["out"], images, labels, captions)
    log.info("wrote %d images of canary %s (%s) to %s", len(images), job["name"], job["spec"]["kind"], job["out"])


def shard_set(job: dict, progress: bool = True) -> None:
    """A stamp that every training shard exists: training jobs wait for it instead of
    for each member's shard, so a coalition's DAG edges do not grow with its members."""
    from ..artifacts import verify_file, write_json

    shards = [str(verify_file(p)) for p in job["inputs"]["shards"]]
    write_json(job["out"], {"shards": shards}, seal=True)


def prepare_data(job: dict, progress: bool = True) -> None:
    import pandas as pd

    rows = [{**r, "shard": p} for r, p in zip(job["spec"]["rows"], job["inputs"]["shards"])]
    write_parquet(pd.DataFrame(rows), job["out"])


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
    write_npz(job["out"], images=images, labels=labels)
    log.info("wrote %d reference images to %s", len(images), job["out"])


def encode(job: dict, progress: bool = True) -> None:
    """One shard encoded by a latent family's frozen encoders."""
    from ..families import get_family

    device, _ = job_device(job)
    family = get_family(job["family"])
    arrays = read_npz(job["inputs"]["shard"])
    out = family.encode_shard(job["spec"], arrays, device, int(job["batch_size"]), job["family_runtime"])
    write_npz(job["out"], **out)
    log.info("encoded %d items to %s (%s)", len(arrays["images"]), job["out"],
             ", ".join(f"{k} {tuple(v.shape)}" for k, v in out.items()))
