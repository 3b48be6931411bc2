"""`runtime` is what gets deployed: it must import (and pick backends) where torch and TensorRT don't exist."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class _Block(importlib.abc.MetaPathFinder):
        BLOCKED = ("torch", "torchvision", "tensorrt")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"No module named {name!r} (blocked by the light-import test)")
            return None

    sys.meta_path.insert(0, _Block())
    """
)

CHECK = textwrap.dedent(
    """
    import sys
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker did not block torch")

    import runtime.backends.base
    import runtime.backends.onnxruntime_backend
    import runtime.bench
    import runtime.box_ops
    import runtime.coco_eval
    import runtime.compare
    import runtime.draw
    import runtime.evaluate
    import runtime.image_io
    import runtime.model_file
    import runtime.onnx_contract
    import runtime.postprocess
    import runtime.predictor
    import runtime.preprocess
    import runtime.structures
    import runtime.tensorrt_probe
    import runtime.webcam
    from runtime.backends.base import BackendUnavailable
    from runtime.model_file import load_backend

    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "tensorrt", "trainer"))
    assert not leaked, leaked

    # The heavy backends say what is missing instead of a deep ImportError.
    for name in ("model.engine", "model.pth"):
        path = sys.argv[1] + "/" + name
        open(path, "wb").write(b"not a model")
        try:
            load_backend(path)
        except BackendUnavailable as e:
            print(name, "->", e)
        else:
            raise SystemExit(f"{name} loaded without its library")
    print("LIGHT-IMPORT-OK")
    """
)


def test_runtime_imports_without_torch_and_tensorrt(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    proc = subprocess.run(
        [sys.executable, "-c", CHECK, str(tmp_path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "LIGHT-IMPORT-OK" in proc.stdout
    assert "TensorRT" in proc.stdout  # the engine's message names what to install
    assert "PyTorch" in proc.stdout  # the .pth's message too
