#!/usr/bin/env bash
# The GPU checks in one go: the CUDA tests, then training throughput (diffcredit's loop
# vs the plain diffusers loop) for the CIFAR-20 UNet in bf16 and fp32 and for the LoRA
# families (miniSD, SDXL, FLUX) in bf16.
#   bash benchmarks/gpu.sh [LOG_DIR] [STAGE ...]     stages: tests ddpm sd_lora sdxl_lora flux_lora (default all)
# Wheels in .whl/ (packages the GPU machine's Python lacks) are installed first.
set -uo pipefail
log=${1:-benchmarks/results}
shift || true
stages=${*:-tests ddpm sd_lora sdxl_lora flux_lora}
mkdir -p "$log"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DIFFCREDIT_OFFLINE=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$log/gpu.txt"
python3 -c "import torch, diffusers, peft; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'peft', peft.__version__)" | tee -a "$log/gpu.txt"
bench() {  # family, then train_throughput.py's arguments
  local family=$1; shift
  timeout 300 python3 benchmarks/train_throughput.py --family "$family" --device cuda --threads 8 "$@" 2>&1 \
    | grep -v "should be kept in float32" | tee -a "$log/train_throughput_cuda.txt"
}
for stage in $stages; do
  case $stage in
    tests) timeout 400 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$log/test_cuda.txt" ;;
    ddpm) for precision in bf16 fp32; do
            bench ddpm --precision "$precision" --batch 128 --steps 40 --repeats 5
          done ;;
    sd_lora) bench sd_lora --precision bf16 --batch 16 --steps 20 --repeats 3 ;;
    sdxl_lora) for frozen in float32 bfloat16; do
                 bench sdxl_lora --precision bf16 --frozen "$frozen" --batch 2 --steps 10 --repeats 3
               done ;;
    flux_lora) bench flux_lora --precision bf16 --batch 4 --steps 10 --repeats 3 ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
