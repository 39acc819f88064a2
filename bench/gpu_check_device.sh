#!/usr/bin/env bash
# The GPU check on a lent GPU machine, which reaches no package index (`make gpu-check-device`
# runs this; plain `bash bench/gpu_check_device.sh [gpu_check.py args]` works where make is
# missing). Installs the carried wheels ($GPU_WHEELS, made by `make gpu-wheels`) beside the
# machine's own CUDA torch with pip --no-index --no-deps (no venv, no download), then runs
# bench/gpu_check.py unbuffered; its first phase prints the versions and imports every module.
set -euo pipefail
cd "$(dirname "$0")/.."
wheels="${GPU_WHEELS:-.gpu-wheels}"
py="${DEVICE_PY:-python3}"
if [ ! -d "$wheels" ]; then
  echo "error: $wheels missing: run make gpu-wheels on a machine with the package index and carry it" >&2
  exit 2
fi
echo "+ $py -m pip install --no-index --no-deps --find-links $wheels -r bench/gpu_requirements.txt"
"$py" -m pip install -q --no-index --no-deps --no-cache-dir --disable-pip-version-check \
  --find-links "$wheels" -r bench/gpu_requirements.txt
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=true
export PYTHONUNBUFFERED=1
exec "$py" bench/gpu_check.py "$@"
