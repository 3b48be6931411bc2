"""`runtime` is what gets deployed: it must import (and pick backends) where torch, TensorRT and OpenVINO don't exist."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.common import REPO

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class _Block(importlib.abc.MetaPathFinder):
        BLOCKED = ("torch", "torchvision", "tensorrt", "openvino")

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
    import runtime.backends.openvino_backend
    import runtime.box_ops
    import runtime.compute_floor
    import runtime.coco_eval
    import runtime.compare
    import runtime.datasets
    import runtime.draw
    import runtime.evaluate
    import runtime.image_io
    import runtime.model_file
    import runtime.onnx_contract
    import runtime.openvino_ir
    import runtime.plugins.abi
    import runtime.plugins.cuda
    import runtime.plugins.library
    import runtime.plugins.ort_reference
    import runtime.plugins.reference
    import runtime.plugins.spec
    import runtime.postprocess
    import runtime.predictor
    import runtime.preprocess
    import runtime.structures
    import runtime.triton.serve_bench
    import runtime.tensorrt_probe
    import runtime.triton.client
    import runtime.triton.config
    import runtime.triton.contract
    import runtime.triton.server
    import runtime.triton.steps
    import runtime.webcam
    import runtime.backends.triton_backend
    from runtime.backends.base import BackendUnavailable
    from runtime.model_file import load_backend

    # named data sets resolve without the trainer (evaluation and calibration on a deployment-only install)
    runtime.datasets.DatasetCatalog.get("coco_2017_val", sys.argv[1], generate=False)

    leaked = sorted(m for m in sys.modules
                    if m.split(".")[0] in ("torch", "torchvision", "tensorrt", "openvino", "trainer"))
    assert not leaked, leaked

    # The heavy backends say what is missing instead of a deep ImportError.
    for name in ("model.engine", "model.pth", "model.xml"):
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


def test_runtime_imports_without_torch_tensorrt_and_openvino(tmp_path: Path) -> None:
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
    assert "pip install 'maskrcnn-deploy[openvino]'" in proc.stdout  # and the IR's


#: what each package may import of ours (ARCHITECTURE.md, "Direction of dependence"): every arrow points one way
ALLOWED_IMPORTS = {
    "runtime": set(),
    "calibration": {"runtime"},
    "trainer": {"runtime"},
    "exporter": {"runtime", "calibration", "trainer"},
}


def test_every_arrow_points_one_way() -> None:
    """runtime imports no other package of ours (the PyTorch backend lives in the trainer and runtime names it
    by string), calibration and trainer use runtime only, the exporter uses all three: no loop."""
    import ast

    offenders = []
    for package, allowed in ALLOWED_IMPORTS.items():
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                ours = {n.split(".")[0] for n in names} & set(ALLOWED_IMPORTS)
                if ours - allowed - {package}:
                    offenders.append(
                        f"{path.relative_to(REPO)}:{node.lineno} imports {sorted(ours - allowed)}"
                    )
    assert offenders == []
    from runtime.model_file import BACKENDS

    assert BACKENDS["torch"].startswith("trainer."), "runtime reaches the PyTorch backend by name only"
