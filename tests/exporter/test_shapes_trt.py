"""The `trt` flavor: the same graph with plugin nodes, run on the CPU through the plugins' reference ops."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from exporter.model_loading import load_model
from exporter.onnx_export import export_onnx
from exporter.surgery import initializer_inputs
from exporter.verify import verify_export
from runtime.plugins.spec import DOMAIN, NMS_FIELDS, NMS_OP, ROI_ALIGN_FIELDS, ROI_ALIGN_OP

pytest.importorskip("onnxruntime_extensions")


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "simplified"])
def exported(
    request: pytest.FixtureRequest, shapes_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
):
    try:
        from scripts.build_plugins import ensure_built

        ensure_built()
    except Exception as e:  # no compiler here: the reference ops cannot run
        pytest.skip(f"plugin reference library unavailable: {e}")
    out = tmp_path_factory.mktemp("onnx") / "model_trt.onnx"
    return export_onnx(shapes_checkpoint, out, flavor="trt", simplify=request.param, progress=False)


def test_plugin_nodes_replace_roi_align_and_nms(exported) -> None:
    model = onnx.load(str(exported.path))
    onnx.checker.check_model(model, full_check=True)
    assert initializer_inputs(model) == []
    ops = [n.op_type for n in model.graph.node]
    # RPN NMS + box NMS; box pooler + mask pooler; no standard op does their work any more
    assert ops.count(NMS_OP) == 2 and ops.count(ROI_ALIGN_OP) == 2
    assert not {"NonMaxSuppression", "RoiAlign"} & set(ops)
    for node in model.graph.node:
        if node.op_type in (NMS_OP, ROI_ALIGN_OP):
            assert node.domain == DOMAIN
            fields = NMS_FIELDS if node.op_type == NMS_OP else ROI_ALIGN_FIELDS
            assert {a.name for a in node.attribute} == set(fields)
    roi = next(n for n in model.graph.node if n.op_type == ROI_ALIGN_OP)
    assert len(roi.input) == 1 + 4  # rois + the 4 FPN levels the box head pools from
    assert exported.info.flavor == "trt"


def test_matches_pytorch(exported, shapes_checkpoint: Path) -> None:
    model = load_model(None, shapes_checkpoint).model
    result = verify_export(exported.path, model, 4, progress=False, raise_on_failure=False)
    assert result.failures == []
    assert result.report.num_matched == result.report.num_reference == 4 * 30
    assert result.report.worst("max_box_diff")[0] <= 0.05
    assert result.report.worst("max_score_diff")[0] <= 1e-4
