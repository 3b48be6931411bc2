#!/usr/bin/env bash
# Lint, then the test suite (which also type-checks the TensorRT code against tensorrt-stubs).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# two test processes on two cores: one thread each, set before torch starts its pool
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# the slowest tests are listed at the end: the suite must stay under 10 minutes
.venv/bin/pytest -q -n 2 --durations=15 "$@"
