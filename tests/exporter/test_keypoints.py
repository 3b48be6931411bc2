"""Keypoint R-CNN export: heatmaps out of the graph, one host decoding for every backend, parity with PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from exporter.model_loading import load_model
from exporter.onnx_export import export_onnx
from exporter.verify import verify_export
from runtime import onnx_contract as contract
from runtime.plugins.spec import ROI_ALIGN_OP
from runtime.preprocess import preprocess
from runtime.synthetic import images_around
from tests.exporter_helpers import KEYPOINT_OPTS, SHAPES_OPTS, assert_verified, save_shapes_checkpoint
from trainer.inference import preprocess_params, raw_forward_batch


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kp_ckpt") / "keypoints.pth"
    return save_shapes_checkpoint(path, [*SHAPES_OPTS, *KEYPOINT_OPTS])


@pytest.fixture(scope="module", params=[("ort", False), ("trt", True)], ids=["ort", "trt-simplified"])
def exported(request: pytest.FixtureRequest, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    flavor, simplify = request.param
    if flavor == "trt":
        pytest.importorskip("onnxruntime_extensions")
        try:
            from scripts.build_plugins import ensure_built

            ensure_built()
        except Exception as e:  # no compiler here: the reference ops cannot run
            pytest.skip(f"plugin reference library unavailable: {e}")
    out = tmp_path_factory.mktemp("kp_onnx") / f"keypoints_{flavor}.onnx"
    return export_onnx(checkpoint, out, flavor=flavor, simplify=simplify, progress=False)


def test_matches_pytorch(exported, checkpoint: Path) -> None:
    model = load_model(None, checkpoint).model
    # 5 generated images (shrunk, enlarged, near-blank), batches of 2, 2 and 1
    result = verify_export(exported.path, model, 5, progress=False, raise_on_failure=False)
    assert_verified(result, 5, 30)
    # keypoints: the same argmax pixel on both sides, so they move only with their box (<= 0.05 px)
    assert result.report.worst("max_keypoint_diff")[0] <= 0.05


def test_graph_outputs_heatmaps_and_names(exported) -> None:
    model = onnx.load(str(exported.path))
    names = [o.name for o in model.graph.output]
    assert names == [*contract.DETECTION_OUTPUTS, contract.OUTPUT_KEYPOINT_HEATMAPS]
    dims = [d.dim_param or d.dim_value for d in model.graph.output[-1].type.tensor_type.shape.dim]
    assert dims == ["batch", 30, 4, 56, 56]
    info = contract.read_metadata(exported.path)
    assert info.keypoint_names == tuple(f"keypoint_{i}" for i in range(4)) and info.mask_size is None
    if exported.info.flavor == "trt":  # box pooler + keypoint pooler, both plugin nodes
        assert [n.op_type for n in model.graph.node].count(ROI_ALIGN_OP) == 2


def test_reference_keypoints_equal_torchvisions_decoding(checkpoint: Path) -> None:
    """The PyTorch side decodes its heatmaps with runtime's decoding; that must be torchvision's result."""
    loaded = load_model(None, checkpoint)
    model = loaded.model
    batch = preprocess(images_around(2, preprocess_params(loaded.cfg)), preprocess_params(loaded.cfg))
    ours = raw_forward_batch(model, batch)
    images = torch.from_numpy(batch.images)
    sizes = [tuple(s) for s in batch.image_sizes.tolist()]
    with torch.no_grad():
        from torchvision.models.detection.image_list import ImageList

        features = model.backbone(images)
        proposals, _ = model.rpn(ImageList(images, sizes), features)
        detections, _ = model.roi_heads(features, proposals, sizes)
    for raw, det in zip(ours, detections):
        assert raw.keypoints is not None and raw.keypoints.shape == (30, 4, 3)
        np.testing.assert_array_equal(raw.keypoints[..., :2], det["keypoints"][..., :2].numpy())
        np.testing.assert_allclose(raw.keypoints[..., 2], det["keypoints_scores"].numpy(), atol=1e-4, rtol=0)
