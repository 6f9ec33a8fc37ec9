#!/usr/bin/env bash
# The GPU checks in one go: the CUDA tests, then CIFAR-20 training throughput
# (diffcredit's loop vs the plain diffusers loop) in fp32 and bf16.
#   bash benchmarks/gpu.sh [LOG_DIR]
# Wheels in .whl/ (packages the GPU machine's Python lacks) are installed first.
set -uo pipefail
log=${1:-benchmarks/results}
mkdir -p "$log"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DIFFCREDIT_OFFLINE=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$log/gpu.txt"
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)" | tee -a "$log/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$log/test_cuda.txt"
for precision in bf16 fp32; do
  python3 benchmarks/train_throughput.py --device cuda --precision "$precision" --batch 128 --steps 40 \
    --repeats 5 --threads 8 2>&1 | tee -a "$log/train_throughput_cuda.txt"
done
