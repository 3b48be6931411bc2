"""The `ort` flavor of the shapes model: exact parity with PyTorch, dynamic shapes, a clean graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from exporter.onnx_export import export_onnx
from exporter.surgery import initializer_inputs
from exporter.verify import verify_export
from runtime import onnx_contract as contract
from tests.exporter_helpers import SHAPES_CLASSES, assert_verified


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "simplified"])
def exported(
    request: pytest.FixtureRequest, shapes_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
):
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    # no --config-file: the shapes_checkpoint's saved config is used
    return export_onnx(shapes_checkpoint, out, flavor="ort", simplify=request.param, progress=False)


def test_matches_pytorch_on_shrunk_enlarged_and_batched_images(exported, shapes_checkpoint: Path) -> None:
    from exporter.model_loading import load_model

    model = load_model(None, shapes_checkpoint).model
    # 5 generated images: 2 shrunk, 2 enlarged, 1 near-blank; batches of 2, 2 and 1
    result = verify_export(exported.path, model, 5, progress=False, raise_on_failure=False)
    assert_verified(result, 5, 30)
    assert result.load_warnings == []


def test_graph_is_clean_and_self_describing(exported) -> None:
    model = onnx.load(str(exported.path))
    onnx.checker.check_model(model, full_check=True)
    assert initializer_inputs(model) == []
    assert [i.name for i in model.graph.input] == list(contract.INPUT_NAMES)
    assert [o.name for o in model.graph.output] == [*contract.DETECTION_OUTPUTS, contract.OUTPUT_MASKS]
    assert all(not n.domain for n in model.graph.node)  # standard ops only
    assert {"NonMaxSuppression", "RoiAlign", "TopK"} <= {n.op_type for n in model.graph.node}
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    info = contract.read_metadata(exported.path)
    assert list(info.class_names) == SHAPES_CLASSES
    assert info.flavor == "ort" and info.opset == 17
    assert info.mask_size == 28 and info.detections_per_image == 30
    assert info.preprocess.min_size == 192 and info.preprocess.max_size == 320
    assert "ROI_HEADS" in info.config_yaml
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props[contract.META_CLASS_NAMES]) == SHAPES_CLASSES


def test_padding_never_leaks(exported) -> None:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    images = rng.standard_normal((2, 3, 192, 256)).astype(np.float32)
    images[1, :, 96:, :] = 0.0  # second image smaller, zero padded like preprocess does
    sizes = np.array([[192, 256], [96, 256]], np.int64)
    names = [o.name for o in sess.get_outputs()]
    out = dict(zip(names, sess.run(names, {"images": images, "image_sizes": sizes})))
    for b, n in enumerate(out["num_detections"]):
        assert np.all(out["labels"][b, n:] == contract.PADDING_LABEL)
        assert np.all(out["scores"][b, n:] == 0) and np.all(out["boxes"][b, n:] == 0)
        assert np.all(out["labels"][b, :n] >= 1)
        # boxes stay inside each image's own (unpadded) size
        assert out["boxes"][b, :n, 3].max(initial=0) <= sizes[b, 0] + 1e-3


def test_divergence_is_reported_by_output_name(exported, shapes_checkpoint: Path, tmp_path: Path) -> None:
    """The failed model is named as such, so no deployment picks it up, and no command loads it unasked."""
    import shutil

    import torch

    from exporter.errors import VerificationError
    from exporter.model_loading import load_model
    from runtime.backends.base import BackendError
    from runtime.model_file import load_backend

    model = load_model(None, shapes_checkpoint).model
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[1] += 0.02  # scores move by ~2e-3, boxes not at all
    path = Path(shutil.copy(exported.path, tmp_path / "model.onnx"))
    with pytest.raises(
        VerificationError, match="scores: max difference.*Kept for inspection as .*model.unverified.onnx"
    ):
        verify_export(path, model, 1, progress=False)
    moved = tmp_path / "model.unverified.onnx"
    assert not path.exists() and moved.is_file()
    with pytest.raises(BackendError, match="failed its verification.*--allow-unverified"):
        load_backend(moved)
    assert load_backend(moved, allow_unverified=True).info.class_names


def test_mask_head_runs_on_the_used_slots_only(tmp_path: Path) -> None:
    """The ort flavor runs the mask head on max(num_detections) boxes, not on all K slots: a trained model
    keeps a few of its K, and the head on padding was wasted work. The padding still comes out as zeros."""
    import onnxruntime as ort

    from exporter.model_loading import load_model
    from runtime.preprocess import preprocess
    from runtime.synthetic import images_around
    from tests.exporter_helpers import SHAPES_OPTS, save_shapes_checkpoint

    opts = [*SHAPES_OPTS[2:], "MODEL.ROI_HEADS.SCORE_THRESH", "0.3"]  # a random model keeps a few of its 30
    ckpt = save_shapes_checkpoint(tmp_path / "few.pth", opts)
    path = export_onnx(ckpt, tmp_path / "few.onnx", flavor="ort", progress=False).path
    info = contract.read_metadata(path)
    images = images_around(2, info.preprocess)
    verified = verify_export(path, load_model(None, ckpt).model, 2, progress=False, raise_on_failure=False)
    assert verified.failures == [] and 0 < verified.report.num_reference

    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "profile")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    batch = preprocess(images, info.preprocess)
    num, masks = session.run(
        ["num_detections", "masks"], {"images": batch.images, "image_sizes": batch.image_sizes}
    )
    events = json.loads(Path(session.end_profiling()).read_text())
    mask_convs = [e["args"]["input_type_shape"][0]["float"] for e in events
                  if e.get("cat") == "Node" and "/mask_head/" in e["name"] and e["args"].get("op_name") == "Conv"]  # fmt: skip
    assert 0 < num.max() < info.detections_per_image
    assert mask_convs and all(shape[0] == batch.images.shape[0] * num.max() for shape in mask_convs)
    assert masks.shape[1] == info.detections_per_image
    for b, n in enumerate(num):
        assert not masks[b, n:].any()  # padding slots are zero
