"""The OpenVINO backend for real: parity with ONNX Runtime on the same file, dynamic sizes, batches, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from runtime.backends.base import BackendError, BackendUnavailable
from runtime.compare import Tolerances, compare_detections
from runtime.model_file import backend_for, load_backend
from runtime.plugins.spec import DOMAIN, ROI_ALIGN_OP
from runtime.predictor import Predictor
from tests.runtime_fixtures import make_image

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'maskrcnn-deploy[openvino]')")

#: ONNX Runtime and OpenVINO run the same float32 graph with different kernels: rounding only
SAME_GRAPH = Tolerances(box=1e-3, score=1e-4, mask=1e-3, keypoint=1e-3, min_matched=1.0)


@pytest.fixture(scope="module")
def both(random_shapes_onnx: Path) -> tuple[Predictor, Predictor]:
    ort = Predictor(random_shapes_onnx, threads=1, confidence_threshold=0.0)
    ov = Predictor(random_shapes_onnx, backend="openvino", threads=1, confidence_threshold=0.0)
    return ort, ov


def test_openvino_reads_the_contract_from_the_onnx_file(both: tuple[Predictor, Predictor]) -> None:
    ort, ov = both
    assert ov.backend.name == "openvino" and ov.info == ort.info
    described = ov.backend.describe()
    assert described["inference_precision"] == "f32"  # never bf16 behind an FP32 model's back
    assert described["threads"] == 1 and described["versions"]["openvino"]


@pytest.mark.parametrize(
    "sizes", [[(120, 160)], [(150, 230), (200, 100)], [(90, 300), (140, 140), (260, 180)]]
)
def test_openvino_matches_onnxruntime_on_dynamic_sizes_and_batches(
    both: tuple[Predictor, Predictor], sizes: list[tuple[int, int]]
) -> None:
    ort, ov = both
    batch = ort.preprocess([make_image(i, h, w) for i, (h, w) in enumerate(sizes)])
    expected, got = ort.infer_raw(batch), ov.infer_raw(batch)
    assert len(got) == len(sizes) and all(len(r) > 0 for r in expected)
    report = compare_detections(expected, got)
    assert report.check(SAME_GRAPH) == [], report.format_table()
    # through the whole pipeline (pasted masks in image pixels), one image
    a, b = ort.predict(make_image(7, 170, 210)), ov.predict(make_image(7, 170, 210))
    assert len(a) == len(b) > 0 and a.masks is not None and b.masks is not None
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
    assert np.abs(a.masks - b.masks).max() < 1e-3  # pasted probabilities


def test_openvino_is_chosen_for_an_ir_and_by_name(tmp_path: Path) -> None:
    assert backend_for("model.xml") == "openvino"
    assert backend_for("model.onnx", "ov") == backend_for("model.onnx", "openvino") == "openvino"
    xml = tmp_path / "model.xml"
    xml.write_text("<net/>")
    with pytest.raises(BackendError, match=r"model\.bin is missing"):
        load_backend(xml)


def test_trt_flavor_and_foreign_files_are_refused_by_name(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node(ROI_ALIGN_OP, ["x"], ["y"], domain=DOMAIN)
    graph = helper.make_graph([node], "plugin", [x], [y])
    path = tmp_path / "plugin.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]),
        path,
    )
    with pytest.raises(BackendError, match="`trt` flavor"):
        load_backend(path, backend="openvino")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not onnx")
    with pytest.raises(BackendError, match="garbage.onnx: OpenVINO cannot read it"):
        load_backend(garbage, backend="openvino")
    with pytest.raises(BackendUnavailable, match="NVIDIA GPUs"):
        load_backend(path, backend="openvino", device="cuda:0")
    with pytest.raises(ValueError, match="performance hint"):
        load_backend(path, backend="openvino", hint="fastest")


def test_an_ir_without_its_onnx_takes_the_flops_of_the_same_network(
    random_shapes_onnx: Path, tmp_path: Path
) -> None:
    from exporter.openvino_export import convert_to_ir
    from runtime.bench import BenchSettings, run_benchmark
    from runtime.compute_floor import measure_matmul_rate
    from runtime.synthetic import images_of_size

    xml = convert_to_ir(random_shapes_onnx, tmp_path / "model.xml", "fp32").xml  # no model.onnx beside it
    assert not xml.with_suffix(".onnx").exists()
    settings = BenchSettings(warmup=0, iters=2, threads=1, size=96)
    images, small_probe = images_of_size(2, (120, 160)), measure_matmul_rate(1, sizes=(256,), repeats=2)
    report = run_benchmark([xml, random_shapes_onnx], images, settings, progress=False, matmul=small_probe)
    ir, onnx_file = report.models
    assert onnx_file.flops and onnx_file.flops_from == str(random_shapes_onnx)
    assert ir.flops == onnx_file.flops and ir.flops_from == str(random_shapes_onnx)
    assert "total_to_floor" in ir.summary(1, report.matmul)
