"""A static-shape, fixed-batch export at the minimum opset, on images with zero detections."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from exporter.model_loading import load_model
from exporter.onnx_export import MIN_OPSET, export_onnx
from exporter.verify import verify_export
from runtime import onnx_contract as contract
from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from runtime.preprocess import preprocess
from tests.exporter_helpers import SHAPES_OPTS, save_shapes_checkpoint


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("static")
    # a score threshold no random-init detection reaches: every image has zero detections
    opts = [*SHAPES_OPTS[2:], "MODEL.ROI_HEADS.SCORE_THRESH", "0.9"]
    ckpt = save_shapes_checkpoint(tmp / "shapes.pth", opts)
    result = export_onnx(
        ckpt, tmp / "static.onnx", static_size=(320, 320), batch=2, opset=MIN_OPSET, progress=False
    )
    return ckpt, result


def test_static_input_shape_and_metadata(exported) -> None:
    _, result = exported
    model = onnx.load(str(result.path))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 3, 320, 320]
    info = contract.read_metadata(result.path)
    assert info.static_input_size == (320, 320) and info.batch == 2 and info.opset == MIN_OPSET


def test_zero_detections_match_pytorch(exported) -> None:
    ckpt, result = exported
    model = load_model(None, ckpt).model
    verified = verify_export(result.path, model, 3, progress=False, raise_on_failure=False)
    assert verified.failures == []
    assert verified.report.num_reference == verified.report.num_candidate == 0


def test_zero_detection_outputs_are_all_padding(exported) -> None:
    _, result = exported
    backend = OnnxRuntimeBackend(result.path, threads=1)
    image = np.full((200, 300, 3), 90, np.uint8)
    batch = preprocess([image], backend.info.preprocess, pad_to=backend.info.static_input_size)
    raws = backend.infer(batch)  # a batch of 1 padded to the static batch of 2
    assert len(raws) == 1 and len(raws[0]) == 0
    assert raws[0].masks is not None and raws[0].masks.shape == (0, 28, 28)


def test_openvino_runs_the_static_batch_with_zero_detections(exported) -> None:
    pytest.importorskip(
        "openvino", reason="OpenVINO is not installed (pip install 'maskrcnn-deploy[openvino]')"
    )
    from runtime.backends.openvino_backend import OpenVinoBackend

    _, result = exported
    backend = OpenVinoBackend(result.path, threads=1)
    assert backend.info.static_input_size == (320, 320) and backend.info.batch == 2
    images = [np.full((200, 300, 3), 90, np.uint8)]
    batch = preprocess(images, backend.info.preprocess, pad_to=backend.info.static_input_size)
    raws = backend.infer(batch)  # one image filled up to the static batch of 2
    assert len(raws) == 1 and len(raws[0]) == 0
    assert raws[0].masks is not None and raws[0].masks.shape == (0, 28, 28)
