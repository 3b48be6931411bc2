#!/usr/bin/env bash
# Create .venv with everything the project needs and build the plugin libraries (host reference always,
# CUDA kernels where nvcc exists, TensorRT plugins where TensorRT headers are found).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# torch first, pinned to the build that pairs with PyPI's torchvision (a CUDA build that also runs on the CPU)
.venv/bin/python -c "import torch, torchvision" 2>/dev/null || "${PIP[@]}" "torch==2.14.1" "torchvision==0.29.1"
"${PIP[@]}" -e ".[all,dev]"
"${PIP[@]}" --no-deps "tensorrt-stubs>=10.13"
command -v cmake >/dev/null || "${PIP[@]}" cmake
CMAKE_ARGS=(-S . -B build -DCMAKE_BUILD_TYPE=Release)
[ -x /usr/local/bin/nvcc ] && CMAKE_ARGS+=(-DCMAKE_CUDA_COMPILER=/usr/local/bin/nvcc)
[ -n "${TENSORRT_ROOT:-}" ] && CMAKE_ARGS+=(-DTENSORRT_ROOT="$TENSORRT_ROOT")
cmake "${CMAKE_ARGS[@]}" >/dev/null
cmake --build build -j"$(nproc)"
echo "setup done: activate with 'source .venv/bin/activate'"
