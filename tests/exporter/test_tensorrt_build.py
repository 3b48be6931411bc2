"""TensorRT engine build: type-checked against the real API; without TensorRT/GPU a clear error and trtexec line."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import pytest

from exporter.errors import ExportError
from exporter.tensorrt_build import (
    ProfileShapes,
    TensorRTUnavailable,
    build_engine,
    default_profile,
    parse_bhw,
    probe_tensorrt,
)
from exporter.trtexec import trtexec_command
from runtime import onnx_contract as contract
from runtime.engine_sidecar import EngineMismatchError, check_engine_compatible
from tests.precision_models import PARAMS, export_tiny_model
from tests.tensorrt_stubs import prepare_stubs, run_mypy

pytest.importorskip("torch")
TENSORRT_HERE = probe_tensorrt()[2] is None


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tensorrt_stubs") is None, reason="tensorrt-stubs not installed")
def test_tensorrt_code_passes_mypy_against_the_stubs(tmp_path: Path) -> None:
    """The engine build, the runtime's TensorRT backend and the shared probe, checked against the real API."""
    stubs = prepare_stubs(tmp_path / "stubs")
    assert stubs is not None
    probe = tmp_path / "probe.py"  # a deliberate misuse, to prove the stubs are really in use
    probe.write_text(
        "import tensorrt as trt\ntrt.Builder(trt.Logger(trt.Logger.WARNING)).create_network('x')\n"
    )
    paths = ["exporter/tensorrt_build.py", "exporter/trtexec.py", "runtime/engine_sidecar.py",
             "runtime/tensorrt_probe.py", "runtime/backends/tensorrt_backend.py", str(probe)]  # fmt: skip
    result = run_mypy(paths, stubs)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, result.stdout + result.stderr
    assert "probe.py:2" in errors[0] and 'incompatible type "str"; expected "int"' in errors[0]


def test_trtexec_command() -> None:
    profile = ProfileShapes((1, 32, 32), (2, 256, 352), (4, 480, 480))
    cmd = trtexec_command(
        "m.onnx",
        "m.engine",
        profile.input_shapes("min"),
        profile.input_shapes("opt"),
        profile.input_shapes("max"),
        plugin_library="build/libmrd_trt_plugins.so",
        timing_cache="cache/timing.cache",
        workspace_mib=1024,
    )
    assert cmd == [
        "trtexec",
        "--onnx=m.onnx",
        "--saveEngine=m.engine",
        "--stronglyTyped",
        "--minShapes=images:1x3x32x32,image_sizes:1x2",
        "--optShapes=images:2x3x256x352,image_sizes:2x2",
        "--maxShapes=images:4x3x480x480,image_sizes:4x2",
        "--dynamicPlugins=build/libmrd_trt_plugins.so",
        "--timingCacheFile=cache/timing.cache",
        "--memPoolSize=workspace:1024M",
    ]


def test_profiles_from_metadata_and_arguments() -> None:
    info = contract.ModelInfo(("bg", "a"), PARAMS, flavor="ort", opset=17, detections_per_image=10)
    profile = default_profile(info, max_batch=2)
    assert profile.min == (1, 32, 32) and profile.opt == (1, 48, 64) and profile.max == (2, 64, 64)
    static = contract.ModelInfo(
        ("bg", "a"),
        PARAMS,
        flavor="ort",
        opset=17,
        detections_per_image=10,
        static_input_size=(64, 96),
        batch=2,
    )
    assert default_profile(static) == ProfileShapes((2, 64, 96), (2, 64, 96), (2, 64, 96))
    assert parse_bhw("1x800x1344") == (1, 800, 1344)
    with pytest.raises(ExportError, match="BATCHxHEIGHTxWIDTH"):
        parse_bhw("800x1344")
    with pytest.raises(ExportError, match="min <= opt <= max"):
        ProfileShapes((1, 64, 64), (1, 32, 64), (1, 64, 64))


@pytest.mark.skipif(TENSORRT_HERE, reason="TensorRT and a GPU are present: the engine really builds")
def test_without_tensorrt_a_clear_error_with_the_trtexec_line(tmp_path: Path) -> None:
    onnx_path = export_tiny_model(tmp_path / "tiny.onnx")
    engine = tmp_path / "tiny.engine"
    with pytest.raises(TensorRTUnavailable) as info:
        build_engine(onnx_path, engine, timing_cache=tmp_path / "timing.cache", workspace_mib=512)
    message = str(info.value)
    assert "TensorRT" in info.value.missing and "GPU" in info.value.missing
    assert "The ONNX model is written" in message and info.value.trtexec_line in message
    args = shlex.split(info.value.trtexec_line)
    assert args[:4] == ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine}", "--stronglyTyped"]
    assert "--minShapes=images:1x3x32x32,image_sizes:1x2" in args
    assert "--maxShapes=images:1x3x64x64,image_sizes:1x2" in args
    assert f"--timingCacheFile={tmp_path / 'timing.cache'}" in args and "--memPoolSize=workspace:512M" in args
    assert not any(a.startswith("--dynamicPlugins") for a in args)  # an `ort`-flavor graph needs no plugins
    assert not engine.exists()


def test_bad_arguments_are_export_errors(tmp_path: Path) -> None:
    onnx_path = export_tiny_model(tmp_path / "static.onnx", static_size=(64, 64), batch=1)
    with pytest.raises(ExportError, match="fixed 64x64 input"):
        build_engine(onnx_path, tmp_path / "e.engine", ProfileShapes((1, 32, 32), (1, 64, 64), (1, 64, 64)))
    with pytest.raises(ExportError, match="plugin library .* not found"):
        build_engine(onnx_path, tmp_path / "e.engine", plugin_library=tmp_path / "nope.so")
    with pytest.raises(ExportError, match="not found"):
        build_engine(tmp_path / "missing.onnx", tmp_path / "e.engine")


def test_sidecar_compatibility() -> None:
    props = contract.metadata_dict(
        contract.ModelInfo(("bg", "a"), PARAMS, flavor="trt", opset=17, detections_per_image=10, mask_size=28)
    )
    data = contract.sidecar_dict(
        props, {"tensorrt_version": "10.13.0.35", "gpu": "NVIDIA A10", "compute_capability": "8.6"}
    )
    assert (
        data["class_names"] == ["bg", "a"]
        and data["preprocess"]["min_size"] == 48
        and data["mask_size"] == 28
    )
    assert check_engine_compatible(data, "10.13.0.40", "8.6", "NVIDIA A10") == []
    assert "NVIDIA A40" in check_engine_compatible(data, "10.13.0.35", "8.6", "NVIDIA A40")[0]
    with pytest.raises(EngineMismatchError, match="TensorRT 10.13.0.35, this machine has TensorRT 10.14.1"):
        check_engine_compatible(data, "10.14.1.1", "8.6", "NVIDIA A10")
    with pytest.raises(EngineMismatchError, match=r"compute capability 8.6\), this GPU is NVIDIA H100"):
        check_engine_compatible(data, "10.13.0.35", "9.0", "NVIDIA H100")
    with pytest.raises(EngineMismatchError, match="does not say"):
        check_engine_compatible({}, "10.13.0.35", "9.0")
