"""The compute floor: FLOPs from ONNX Runtime's profile equal the analytic count; the matmul probe runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from runtime.compute_floor import MATMUL_PROBE, MatmulRate, measure_matmul_rate, node_flops, onnx_flops
from tests.common import REPO


def _conv_model(path: Path) -> Path:
    """x [1,3,H,W] -> Conv 3x3 (8 out, pad 1) -> Relu -> ConvTranspose 2x2/2 (4 out) -> flatten -> MatMul [*, 5]."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((8, 4, 2, 2)).astype(np.float32), "w2")
    w3 = numpy_helper.from_array(rng.standard_normal((64, 5)).astype(np.float32), "w3")
    shape = numpy_helper.from_array(np.array([-1, 64], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("ConvTranspose", ["r1", "w2"], ["c2"], strides=[2, 2]),
        helper.make_node("Reshape", ["c2", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w3"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "flops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w1, w2, w3, shape],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_onnx_flops_count_what_the_graph_executed(tmp_path: Path) -> None:
    model = _conv_model(tmp_path / "flops.onnx")
    h, w = 16, 24
    conv = 2 * (8 * h * w) * (3 * 3 * 3)
    deconv = 2 * (8 * h * w) * (4 * 2 * 2)  # every input pixel scatters into 4 channels x 2x2
    matmul = 2 * (4 * 2 * h * 2 * w // 64) * 64 * 5  # the [*, 64] x [64, 5] product
    (got,) = onnx_flops(model, [{"x": np.zeros((1, 3, h, w), np.float32)}], threads=1)
    assert got == conv + deconv + matmul
    # another input size, another count: the floor follows the images
    assert onnx_flops(model, [{"x": np.zeros((1, 3, 2 * h, w), np.float32)}], threads=1) == [2 * got]
    # several feeds through one profiling session: one count each, in order
    feeds = [{"x": np.zeros((1, 3, n * h, w), np.float32)} for n in (2, 1, 3)]
    assert onnx_flops(model, feeds, threads=1) == [2 * got, got, 3 * got]


def test_node_flops_of_gemm_and_of_nodes_without_products() -> None:
    gemm = {"op_name": "Gemm", "input_type_shape": [{"float": [100, 12544]}, {"float": [1024, 12544]}],
            "output_type_shape": [{"float": [100, 1024]}]}  # fmt: skip
    assert node_flops(gemm) == 2 * 100 * 1024 * 12544
    relu = {
        "op_name": "Relu",
        "input_type_shape": [{"float": [1, 8]}],
        "output_type_shape": [{"float": [1, 8]}],
    }
    assert node_flops(relu) == 0
    assert node_flops({"op_name": "Conv"}) == 0  # no shapes recorded: not counted rather than guessed


def test_matmul_rate_is_measured_with_onnxruntime() -> None:
    rate = measure_matmul_rate(threads=1, sizes=(128, 256), repeats=2)
    assert rate.by_library["onnxruntime"] > 0.1  # GFLOP/s: any machine running the suite does far more
    assert rate.gflops == max(rate.by_library.values()) and rate.best_library in rate.by_library
    assert rate.floor_seconds(rate.gflops * 1e9) == pytest.approx(1.0)
    assert "GFLOP/s" in rate.describe() and "the floor uses" in rate.describe()
    assert MatmulRate(1, (8,), {"a": 2.0, "b": 3.0}).best_library == "b"


def test_the_committed_matmul_probe_is_what_its_script_writes(tmp_path: Path) -> None:
    before = MATMUL_PROBE.read_bytes()
    code = f"import sys; sys.path.insert(0, {str(REPO / 'scripts')!r}); import make_matmul_probe as m; " \
           f"open({str(tmp_path / 'p.onnx')!r}, 'wb').write(m.probe_model().SerializeToString())"  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    assert (tmp_path / "p.onnx").read_bytes() == before
