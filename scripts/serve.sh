#!/usr/bin/env bash
# Serve an exported model repository with the tritonserver of the nvidia-pytriton wheel (Python backend:
# the `python -m exporter --to triton --backend python` export runs on a CPU-only machine).
#   bash scripts/serve.sh MODEL_REPOSITORY [-- tritonserver options]
# Ports: HTTP $HTTP_PORT (8000), gRPC $GRPC_PORT (8001), metrics $METRICS_PORT (8002); $TRITON_ADDRESS picks
# the interface (default: 127.0.0.1, this machine only; 0.0.0.0 serves every interface). Creates .venv-serving
# first when it is missing or incomplete (scripts/setup_serving.sh).
# The server runs under runtime.triton.server (which replaces this shell) with a watchdog that restarts it when
# a Python step's stub dies; SIGTERM reaches it: it finishes in-flight requests and exits.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -lt 1 ]; then
    echo "usage: bash scripts/serve.sh MODEL_REPOSITORY [-- tritonserver options]" >&2
    exit 2
fi
PY="${MRD_SERVING_PYTHON:-$ROOT/.venv-serving/bin/python}"
if ! "$PY" -c "import pytriton, tritonclient.grpc, runtime.triton.server" >/dev/null 2>&1; then
    echo "setting up the serving environment (scripts/setup_serving.sh) ..." >&2
    bash "$ROOT/scripts/setup_serving.sh" >&2
fi
exec "$PY" -m runtime.triton.server "$@"
