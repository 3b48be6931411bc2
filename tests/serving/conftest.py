"""Fixtures of the serving tests: the serving environment, exported repositories and a real tritonserver.

The serving side has its own environment (``.venv-serving``: pytriton pins numpy < 2); it is made by
``scripts/setup_serving.sh`` when missing, once, and the tests that need it are skipped with the setup's
own words when that fails. The server is the ``tritonserver`` the ``nvidia-pytriton`` wheel bundles,
started by ``scripts/serve.sh`` on free loopback ports and stopped with SIGTERM.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import cv2
import pytest

from tests.common import REPO
from tests.runtime_fixtures import make_image

SETUP_TIMEOUT_S = 900
#: the images the server tests send: two share a size (so they can share a batch), one differs
IMAGE_SIZES = ((120, 160), (120, 160), (150, 112))


def _serving_python_ready(python: Path) -> str | None:
    """None when ``python`` has what the serving side needs, else why not."""
    check = "import pytriton, tritonclient.grpc, tritonclient.http, onnxruntime, cv2, runtime.triton.steps"
    try:
        proc = subprocess.run(
            [str(python), "-c", check], capture_output=True, text=True, timeout=120, cwd=REPO
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]


@pytest.fixture(scope="session")
def serving_python() -> Path:
    """The serving environment's Python (made by scripts/setup_serving.sh when missing)."""
    from runtime.triton.server import ENV_SERVING_PYTHON, SERVING_VENV

    python = Path(os.environ.get(ENV_SERVING_PYTHON) or SERVING_VENV / "bin" / "python")
    # one setup at a time: pytest-xdist workers each run this fixture
    lock_path = (
        Path(tempfile.gettempdir()) / f"mrd-serving-setup-{hashlib.sha1(bytes(python)).hexdigest()[:12]}.lock"
    )
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        why = _serving_python_ready(python) if python.exists() else f"{python} does not exist"
        if why is not None and not os.environ.get(ENV_SERVING_PYTHON):
            try:
                proc = subprocess.run(["bash", str(REPO / "scripts" / "setup_serving.sh")], capture_output=True,
                                      text=True, timeout=SETUP_TIMEOUT_S, cwd=REPO)  # fmt: skip
            except subprocess.TimeoutExpired:
                pytest.skip(f"scripts/setup_serving.sh took over {SETUP_TIMEOUT_S} s")
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
                pytest.skip(
                    f"the serving environment cannot be set up here (scripts/setup_serving.sh): {tail}"
                )
            why = _serving_python_ready(python)
    if why is not None:
        pytest.skip(f"the serving environment {python} is not usable: {why}")
    return python


@pytest.fixture(scope="session")
def serving_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PNG files (lossless, so the server and this process decode the same pixels)."""
    folder = tmp_path_factory.mktemp("serving_images")
    for i, (h, w) in enumerate(IMAGE_SIZES):
        cv2.imwrite(str(folder / f"img{i}.png"), make_image(seed=i, h=h, w=w))
    return folder


@pytest.fixture(scope="session")
def python_repository(random_shapes_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CPU variant (--backend python) of the shapes model, every detection returned (threshold 0)."""
    from exporter.cli import main

    out = tmp_path_factory.mktemp("triton") / "model_repository"
    rc = main(["--to", "triton", "--onnx", str(random_shapes_onnx), "--output", str(out), "--backend", "python",
               "--max-batch-size", "4", "--confidence-threshold", "0", "--max-queue-delay-us", "20000", "--quiet"])  # fmt: skip
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def triton_server(serving_python: Path, python_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    """``bash scripts/serve.sh`` on the CPU variant, on free loopback ports; stopped with SIGTERM after."""
    from runtime.triton.server import ServerUnavailable, TritonProcess

    log = tmp_path_factory.mktemp("triton_log") / "tritonserver.log"
    server = TritonProcess.serve_sh(python_repository, serving_python, log_path=log)
    try:
        server.wait_ready(timeout_s=180)
    except ServerUnavailable as e:
        server.stop()
        pytest.skip(f"the bundled tritonserver cannot start here: {e}")
    yield server
    status = server.stop()
    assert status == 0, (
        f"tritonserver did not stop cleanly on SIGTERM (status {status}):\n{server.log_tail()}"
    )
