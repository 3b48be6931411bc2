"""``python -m exporter --fp16 | --int8 | --to tensorrt``: runnable reduced-precision ONNX, and clear errors."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import onnx
import pytest

from exporter.cli import main
from exporter.tensorrt_build import probe_tensorrt
from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from runtime.onnx_contract import read_metadata
from runtime.preprocess import preprocess
from tests.exporter_helpers import save_shapes_checkpoint
from tests.precision_models import export_tiny_model, write_images

pytest.importorskip("torch")
TENSORRT_HERE = probe_tensorrt()[2] is None
FLOAT, FLOAT16, INT64 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.INT64


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("precision_cli")
    write_images(root / "calib", 10)
    return {"root": root, "weights": save_shapes_checkpoint(root / "shapes.pth"), "calib": root / "calib"}


def _run(*args: str | Path) -> int:
    return main([str(a) for a in args])


def _check_runs_with_fp32_io(path: Path) -> None:
    model = onnx.load(str(path))
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [FLOAT, INT64]
    assert all(o.type.tensor_type.elem_type != FLOAT16 for o in model.graph.output)
    backend = OnnxRuntimeBackend(path, threads=1)
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 255, (200, 260, 3), dtype=np.uint8),
        rng.integers(0, 255, (240, 180, 3), np.uint8),
    ]
    detections = backend.infer(preprocess(images, backend.info.preprocess))
    assert len(detections) == 2 and all(len(d) > 0 for d in detections)  # random init: K detections each
    assert all(d.boxes.dtype == np.float32 and np.isfinite(d.boxes).all() for d in detections)


@pytest.mark.slow
def test_fp16_export_is_mixed_precision_and_verified(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = setup["root"] / "model_fp16.onnx"
    assert _run("--weights", setup["weights"], "--output", out, "--fp16", "--verify", "2") == 0
    printed = capsys.readouterr().out
    assert "mixed FP16" in printed and "agreement AP50" in printed and "PASSED" in printed
    model = onnx.load(str(out))
    assert any(n.op_type == "Cast" for n in model.graph.node)
    assert any(t.data_type == FLOAT16 for t in model.graph.initializer)  # the dense weights
    assert read_metadata(out).precision == "fp16"
    _check_runs_with_fp32_io(out)


@pytest.mark.slow
def test_int8_export_has_qdq_and_reuses_its_calibration_cache(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = setup["root"] / "model_int8.onnx"
    args = ["--weights", setup["weights"], "--output", out, "--int8", "--quiet"]
    assert _run(*args, "--calib-images", setup["calib"], "--calib-count", "8") == 0
    cache = setup["root"] / "model_int8.calib.json"  # the default: beside the output
    assert cache.is_file()
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    info = read_metadata(out)
    assert info.precision == "int8" and info.extra["int8_activations"] == "uint8-asymmetric"
    _check_runs_with_fp32_io(out)
    assert info.extra["int8_weight_bits"] == "7"  # exact on every x86 CPU
    # a second export needs no images: the cache holds this model's ranges
    again = setup["root"] / "again_int8.onnx"
    assert _run("--weights", setup["weights"], "--output", again, "--int8", "--calib-cache", cache,
                "--int8-weight-bits", "8") == 0  # fmt: skip
    assert f"ranges reused from {cache}" in capsys.readouterr().out
    assert read_metadata(again).extra["int8_weight_bits"] == "8"
    # loaded on a CPU without VNNI, the 8-bit model warns (its sums saturate there); the 7-bit one does not
    import warnings

    import runtime.cpu_features as features
    from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    avx2 = features.CpuFeatures("an AVX2 CPU", True, ("AVX2",), vnni=False)
    monkeypatch.setattr(features, "cpu_features", lambda: avx2)
    with pytest.warns(RuntimeWarning, match="8-bit weights.*an AVX2 CPU.*re-export"):
        OnnxRuntimeBackend(again, threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OnnxRuntimeBackend(out, threads=1)


@pytest.mark.slow
def test_int8_cache_of_another_model_is_refused(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from calibration.image_source import calibration_images
    from exporter.quantize_int8 import quantize_int8

    tiny = export_tiny_model(setup["root"] / "tiny.onnx")
    cache = setup["root"] / "tiny.calib.json"
    quantize_int8(tiny, setup["root"] / "tiny_int8.onnx", calibration_images(setup["calib"], count=8),
                  cache_path=cache, progress=False)  # fmt: skip
    code = _run("--weights", setup["weights"], "--output", setup["root"] / "m.onnx", "--int8", "--quiet",
                "--calib-images", setup["calib"], "--calib-count", "8", "--calib-cache", cache)  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: calibration cache") and "another model" in err
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.skipif(TENSORRT_HERE, reason="TensorRT and a GPU are present: the engine really builds")
def test_tensorrt_without_tensorrt_writes_the_onnx_and_prints_trtexec(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    engine = setup["root"] / "model.engine"
    code = _run("--to", "tensorrt", "--fp16", "--weights", setup["weights"], "--output", engine, "--quiet",
                "--max-shape", "2x320x320", "--workspace", "512", "--timing-cache", setup["root"] / "t.cache")  # fmt: skip
    err = capsys.readouterr().err
    assert (
        code == 2 and err.startswith("error: cannot build a TensorRT engine here") and "Traceback" not in err
    )
    built_from = setup["root"] / "model.onnx"
    info = read_metadata(built_from)  # the ONNX it would build from: the trt flavor, in FP16
    assert info.flavor == "trt" and info.precision == "fp16"
    line = next(line.strip() for line in err.splitlines() if line.strip().startswith("trtexec "))
    args = shlex.split(line)
    assert args[1:4] == [f"--onnx={built_from}", f"--saveEngine={engine}", "--stronglyTyped"]
    assert "--maxShapes=images:2x3x320x320,image_sizes:2x2" in args and "--memPoolSize=workspace:512M" in args
    assert any(a.startswith("--dynamicPlugins=") for a in args)  # the trt flavor needs our plugins
    assert not engine.exists()
    # an exported ONNX is reused as it is: nothing is re-exported
    fp32 = export_tiny_model(setup["root"] / "tiny_fp32.onnx")
    assert _run("--to", "tensorrt", "--onnx", fp32, "--output", setup["root"] / "tiny.engine", "--quiet") == 2
    assert f"--onnx={fp32}" in capsys.readouterr().err


def test_bad_calibration_sources_are_one_line_errors(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--weights", setup["weights"], "--output", tmp_path / "m.onnx", "--int8", "--quiet"]
    (tmp_path / "empty").mkdir()
    cases = [
        (["--calib-images", tmp_path / "empty"], "holds no images"),
        (["--calib-images", tmp_path / "missing"], "does not exist"),
        (["--calib-images", setup["calib"], "--calib-count", "50"], "has 10 images, fewer than the 50"),
        (["--calib-images", setup["calib"], "--calib-count", "2"], "too few"),
    ]
    for extra, message in cases:
        assert _run(*base, *extra) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()  # found before any export


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fp16", "--int8"], "--fp16 and --int8 exclude each other"),
        (["--int8"], "--int8 needs calibration images"),
        (["--calib-images", "x"], "are for --int8"),
        (["--int8", "--calib-images", "x", "--calib-dataset", "y"], "give one calibration source"),
        (["--max-shape", "1x64x64"], "only with --to tensorrt"),
    ],
)
def test_option_mistakes_exit_2_with_usage(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--weights", "w.pth", "--output", str(tmp_path / "m.onnx"), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_tensorrt_output_must_be_an_engine_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fp32 = export_tiny_model(tmp_path / "tiny.onnx")
    assert main(["--to", "tensorrt", "--onnx", str(fp32), "--output", str(tmp_path / "m.onnx")]) == 2
    assert "give it a .engine or .plan name" in capsys.readouterr().err
