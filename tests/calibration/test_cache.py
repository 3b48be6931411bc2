"""The calibration cache: a later run reuses it; another model's, or another method's, is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from calibration.errors import CalibrationError
from calibration.image_source import calibration_images
from exporter.quantize_int8 import quantize_int8
from tests.precision_models import export_tiny_model, write_images

pytest.importorskip("torch")


def _scales(path: Path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {n.name: weights[n.input[1]] for n in model.graph.node if n.op_type == "QuantizeLinear"}


@pytest.fixture
def calibrated(tmp_path: Path) -> dict[str, Path]:
    write_images(tmp_path / "images", 8)
    model = export_tiny_model(tmp_path / "tiny.onnx")
    cache = tmp_path / "tiny.calib.json"
    images = calibration_images(tmp_path / "images", count=8)
    quantize_int8(model, tmp_path / "first.onnx", images, cache_path=cache, progress=False)
    return {"root": tmp_path, "model": model, "cache": cache}


def test_second_run_reuses_the_ranges_without_images(calibrated: dict[str, Path]) -> None:
    assert json.loads(calibrated["cache"].read_text())["method"] == "minmax"
    second = calibrated["root"] / "second.onnx"
    result = quantize_int8(calibrated["model"], second, None, cache_path=calibrated["cache"], progress=False)
    assert result.cache_reused
    first, again = _scales(calibrated["root"] / "first.onnx"), _scales(second)
    assert first.keys() == again.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])


def test_cache_of_another_model_is_refused(calibrated: dict[str, Path]) -> None:
    other = export_tiny_model(calibrated["root"] / "other.onnx", seed=1)  # same graph, other weights
    with pytest.raises(CalibrationError, match="another model"):
        quantize_int8(
            other, calibrated["root"] / "x.onnx", None, cache_path=calibrated["cache"], progress=False
        )


def test_cache_of_another_method_is_refused(calibrated: dict[str, Path]) -> None:
    with pytest.raises(CalibrationError, match="minmax ranges, not entropy"):
        quantize_int8(
            calibrated["model"],
            calibrated["root"] / "x.onnx",
            None,
            "entropy",
            cache_path=calibrated["cache"],
        )


def test_foreign_or_broken_cache_file(calibrated: dict[str, Path]) -> None:
    calibrated["cache"].write_text('{"some": "json"}')
    with pytest.raises(CalibrationError, match="not a calibration cache"):
        quantize_int8(
            calibrated["model"], calibrated["root"] / "x.onnx", None, cache_path=calibrated["cache"]
        )
    calibrated["cache"].write_text("{broken")
    with pytest.raises(CalibrationError, match="not valid JSON"):
        quantize_int8(
            calibrated["model"], calibrated["root"] / "x.onnx", None, cache_path=calibrated["cache"]
        )


def test_no_images_and_no_cache(tmp_path: Path) -> None:
    model = export_tiny_model(tmp_path / "tiny.onnx")
    with pytest.raises(CalibrationError, match="needs calibration images"):
        quantize_int8(model, tmp_path / "x.onnx", None, cache_path=tmp_path / "missing.json")


def test_ranges_found_through_the_consuming_node_when_tensor_names_differ(
    calibrated: dict[str, Path],
) -> None:
    """The trt flavor names ROI pooling outputs differently from the ort flavor; the consumer node is the same."""
    model = onnx.load(str(calibrated["model"]))
    conv2 = next(n for n in model.graph.node if n.name == "/conv2/Conv")
    renamed = "renamed_activation"
    old = conv2.input[0]
    for node in model.graph.node:
        node.output[:] = [renamed if t == old else t for t in node.output]
        node.input[:] = [renamed if t == old else t for t in node.input]
    other_names = calibrated["root"] / "renamed.onnx"
    onnx.save(model, str(other_names))
    result = quantize_int8(other_names, calibrated["root"] / "r.onnx", None, cache_path=calibrated["cache"])
    assert result.cache_reused
    quantized = onnx.load(str(calibrated["root"] / "r.onnx"))
    assert any(n.op_type == "QuantizeLinear" and n.input[0] == renamed for n in quantized.graph.node)
