"""Running Python with AVX-512 hidden from CPUID: the kernel paths of an AVX2-only CPU (AMD Zen 2/3, older Xeons).

``qemu-x86_64 -cpu Haswell`` (Debian's ``qemu-user``) emulates a CPU with AVX2, FMA and no AVX-512 or VNNI;
ONNX Runtime, OpenVINO, numpy and torch dispatch on CPUID, so under it they take the paths such a CPU takes.
It emulates, so it is slow (about 15x): models are prepared natively and only inference runs under it, and
no speed is ever measured there.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from tests.common import REPO

QEMU = shutil.which("qemu-x86_64")
CPU_MODEL = "Haswell"


def skip_reason() -> str | None:
    """Why the AVX2 checks cannot run here (None: they can)."""
    if platform.machine() != "x86_64":
        return f"the AVX2 checks emulate an x86-64 CPU; this machine is {platform.machine()}"
    if QEMU is None:
        return "qemu-x86_64 is not installed (Debian: apt-get install qemu-user); the AVX2 checks need it"
    return None


def run_under_avx2(code: str, timeout: float = 300) -> object:
    """Run ``code`` (which prints one JSON line last) in this venv's Python under AVX2 emulation."""
    assert QEMU is not None
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [QEMU, "-cpu", CPU_MODEL, sys.executable, "-c", code],
        capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env,
    )  # fmt: skip
    if proc.returncode != 0:
        tail = "\n".join(line for line in proc.stderr.splitlines() if "TCG doesn't support" not in line)[
            -3000:
        ]
        raise AssertionError(f"under qemu -cpu {CPU_MODEL}: exit {proc.returncode}\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def model_path_literal(path: Path) -> str:
    return json.dumps(str(path))
