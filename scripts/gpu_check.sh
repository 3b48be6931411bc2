#!/usr/bin/env bash
# The GPU check of the CUDA plugin kernels in one call (README, "### Plugins"): installs the carried wheels, builds
# the kernels for the GPU found, runs tests/plugins/test_gpu.py, memchecks one test, times the kernels against
# torchvision's CUDA ops, then times R-50-FPN Mask R-CNN in FP32 and FP16; one table last.
#   bash scripts/gpu_check.sh [--require-gpu] [--out DIR] [--budget-s 280]   (results: $OUT, else output/gpu-check)
# On a lent device: python scripts/prepare_gpu_check.py here first; it prints the exact `run` call.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  # the project's venv where it was made (it does not travel); the device's python3 holds torch
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
exec "$PY" benchmarks/gpu_check.py "$@"
