"""Backends behind one interface, the Predictor pipeline, and choosing the backend from the file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.backends.base import BackendError, BackendUnavailable
from runtime.compare import Tolerances, compare_detections
from runtime.model_file import UnknownModelType, backend_for, load_backend
from runtime.predictor import Predictor
from tests.runtime_fixtures import make_image


@pytest.fixture(scope="module")
def predictor(random_shapes_checkpoint: Path) -> Predictor:
    return Predictor(random_shapes_checkpoint, confidence_threshold=0.0, threads=1)


def test_torch_backend_reads_config_and_classes_from_the_checkpoint(predictor: Predictor) -> None:
    info = predictor.backend.info
    assert predictor.backend.name == "torch" and predictor.backend.precision == "fp32"
    assert info.class_names == ("__background__", "circle", "square", "triangle", "star", "cross")
    assert info.mask_size == 28 and info.detections_per_image == 20
    assert (info.preprocess.min_size, info.preprocess.max_size) == (128, 192)


def test_predictor_equals_torchvisions_own_forward(predictor: Predictor) -> None:
    """Our preprocess -> raw forward -> host pasting must give what torchvision's forward gives."""
    image = make_image(3, 150, 230)
    det = predictor.predict(image)
    assert len(det) > 0 and det.image_size == (150, 230) and det.masks is not None
    assert det.masks.shape == (len(det), 150, 230)

    model = predictor.backend.model  # type: ignore[attr-defined]
    rgb = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1])).permute(2, 0, 1).float() / 255.0
    with torch.no_grad():
        (tv,) = model([rgb])
    np.testing.assert_array_equal(det.labels, tv["labels"].numpy())
    np.testing.assert_allclose(det.scores, tv["scores"].numpy(), atol=1e-5)
    np.testing.assert_allclose(det.boxes, tv["boxes"].numpy(), atol=1e-3)
    assert np.abs(det.masks - tv["masks"][:, 0].numpy()).max() < 1e-3


def test_predictor_batches_thresholds_and_draws(random_shapes_checkpoint: Path, predictor: Predictor) -> None:
    images = [make_image(1), make_image(2, 200, 100)]
    dets = predictor.predict(images)
    assert [d.image_size for d in dets] == [(120, 160), (200, 100)]
    times = predictor.last_times
    assert times.preprocess > 0 and times.infer > 0 and times.postprocess > 0

    everything = predictor.predict(images[0])  # alone: batching pads, which moves scores a little
    strict = Predictor(predictor.backend, confidence_threshold=0.3)
    kept = strict.predict(images[0])
    assert 0 < len(kept) < len(everything)
    np.testing.assert_array_equal(kept.scores, everything.scores[everything.scores >= 0.3])

    small = Predictor(predictor.backend, min_image_size=64)
    assert small.info.preprocess.min_size == 64 and small.preprocess([images[0]]).image_sizes[0].min() == 64

    drawn = predictor.run_on_opencv_image(images[0])
    assert drawn.shape == images[0].shape and not np.array_equal(drawn, images[0])
    heat = Predictor(
        predictor.backend, confidence_threshold=0.0, show_mask_heatmaps=True
    ).run_on_opencv_image(images[0])
    assert heat.shape == images[0].shape


def test_plain_state_dict_needs_its_config(random_shapes_checkpoint: Path, tmp_path: Path) -> None:
    from tests.common import SHAPES_CONFIG
    from tests.runtime_fixtures import TEST_OPTS

    plain = tmp_path / "plain.pth"
    torch.save(torch.load(random_shapes_checkpoint, weights_only=True)["model"], plain)
    with pytest.raises(BackendError, match="--config-file"):
        load_backend(plain)  # the default config is R-50-FPN: the weights don't fit it
    from tests.exporter_helpers import GOLDEN_ARCHITECTURE

    backend = load_backend(plain, config_file=SHAPES_CONFIG, opts=[*GOLDEN_ARCHITECTURE, *TEST_OPTS])
    assert backend.info.class_names[1] == "class_1"  # a plain state dict carries no names


def test_bad_model_files_get_clear_errors(tmp_path: Path) -> None:
    unknown = tmp_path / "model.xyz"
    unknown.write_bytes(b"x")
    with pytest.raises(UnknownModelType, match=r"\.onnx.*onnxruntime"):
        load_backend(unknown)
    with pytest.raises(UnknownModelType, match="unknown backend"):
        backend_for(unknown, "caffe")
    assert backend_for(unknown, "ort") == "onnxruntime" and backend_for("a.plan") == "tensorrt"
    with pytest.raises(FileNotFoundError, match="not found"):
        load_backend(tmp_path / "missing.onnx")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a random_shapes_checkpoint")
    with pytest.raises(BackendError, match="corrupt.pth"):
        load_backend(corrupt)
    with pytest.raises(BackendError, match="corrupt.onnx"):
        load_backend(corrupt.rename(tmp_path / "corrupt.onnx"))


def test_tensorrt_backend_says_what_is_missing(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0" * 16)
    with pytest.raises(BackendUnavailable, match="TensorRT|GPU"):
        load_backend(engine)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt_stubs") is None, reason="tensorrt-stubs not installed")
def test_tensorrt_stubs_alone_are_not_taken_for_tensorrt() -> None:
    from runtime.backends.tensorrt_backend import import_tensorrt
    from runtime.tensorrt_probe import find_tensorrt, probe_tensorrt

    module, missing = find_tensorrt()
    if module is not None:
        pytest.skip(f"the real TensorRT {module.__version__} is installed")
    import tensorrt  # the stubs' folder imports, as an empty namespace package

    assert not hasattr(tensorrt, "Runtime")
    assert missing is not None and "only its type stubs are" in missing
    assert probe_tensorrt()[0] is None and "only its type stubs are" in str(probe_tensorrt()[2])
    with pytest.raises(BackendUnavailable, match="only its type stubs are.*onnxruntime backend"):
        import_tensorrt()


@pytest.mark.parametrize("flavor", ["ort", "trt"])
def test_onnxruntime_backend_matches_torch(
    flavor: str,
    random_shapes_checkpoint: Path,
    predictor: Predictor,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    if flavor == "ort":
        onnx_path = request.getfixturevalue("random_shapes_onnx")  # the session's export of these weights
    else:
        from exporter.onnx_export import export_onnx

        onnx_path = tmp_path / f"model_{flavor}.onnx"
        export_onnx(random_shapes_checkpoint, onnx_path, flavor=flavor, progress=False)

    ort_pred = Predictor(onnx_path, confidence_threshold=0.0, threads=1)
    assert ort_pred.backend.name == "onnxruntime" and ort_pred.info.flavor == flavor
    assert ort_pred.info.class_names == predictor.info.class_names
    assert ort_pred.info.preprocess == predictor.info.preprocess
    images = [make_image(5), make_image(6, 90, 170)]  # batch 2 of different sizes
    ref, cand = predictor.run(images), ort_pred.run(images)
    report = compare_detections(ref.raw, cand.raw)
    assert report.check(Tolerances(box=0.05, score=1e-4, mask=1e-3)) == []
    assert report.num_reference > 0
