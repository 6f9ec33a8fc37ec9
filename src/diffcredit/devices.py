"""Device and precision, chosen once per job.

`device: auto` uses CUDA when the job's machine has a GPU, else the CPU. Mixed
precision (`bf16`, `fp16`) autocasts the forward passes on CUDA; the CPU always
computes in fp32, so CPU results stay bit-identical run to run.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRECISIONS = ("fp32", "bf16", "fp16")


def visible_gpus() -> int:
    """GPUs this process may use, without importing torch (NVIDIA driver's /proc
    entries, limited by CUDA_VISIBLE_DEVICES)."""
    proc = Path("/proc/driver/nvidia/gpus")
    n = len(list(proc.iterdir())) if proc.is_dir() else 0
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    if mask is not None:
        ids = [d for d in mask.split(",") if d.strip() and d.strip() != "-1"]
        n = min(n, len(ids))
    return n


def resolve(device: str):
    """A torch.device for `auto`, `cpu` or `cuda`; `cuda` without a GPU is an error."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device is 'cuda' but this machine has no usable GPU; set device: cpu or auto")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}: use auto, cpu or cuda")
    return torch.device(device)


def dtype_of(precision: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device, dtype):
    """Autocast to `dtype` on CUDA; a no-op on the CPU or in fp32."""
    import torch

    if device.type != "cuda" or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


def setup(device: str, threads: int):
    """Pin CPU threads and make CUDA deterministic; returns the torch.device."""
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
    dev = resolve(device)
    if dev.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return dev


def granted_threads(threads: int) -> int:
    """`threads`, or fewer where the job was given fewer: Snakemake sets OMP_NUM_THREADS to
    the threads it grants a job, which `--cores` can make less than the rule asked."""
    n = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(threads, int(n)) if n.isdigit() and int(n) > 0 else threads


def job_device(job: dict):
    """(torch.device, dtype) of a workflow job: its `device`, `threads` (as granted) and
    `precision`."""
    threads = granted_threads(job.get("threads", 1))
    return setup(job.get("device", "cpu"), threads), dtype_of(job.get("precision", "fp32"))
