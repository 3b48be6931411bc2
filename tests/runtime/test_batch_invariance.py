"""An image gets the same detections whatever it is batched with, for every kind of model and backend.

Four photos of different sizes and aspect ratios, plus a mirrored copy of the first (other content on the same
canvas, so one multi-image call really runs), go through ``Predictor.run`` in one call and one image per call;
every detection must agree within ``--verify``'s FP32 tolerances (near-tie swaps judged by
``runtime.compare.NEAR_TIES``). Models: the shipped shapes config (GroupNorm), a MobileNetV3 and a keypoint
variant of it, and every checkpoint under ``tests/data/foreign`` (FrozenBN ResNets of maskrcnn-benchmark and
detectron2, with their conventions); backends: PyTorch, ONNX Runtime with both flavors, OpenVINO. Inputs are
small (short side 160) so that each model exports in about a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from exporter.verify import EXPORT_TOLERANCES, batch_check_images, batch_report
from runtime.canvas import canvas_groups, on_canvas, own_canvas, split_by_canvas
from runtime.predictor import Predictor
from runtime.preprocess import PreprocessedBatch
from tests.exporter_helpers import KEYPOINT_OPTS
from tests.foreign_reference import MODELS, config_of, model_dir, read_images

#: small inputs: every model exports and runs in about a second
SMALL = ["INPUT.MIN_SIZE_TEST", "160", "INPUT.MAX_SIZE_TEST", "320", "TEST.DETECTIONS_PER_IMG", "30"]
#: our own configs, random-init (a low score threshold so that they detect)
OURS: dict[str, list[str]] = {
    "shapes_gn": ["MODEL.ROI_HEADS.SCORE_THRESH", "0.01"],
    "shapes_mnv3": ["MODEL.ROI_HEADS.SCORE_THRESH", "0.01", "MODEL.BACKBONE.CONV_BODY", "MNV3-FPN",
                    "MODEL.BACKBONE.BASE_WIDTH", "64", "MODEL.BACKBONE.TRAINABLE_LAYERS", "3"],
    "shapes_keypoint": ["MODEL.ROI_HEADS.SCORE_THRESH", "0.01", *KEYPOINT_OPTS],
}  # fmt: skip
FOREIGN = [*MODELS, "finetuned/mrb_mask_rcnn_R_50_FPN_1x", "finetuned/d2_mask_rcnn_R_50_FPN_1x"]
#: the exported backends: each kind of model (GroupNorm, MobileNet, keypoints, each source's conventions, a
#: fine-tuned import) under ONNX Runtime, and one of ours and one import under the trt flavor and OpenVINO; every
#: model under PyTorch. The MobileNet pools two FPN levels of one stride, which the trt flavor's ROIAlign plugin
#: cannot map (refused at export: test_trt_flavor_refuses_what_its_plugins_cannot_run). About 50 s in all.
EXPORTED = {
    "shapes_gn": ("ort", "trt", "openvino"),
    "shapes_mnv3": ("ort",),
    "shapes_keypoint": ("ort",),
    "mrb_keypoint_rcnn_R_50_FPN_1x": ("ort",),
    "d2_mask_rcnn_R_50_FPN_1x": ("ort", "trt", "openvino"),
    "finetuned/mrb_mask_rcnn_R_50_FPN_1x": ("ort",),
}


def _checkpoint(name: str, tmp: Path) -> tuple[Path, Path | None, list[str]]:
    """(weights, config file or None, opts) of a model of the matrix."""
    if name in OURS:
        from tests.runtime_fixtures import save_random_shapes_checkpoint

        return save_random_shapes_checkpoint(tmp, name=name, opts=[*OURS[name], *SMALL]), None, []
    if name.startswith("finetuned/"):  # our checkpoint layout: the fine-tuned config is inside
        return model_dir(name) / "model_final.pth", None, SMALL
    return model_dir(name) / "model_final.pth", config_of(name), SMALL


#: (model, flavor) -> its exported ONNX file, shared by the ort and OpenVINO cases of one worker
_EXPORTS: dict[tuple[str, str], Path] = {}


def _model_file(name: str, backend: str, tmp: Path) -> tuple[str, dict[str, Any]]:
    weights, config, opts = _checkpoint(name, tmp)
    if backend == "torch":
        return str(weights), {"config_file": None if config is None else str(config), "opts": opts}
    from exporter.onnx_export import export_onnx

    flavor = "trt" if backend == "trt" else "ort"
    if (name, flavor) not in _EXPORTS or not _EXPORTS[name, flavor].exists():
        _EXPORTS[name, flavor] = export_onnx(weights, tmp / f"{flavor}.onnx", config, opts, flavor=flavor,
                                             progress=False).path  # fmt: skip
    onnx_path = _EXPORTS[name, flavor]
    if backend != "openvino":
        return str(onnx_path), {}
    from exporter.openvino_export import convert_to_ir

    return str(convert_to_ir(onnx_path, tmp / "model.xml", "fp32").xml), {}


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return batch_check_images(list(read_images().values()))


CASES = [(name, "torch") for name in (*OURS, *FOREIGN)] + [
    (name, backend) for name, backends in EXPORTED.items() for backend in backends
]


@pytest.mark.parametrize(("name", "backend"), CASES, ids=[f"{n}-{b}" for n, b in CASES])
def test_batched_detections_equal_one_image_per_call(
    name: str, backend: str, photos: list[np.ndarray], tmp_path: Path
) -> None:
    path, options = _model_file(name, backend, tmp_path)
    with Predictor(path, confidence_threshold=0.0, **options) as predictor:
        report = batch_report(predictor, photos)
    assert report.check(EXPORT_TOLERANCES) == []
    assert report.num_reference >= 20, "too few detections for the comparison to mean anything"
    assert report.num_matched >= report.num_reference - EXPORT_TOLERANCES.near_ties.allowance(
        report.num_reference
    )


def test_one_mixed_canvas_call_is_what_the_rule_rejects(photos: list[np.ndarray], tmp_path: Path) -> None:
    """The difference canvas grouping removes is real: the GroupNorm model run on one shared canvas (what a
    batched call did before) fails the same check by far more than any near tie."""
    path, options = _model_file("shapes_gn", "ort", tmp_path)
    with Predictor(path, confidence_threshold=0.0, **options) as predictor:
        alone = [predictor.run([image], False).raw[0] for image in photos]
        shared = predictor.backend.infer(predictor.preprocess(photos[:4]))
        report = batch_report(predictor, photos[:4], alone=alone[:4])
        assert report.check(EXPORT_TOLERANCES) == []
        from runtime.compare import compare_detections

        failures = compare_detections(alone[:4], shared, detections_per_image=30).check(EXPORT_TOLERANCES)
    assert any("not a near-tie swap" in f for f in failures), failures


def test_trt_flavor_refuses_what_its_plugins_cannot_run(tmp_path: Path) -> None:
    """The plugins' own attribute checks run at export, not at the first inference (where an error inside
    ONNX Runtime's Python op aborted the process), and when such a file is opened anyway."""
    from exporter.errors import ExportError
    from exporter.onnx_export import export_onnx

    weights, _, _ = _checkpoint("shapes_mnv3", tmp_path)
    with pytest.raises(ExportError, match="spatial_scales must halve.*export the ort flavor"):
        export_onnx(weights, tmp_path / "trt.onnx", flavor="trt", progress=False)
    assert not (tmp_path / "trt.onnx").exists()


def test_canvas_groups_and_crops() -> None:
    sizes = np.array([[160, 213], [160, 200], [213, 160], [100, 320]])
    groups = canvas_groups(sizes, 32)
    assert [(g.indices, g.canvas) for g in groups] == [
        ((0, 1), (160, 224)),
        ((2,), (224, 160)),
        ((3,), (128, 320)),
    ]
    assert [g.canvas for g in canvas_groups(sizes, 32, static_size=(256, 320))] == [(256, 320)]
    assert own_canvas((161, 1), 0) == (161, 1)
    images = np.arange(2 * 3 * 224 * 320, dtype=np.float32).reshape(2, 3, 224, 320)
    crop = on_canvas(images, sizes[:2], (160, 224))
    assert crop.shape == (2, 3, 160, 224) and np.array_equal(crop, images[:, :, :160, :224])
    grown = on_canvas(crop, sizes[:2], (192, 256))
    assert (
        np.array_equal(grown[:, :, :160, :224], crop)
        and not grown[:, :, 160:].any()
        and not grown[..., 224:].any()
    )
    with pytest.raises(ValueError, match="do not fit a 128x128 canvas"):
        on_canvas(images, sizes[:2], (128, 128))
    batch = PreprocessedBatch(np.zeros((4, 3, 224, 320), np.float32), sizes, sizes * 2)
    parts = split_by_canvas(batch, 32)
    assert [tuple(p.images.shape[2:]) for _, p in parts] == [(160, 224), (224, 160), (128, 320)]
    assert np.array_equal(parts[0][1].original_sizes, sizes[:2] * 2)
