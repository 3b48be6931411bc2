"""The demo notebook, executed as a user would run it (on a small random model and data set)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.common import REPO

nbclient = pytest.importorskip("nbclient", reason="the notebook runner: pip install 'maskrcnn-deploy[dev]'")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel", reason="the notebook's kernel: pip install 'maskrcnn-deploy[dev]'")


def test_the_demo_notebook_runs(
    tmp_path: Path,
    random_shapes_checkpoint: Path,
    tiny_shapes: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"MRD_NB_ROOT": str(REPO), "MRD_NB_WEIGHTS": str(random_shapes_checkpoint),
           "MRD_NB_DATASET": tiny_shapes["val"], "MRD_NB_OUTPUT": str(tmp_path / "report"),
           "MRD_NB_MAX_IMAGES": "2", "MRD_NB_PRECISIONS": "fp32", "MRD_NB_BENCH_IMAGES": "1",
           "MRD_NB_ITERS": "2", "MRD_NB_VERIFY_IMAGES": "1", "MRD_NB_MATMUL_SIZES": "256",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(REPO / "demo" / "maskrcnn_deploy_demo.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()  # fmt: skip
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # detections and heatmaps, keypoints, the latency-against-AP plot
    text = "".join(o.get("text", "") for o in outputs)
    assert "Recommendation:" in text and "onnxruntime" in text
    assert (tmp_path / "report" / "report.json").is_file()
