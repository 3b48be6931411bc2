#!/usr/bin/env bash
# Create .venv-serving, the serving side's own environment: the tritonserver that the nvidia-pytriton wheel
# bundles (Triton 2.51, Python backend), tritonclient (HTTP + gRPC), and this checkout (editable, so the
# Python-backend steps import its `runtime`). It is separate from .venv because pytriton pins numpy < 2
# (its backend stub garbles numpy 2 inputs), while the main environment keeps numpy 2 and torch.
# Usage: bash scripts/setup_serving.sh   (PYTHON=python3.X to choose the interpreter: it needs a shared
# libpython and one of the stubs the wheel ships, 3.8 to 3.13; SERVING_VENV=DIR for another location)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SERVING_VENV:-.venv-serving}
if [ -z "${PYTHON:-}" ]; then
    # the interpreter .venv was made from, so both environments run the same Python
    PYTHON=$(.venv/bin/python -c 'import sys; print(sys._base_executable)' 2>/dev/null || command -v python3)
fi
# a setup interrupted while the venv was made leaves a python without pip: every later run failed with "No
# module named pip" until the folder was deleted by hand; such a venv (ours: it has pyvenv.cfg) is made again
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    if [ -f "$VENV/pyvenv.cfg" ]; then
        echo "$VENV is incomplete (an interrupted setup?): making it again" >&2
        rm -rf "$VENV"
    else
        echo "error: $VENV has a python without pip and is not a venv; remove it or set SERVING_VENV" >&2
        exit 2
    fi
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# numpy < 2 stated here too: otherwise opencv/onnxruntime would pull numpy 2 past pytriton's pin
"${PIP[@]}" "numpy>=1.24,<2" -e ".[triton]"
"$VENV/bin/python" - <<'PY'
import sys

import numpy, onnxruntime, pytriton, tritonclient.grpc, tritonclient.http  # noqa: F401

from runtime.triton.server import locate

triton = locate(sys.executable)
print(f"serving environment ready: {sys.prefix} (Python {triton.python_version}, numpy {numpy.__version__}, "
      f"onnxruntime {onnxruntime.__version__}); tritonserver {triton.executable}")
PY
