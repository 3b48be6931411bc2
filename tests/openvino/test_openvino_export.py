"""``python -m exporter --to openvino [--fp16|--int8]``: IRs that carry the contract and are verified."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.cli import main
from runtime.compare import Tolerances, compare_detections
from runtime.model_file import read_model_info
from runtime.onnx_contract import read_metadata
from runtime.predictor import Predictor
from tests.exporter_helpers import save_shapes_checkpoint
from tests.precision_models import write_images
from tests.runtime_fixtures import make_image

pytest.importorskip("torch")
pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'maskrcnn-deploy[openvino]')")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("openvino_export")
    write_images(root / "calib", 8)
    return {"root": root, "weights": save_shapes_checkpoint(root / "shapes.pth"), "calib": root / "calib"}


def _run(*args: str | Path) -> int:
    return main([str(a) for a in args])


def _images() -> list:
    return [make_image(1, 150, 230), make_image(2, 200, 120)]


@pytest.mark.slow
def test_fp32_ir_carries_the_contract_and_is_verified(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    xml = setup["root"] / "fp32" / "model.xml"
    xml.parent.mkdir()
    assert _run("--to", "openvino", "--weights", setup["weights"], "--output", xml, "--verify", "2") == 0
    printed = capsys.readouterr().out
    assert "wrote OpenVINO IR" in printed and "PASSED" in printed and "model.xml against PyTorch" in printed
    onnx_beside = xml.with_suffix(".onnx")
    assert xml.with_suffix(".bin").is_file() and onnx_beside.is_file()
    ir, source = read_model_info(xml), read_metadata(onnx_beside)
    assert ir == source and ir.precision == "fp32" and ir.config_yaml == source.config_yaml
    # the IR under OpenVINO and its ONNX under ONNX Runtime: the same detections
    a = Predictor(onnx_beside, threads=1, confidence_threshold=0.0)
    b = Predictor(xml, threads=1, confidence_threshold=0.0)
    assert b.backend.name == "openvino"
    batch = a.preprocess(_images())
    report = compare_detections(a.infer_raw(batch), b.infer_raw(batch))
    same_graph = Tolerances(box=1e-3, score=1e-4, mask=1e-3, keypoint=1e-3, min_matched=1.0)
    assert report.check(same_graph) == [], report.format_table()


@pytest.mark.slow
def test_fp16_ir_halves_the_weights_and_passes_fp16_verification(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    xml = setup["root"] / "model_fp16.xml"
    assert (
        _run("--to", "openvino", "--fp16", "--weights", setup["weights"], "--output", xml, "--verify", "2")
        == 0
    )
    assert "PASSED" in capsys.readouterr().out
    info = read_model_info(xml)
    assert info.precision == "fp16"
    fp32_bin = setup["root"] / "fp32" / "model.bin"
    if fp32_bin.is_file():  # the FP32 test ran first in this module
        assert xml.with_suffix(".bin").stat().st_size < 0.6 * fp32_bin.stat().st_size
    assert Predictor(xml, threads=1).backend.describe()["inference_precision"] == "f32"


@pytest.mark.slow
def test_int8_ir_comes_from_the_qdq_onnx_and_its_cache(setup: dict[str, Path]) -> None:
    xml = setup["root"] / "model_int8.xml"
    args = ["--to", "openvino", "--int8", "--weights", setup["weights"], "--output", xml, "--quiet"]
    assert _run(*args, "--calib-images", setup["calib"], "--calib-count", "8") == 0
    qdq = xml.with_suffix(".onnx")
    assert read_metadata(qdq).precision == "int8" and read_model_info(xml).precision == "int8"
    assert "FakeQuantize" in xml.read_text()  # OpenVINO's form of the Q/DQ pairs: INT8 convolutions
    cache = setup["root"] / "model_int8.calib.json"
    assert cache.is_file()
    # the IR runs the same quantized network as the Q/DQ ONNX under ONNX Runtime. Two INT8 engines of a
    # random-init model whose detections are all near-tied (scores about 0.2) agree at 0.70-0.90 on a pair of
    # images and 0.81-0.87 on sets of 8 (3 sets measured)
    images = [make_image(s, *((150, 230) if s % 2 else (200, 120))) for s in range(1, 9)]
    a = Predictor(qdq, threads=1, confidence_threshold=0.0)
    b = Predictor(xml, threads=1, confidence_threshold=0.0)
    report = compare_detections(a.run(images, False).raw, b.run(images, False).raw)
    assert report.agreement_ap >= 0.75, report.format_table()
    # again from the cache alone, without images
    again = setup["root"] / "again_int8.xml"
    assert _run("--to", "openvino", "--int8", "--weights", setup["weights"], "--output", again, "--quiet",
                "--calib-cache", cache) == 0  # fmt: skip


def test_openvino_export_mistakes_are_one_line_errors(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--to", "openvino", "--weights", setup["weights"], "--quiet"]
    assert _run(*base, "--output", tmp_path / "model.onnx") == 2
    assert "NAME.xml" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        _run(*base, "--output", tmp_path / "model.xml", "--flavor", "trt")
    assert e.value.code == 2 and "ort flavor" in capsys.readouterr().err
    assert _run(*base, "--output", tmp_path / "missing" / "model.xml") == 2
    assert "does not exist" in capsys.readouterr().err
