#!/usr/bin/env bash
# Lint, type-check the TensorRT code against tensorrt-stubs, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/pytest -q "$@"
