#!/usr/bin/env bash
# The cross-CPU checks, all of them: the INT8 models and an imported checkpoint computed on the kernel paths of
# an AVX2-only CPU (AVX-512 and VNNI hidden from CPUID by `qemu-x86_64 -cpu Haswell`), compared with this
# machine's answers and with the references. The suite runs the quick one (tests/cross_cpu, about 35 s); this
# adds those that take minutes under emulation (OpenVINO's INT8 IR, the maskrcnn-benchmark checkpoint's four
# photos). Needs Debian's qemu-user (apt-get install qemu-user) and the .venv of scripts/setup.sh.
# Speeds are never measured under emulation.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v qemu-x86_64 >/dev/null || { echo "qemu-x86_64 not found: apt-get install qemu-user" >&2; exit 2; }
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MRD_AVX2_FULL=1
.venv/bin/pytest -q -p no:cacheprovider tests/cross_cpu -rs --durations=0 "$@"
