"""Data from a metadata file, captions in keys, and bad pretrained or metadata input
refused when the workflow is parsed (before any job)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from diffcredit.config import ConfigError, deep_update, load_yaml
from diffcredit.data import DataError, HashCache, describe, load_captions, load_items
from diffcredit.plan import Plan
from conftest import REPO, TINY, dry_run_error
from tiny_models import aesthetic_head, clip_model, metadata_folder, sd_pipeline, vq_model

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    return {"pipe": sd_pipeline(root / "pipe"), "vq": vq_model(root / "vq"), "clip": clip_model(root / "clip"),
            "head": aesthetic_head(root / "head.pth")}


def folder_spec(root, **more):
    return {"source": "folder", "root": str(root), "contributor_column": "artist", "resolution": 32,
            "channels": 3, **more}


def rewrite_csv(path, edit):
    rows = list(csv.DictReader(open(path)))
    rows = edit(rows)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


# ---------------------------------------------------------------- metadata files


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_metadata_file_groups_images_by_its_contributor_column(tmp_path, fmt):
    root = metadata_folder(tmp_path / "d", {"monet": 3, "degas": 2}, fmt=fmt)
    cs = describe(folder_spec(root, caption_column="text"), HashCache(None))
    assert [(c.name, c.n_items) for c in cs] == [("degas", 2), ("monet", 3)]
    images, _ = load_items(folder_spec(root), cs[1])
    captions = load_captions(cs[1])
    assert images.shape == (3, 3, 32, 32) and list(captions) == ["a painting by monet"] * 3
    # Canonical order: images and captions follow the item hashes, so they stay paired.
    order = np.argsort(cs[1].item_hashes, kind="stable")
    assert [cs[1].sources[i] for i in order][0].endswith(".png")


def test_captions_are_in_the_content_hash_and_change_exactly_their_keys(tmp_path, parts):
    root = metadata_folder(tmp_path / "d", {"monet": 3, "degas": 3, "manet": 3})

    def plan():
        cfg = deep_update(load_yaml(REPO / "config.yaml"), load_yaml(TINY))
        cfg = deep_update(cfg, {"data": folder_spec(root, caption_column="text"), "results": str(tmp_path / "r"),
                                "model": {"family": "sd_lora", "pretrained": str(parts["pipe"]),
                                          "lora": {"rank": 2}},
                                "generate": {"prompts": ["a painting"]},
                                "properties": ["aesthetic"], "estimators": [{"method": "leverage", "budget": 4}],
                                "features": {"clip": {"model": str(parts["clip"])},
                                             "aesthetic": {"head": str(parts["head"])}}})
        return Plan(cfg, SCHEMA)

    before = plan()
    rewrite_csv(root / "metadata.csv",
                lambda rows: [{**r, "text": "a sketch"} if r["file_name"] == "images/degas-1.png" else r
                              for r in rows])
    after = plan()
    assert {n: before.shard_keys[n] == after.shard_keys[n] for n in before.names} == \
        {"degas": False, "manet": True, "monet": True}
    assert before.train_shards["manet"] == after.train_shards["manet"]
    assert before.train_shards["degas"] != after.train_shards["degas"]
    # Under retrain, only coalitions holding degas move.
    for members in (("manet", "monet"), ("degas", "manet")):
        same = before.model_key(members, "retrain") == after.model_key(members, "retrain")
        assert same == ("degas" not in members)
    # The same images without a caption column hash like plain files: captions are in the key.
    plain = describe(folder_spec(root), HashCache(None))
    assert {c.name: c.content_hash for c in plain}["manet"] != before.contributors[1].content_hash


@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows + [{**rows[0], "file_name": "images/missing.png"}], "missing.png, which is not a file"),
    (lambda rows: [{**r, "artist": ""} if i == 2 else r for i, r in enumerate(rows)], "has no contributor"),
    (lambda rows: rows + [rows[0]], "is listed again"),
    (lambda rows: [{k: v for k, v in r.items() if k != "artist"} for r in rows], "has no column ['artist']"),
])
def test_bad_metadata_is_refused_naming_the_line(tmp_path, edit, message):
    root = metadata_folder(tmp_path / "d", {"monet": 2, "degas": 2})
    rewrite_csv(root / "metadata.csv", edit)
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        describe(folder_spec(root), HashCache(None))


def test_metadata_in_utf8_with_a_mark_or_utf16_is_read_and_other_encodings_are_refused(tmp_path):
    """Spreadsheets write UTF-8 with a byte-order mark or UTF-16; the same table reads the
    same. Latin-1 is refused naming the file and the byte; a repeated column too."""
    root = metadata_folder(tmp_path / "d", {"monet": 2, "degas": 2})
    text = (root / "metadata.csv").read_text(encoding="utf-8").replace("by degas", "by Degás")
    want = None
    for encoding in ("utf-8", "utf-8-sig", "utf-16"):
        (root / "metadata.csv").write_bytes(text.encode(encoding))
        got = [(c.name, c.content_hash) for c in describe(folder_spec(root, caption_column="text"), HashCache(None))]
        assert got == (want := want or got)
    degas = next(c for c in describe(folder_spec(root, caption_column="text"), HashCache(None)) if c.name == "degas")
    assert set(load_captions(degas)) == {"a painting by Degás"}
    (root / "metadata.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(DataError, match=r"metadata.csv is not UTF-8 text \(byte 0xe1 at offset \d+\)"):
        describe(folder_spec(root), HashCache(None))
    header, rest = text.split("\n", 1)
    (root / "metadata.csv").write_text(header + ",artist\n" + rest.replace("\n", ",x\n"), encoding="utf-8")
    with pytest.raises(DataError, match="repeats the column"):
        describe(folder_spec(root), HashCache(None))


def test_metadata_as_spreadsheets_and_windows_write_it_reads_like_the_plain_file(tmp_path):
    """A table exported with ";" (a decimal-comma locale) or tabs, paths written with
    backslashes, a stray space after a file name: the same contributors and captions
    (was: "has no column", or "not a file")."""
    root = metadata_folder(tmp_path / "d", {"monet": 2, "degas": 2})
    rows = list(csv.DictReader(open(root / "metadata.csv")))
    want = [(c.name, c.content_hash) for c in describe(folder_spec(root, caption_column="text"), HashCache(None))]
    for delimiter in (";", "\t"):
        with open(root / "metadata.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
            w.writeheader()
            w.writerows([{**r, "file_name": r["file_name"].replace("/", "\\") + " "} for r in rows])
        got = [(c.name, c.content_hash) for c in describe(folder_spec(root, caption_column="text"), HashCache(None))]
        assert got == want, delimiter


def test_two_metadata_files_or_a_caption_without_metadata_are_refused(tmp_path):
    root = metadata_folder(tmp_path / "d", {"monet": 2, "degas": 2})
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "images/monet-0.png", "artist": "x"}) + "\n")
    with pytest.raises(DataError, match="holds both"):
        describe(folder_spec(root), HashCache(None))
    with pytest.raises(DataError, match="need data.contributor_column"):
        describe({"source": "folder", "root": str(root), "caption_column": "text"}, HashCache(None))


# ---------------------------------------------------------------- pretrained parts


def plan_error(tmp_path, **override) -> str:
    cfg = deep_update(load_yaml(REPO / "config.yaml"), load_yaml(TINY))
    cfg = deep_update(cfg, {"results": str(tmp_path / "r"), "estimators": [{"method": "leverage", "budget": 2}],
                            **override})
    with pytest.raises(ConfigError) as err:
        Plan(cfg, SCHEMA)
    return str(err.value)


def test_bad_pretrained_parts_are_refused_before_any_job(tmp_path, parts):
    data = folder_spec(metadata_folder(tmp_path / "d", {"monet": 2, "degas": 2}))
    # An autoencoder folder that holds another model.
    msg = plan_error(tmp_path, data=data, model={"family": "ldm", "autoencoder": str(parts["pipe"] / "unet")})
    assert "is a UNet2DConditionModel, not one of ('VQModel', 'AutoencoderKL')" in msg
    msg = plan_error(tmp_path, data=data, model={"family": "ldm", "autoencoder": str(tmp_path / "nowhere")})
    assert "model.autoencoder" in msg and "nowhere is not a directory" in msg
    # A pretrained directory that is not a pipeline.
    msg = plan_error(tmp_path, data=data, model={"family": "sd_lora", "pretrained": str(parts["vq"]),
                                                 "prompt": "x"})
    assert "has no model_index.json" in msg
    # A LoRA target that matches nothing.
    msg = plan_error(tmp_path, data=data, model={"family": "sd_lora", "pretrained": str(parts["pipe"]),
                                                 "prompt": "x", "lora": {"targets": ["to_q", "to_qq"]}})
    assert "model.lora.targets ['to_qq'] match no Linear or Conv2d module" in msg
    # No captions at all.
    msg = plan_error(tmp_path, data=data, model={"family": "sd_lora", "pretrained": str(parts["pipe"])})
    assert "model.prompt" in msg and "data.caption_column" in msg
    # A missing aesthetic head file.
    msg = plan_error(tmp_path, data=data, properties=["aesthetic"],
                     model={"family": "sd_lora", "pretrained": str(parts["pipe"]), "prompt": "x"},
                     features={"clip": {"model": str(parts["clip"])}, "aesthetic": {"head": str(tmp_path / "h.pth")}})
    assert "features.aesthetic.head" in msg and "does not exist" in msg
    # An encoder of the wrong kind.
    msg = plan_error(tmp_path, data=data, properties=["aesthetic"],
                     model={"family": "sd_lora", "pretrained": str(parts["pipe"]), "prompt": "x"},
                     features={"clip": {"model": str(parts["pipe"] / "text_encoder")},
                               "aesthetic": {"head": str(parts["head"])}})
    assert "features.clip.model" in msg and "clip_text_model" in msg


def test_an_offline_hub_id_that_is_not_cached_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    data = folder_spec(metadata_folder(tmp_path / "d", {"monet": 2, "degas": 2}))
    msg = plan_error(tmp_path, data=data, model={"family": "sd_lora", "pretrained": "lambdalabs/miniSD-diffusers",
                                                 "prompt": "x"})
    assert "'lambdalabs/miniSD-diffusers'" in msg and "offline" in msg and "huggingface-cli download" in msg


@pytest.mark.parametrize("proxy", [False, True])
def test_an_unreachable_hub_is_said_at_once_not_after_retries(tmp_path, monkeypatch, proxy):
    """Without HF_HUB_OFFLINE, a node with no network would retry the download for half a
    minute per parse; one failed connection says it instead. Behind a proxy only the
    download can tell, so it is left to try."""
    import socket

    import huggingface_hub

    from diffcredit import pretrained

    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    if proxy:
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.invalid:8443")
    tried = []

    def refuse(address, timeout=None):
        tried.append(address)
        raise OSError(-2, "Name or service not known")

    def download(*args, **kwargs):
        raise OSError("download tried")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    with pytest.raises(pretrained.PretrainedError) as err:
        pretrained.describe("someone/uncached-model", "model.pretrained", None, "model_index.json")
    if proxy:
        assert not tried and "download tried" in str(err.value)
    else:
        assert tried == [("hub.example.invalid", 8443)]
        assert "the hub cannot be reached from here (hub.example.invalid:8443: Name or service not known)" in str(err.value)
        assert "huggingface-cli download someone/uncached-model" in str(err.value)


def test_a_bad_pretrained_part_fails_the_dry_run_with_the_message(tmp_path, parts):
    data = folder_spec(metadata_folder(tmp_path / "d", {"monet": 2, "degas": 2}))
    out = dry_run_error(tmp_path, {"data": data, "model": {"family": "ldm", "autoencoder": str(parts["pipe"])}})
    assert "model.autoencoder" in out and "has no config.json" in out


def test_the_head_width_must_match_the_clip_embeddings(tmp_path, parts):
    from diffcredit.extractors import get_extractor

    ext = get_extractor("aesthetic")
    state = ext.load({"head_path": str(aesthetic_head(tmp_path / "wide.pth", width=24))}, None, "cpu")
    with pytest.raises(ValueError, match="takes 24-d embeddings; the CLIP model gives 16-d"):
        ext.derive(state, {"embeds": np.ones((3, 16), dtype=np.float32)})
    torch.save({"w": torch.ones(3)}, tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="is not the state dict of a linear head"):
        ext.load({"head_path": str(tmp_path / "junk.pth")}, None, "cpu")


def test_text_sampling_settings_are_refused_for_unconditional_families(tmp_path):
    msg = plan_error(tmp_path, generate={"prompts": ["a cat"], "guidance_scale": 5.0})
    assert "generate.guidance_scale is a key of families ddpm_cond, ldm_cond, sd_lora, sdxl_lora, flux_lora, not of ddpm" in msg
    assert "generate.prompts is a key of families sd_lora, sdxl_lora, flux_lora, not of ddpm" in msg
