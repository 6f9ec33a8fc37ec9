"""The plain diffusers FLUX LoRA training step on CUDA, with and without cuDNN's attention.

On an H200 with torch 2.11.0+cu130 the backward pass of FLUX.1-dev's transformer
(batch 4, 256 px, 512 T5 tokens) failed inside cuDNN's attention kernel (an illegal
memory access; reported as CUBLAS_STATUS_EXECUTION_FAILED at a later GEMM unless
CUDA_LAUNCH_BLOCKING=1), in the plain diffusers loop as in diffcredit's. diffcredit's
training turns cuDNN attention off on CUDA (flash and memory-efficient attention
remain). This runs the plain loop for a few steps and says whether it went through:

    python benchmarks/flux_attention.py --cudnn on|off [--batch 4] [--steps 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput as tt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cudnn", choices=["on", "off"], default="on")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    dev = torch.device("cuda")
    torch.backends.cuda.enable_cudnn_sdp(args.cudnn == "on")
    start = time.perf_counter()
    try:
        tt.plain("flux_lora", args.steps, args.batch, dev, torch.bfloat16, [], 4, "full", "bfloat16")
        torch.cuda.synchronize()
        print(f"plain FLUX loop, cuDNN attention {args.cudnn}: {args.steps} steps ran "
              f"({time.perf_counter() - start:.1f} s)")
    except Exception as exc:  # noqa: BLE001 - what failed, then a non-zero exit
        print(f"plain FLUX loop, cuDNN attention {args.cudnn}: FAILED {type(exc).__name__}: {str(exc)[:200]}")
        sys.exit(1)


if __name__ == "__main__":
    main()
