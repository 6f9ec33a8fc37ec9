"""Pretrained parts named by a hub id or a local directory (an autoencoder, a Stable
Diffusion pipeline, CLIP, BLIP), described when the workflow is parsed.

A local directory is keyed by the content of its config and weight files (hashed
once, then cached by size and mtime), so moving it changes nothing and replacing its
weights reruns what used them. A hub id is keyed by the id, subfolder and the commit
of the cached snapshot. Describing reads only small files and never imports torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .keys import sha256_hex

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack")


class PretrainedError(ValueError):
    """A pretrained part cannot be found or is not what the config says."""


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or \
        os.environ.get("DIFFCREDIT_OFFLINE") == "1"


def reference(value, what: str) -> dict:
    """{"path", "subfolder", "revision"} from a string or such a mapping."""
    if isinstance(value, str):
        value = {"path": value}
    if not isinstance(value, dict) or not value.get("path"):
        raise PretrainedError(f"{what}: give a hub id or a local directory (or {{path, subfolder, revision}})")
    return {"path": str(value["path"]), "subfolder": value.get("subfolder") or None,
            "revision": value.get("revision") or None}


def located(value, what: str) -> dict:
    """A reference for jobs: a local directory made absolute (jobs may run elsewhere)."""
    ref = reference(value, what)
    local = Path(ref["path"]).expanduser()
    if local.is_dir():
        ref["path"] = str(local.resolve())
    return ref


def _files_digest(folder: Path, cache) -> str:
    """Hash of the config and weight files under `folder` (names and contents)."""
    from .artifacts import file_sha256

    parts = []
    for f in sorted(folder.rglob("*")):
        if f.is_file() and (f.suffix in WEIGHT_SUFFIXES or f.suffix == ".json" or f.suffix == ".txt"):
            digest = cache.get_or_compute(f, lambda f=f: file_sha256(f), tag="sha256")
            parts.append(f"{f.relative_to(folder).as_posix()} {digest}")
    return sha256_hex("\n".join(parts))


def _hub_file(ref: dict, filename: str) -> Path:
    """A file of a hub repository from the local cache, downloaded when online."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    kwargs = {"subfolder": ref["subfolder"], "revision": ref["revision"]}
    inside = f"{ref['subfolder']}/{filename}" if ref["subfolder"] else filename
    try:
        hit = try_to_load_from_cache(ref["path"], inside, revision=ref["revision"])
    except ValueError as exc:  # not a valid repository id
        raise PretrainedError(f"it is neither a local directory nor a hub id ({exc})") from None
    if isinstance(hit, str):
        return Path(hit)
    if offline():
        raise PretrainedError("it is not a local directory, and the hub is offline with no cached copy")
    unreachable = _hub_unreachable()
    if unreachable:
        raise PretrainedError(f"it is not a local directory nor in the hub's cache, and the hub cannot be reached "
                              f"from here ({unreachable})")
    try:
        return Path(hf_hub_download(ref["path"], filename, **kwargs))
    except Exception as exc:  # network, missing repository or file
        raise PretrainedError(f"it is not a local directory, and the hub did not give {filename} "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub's host cannot be reached (one connection, `timeout` seconds), or None.
    On a node without network a download would retry for half a minute first. Behind
    a proxy only the download itself can tell."""
    import socket
    from urllib.parse import urlsplit

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                                       "all_proxy")):
        return None

    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"
    return None


def describe(value, what: str, cache, config_name: str = "config.json") -> dict:
    """{"ref", "config", "identity", "folder"} of a pretrained part.

    `identity` goes into keys; `ref` tells jobs where to load from; `folder` is the
    local directory (None for a hub id)."""
    if cache is None:
        from .data import HashCache

        cache = HashCache(None)
    ref = reference(value, what)
    local = Path(ref["path"]).expanduser()
    if local.is_dir():
        folder = local / ref["subfolder"] if ref["subfolder"] else local
        config = folder / config_name
        if not config.is_file():
            raise PretrainedError(f"{what} {folder} has no {config_name}: expected a diffusers/transformers "
                                  "directory written by save_pretrained")
        ref = {**ref, "path": str(local.resolve())}
        identity = {"content": _files_digest(folder, cache)}
    else:
        if ref["path"].startswith((".", "/", "~")):  # a path, not a hub id
            raise PretrainedError(f"{what} {ref['path']} is not a directory")
        try:
            config = _hub_file(ref, config_name)
        except PretrainedError as exc:
            raise PretrainedError(
                f"{what} {ref['path']!r}: {exc}; download it where the hub is reachable "
                f"(huggingface-cli download {ref['path']}) or give a local directory") from None
        folder = None
        snapshot = config.parent if not ref["subfolder"] else config.parent.parent
        identity = {"hub": ref["path"], "subfolder": ref["subfolder"], "commit": snapshot.name}
    try:
        cfg = json.loads(Path(config).read_text())
    except ValueError as exc:
        raise PretrainedError(f"{what}: {config} is not JSON ({exc})") from None
    return {"ref": ref, "config": cfg, "identity": identity, "folder": str(folder) if folder else None}


def local_folder(ref: dict) -> Path | None:
    """The local directory of a reference (a hub id's cached snapshot), or None."""
    local = Path(ref["path"]).expanduser()
    if local.is_dir():
        return local / ref["subfolder"] if ref.get("subfolder") else local
    try:
        from huggingface_hub import try_to_load_from_cache

        inside = f"{ref['subfolder']}/config.json" if ref.get("subfolder") else "config.json"
        hit = try_to_load_from_cache(ref["path"], inside, revision=ref.get("revision"))
    except Exception:  # not a valid repository id
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def dtype_kwargs(dtype: str | None) -> dict:
    """diffusers' from_pretrained argument that loads weights in `dtype` (a torch dtype's
    name; None: as the library defaults): `dtype`, or `torch_dtype` before the rename."""
    if not dtype:
        return {}
    import torch
    from diffusers.utils import deprecation_utils

    renamed = hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE")
    return {"dtype" if renamed else "torch_dtype": getattr(torch, dtype)}


def load_kwargs(ref: dict) -> dict:
    """from_pretrained arguments of a reference."""
    out = {}
    if ref.get("subfolder"):
        out["subfolder"] = ref["subfolder"]
    if ref.get("revision"):
        out["revision"] = ref["revision"]
    if offline():
        out["local_files_only"] = True
    return out
