"""Mixed FP16: the dense network in FP16, glue and the contract's inputs/outputs in FP32, runs under ORT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from exporter.errors import ExportError
from exporter.precision_fp16 import convert_fp16
from runtime.onnx_contract import read_metadata
from tests.precision_models import HEAD_NODE, export_tiny_model, run

pytest.importorskip("torch")

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    return types


@pytest.mark.parametrize("keep", ["none", "head_outputs"])
def test_fp16_dense_region_fp32_glue_and_io(tmp_path: Path, keep: str) -> None:
    src = export_tiny_model(tmp_path / "tiny.onnx")
    out = tmp_path / "tiny_fp16.onnx"
    result = convert_fp16(src, out, keep_fp32=keep)
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    types = _types(model)
    convs = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
    assert types[convs["/conv1/Conv"].input[1]] == FLOAT16 and types[convs["/conv2/Conv"].input[1]] == FLOAT16
    assert types[convs[HEAD_NODE].input[1]] == (FLOAT if keep == "head_outputs" else FLOAT16)
    assert any(n.op_type == "Cast" for n in model.graph.node) and result.casts > 0
    exp = next(n for n in model.graph.node if n.op_type == "Exp")
    assert types[exp.input[0]] == FLOAT  # decoding stays FP32
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [FLOAT, onnx.TensorProto.INT64]
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [FLOAT, FLOAT]
    assert read_metadata(out).precision == "fp16"
    rng = np.random.default_rng(0)
    inputs = (rng.normal(size=(2, 3, 48, 64)).astype(np.float32), np.array([[48, 64], [40, 60]], np.int64))
    for got, ref in zip(run(out, *inputs), run(src, *inputs)):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=5e-3, atol=5e-3)


def test_converting_twice_or_a_foreign_file_is_refused(tmp_path: Path) -> None:
    src = export_tiny_model(tmp_path / "tiny.onnx")
    convert_fp16(src, tmp_path / "fp16.onnx")
    with pytest.raises(ExportError, match="already fp16"):
        convert_fp16(tmp_path / "fp16.onnx", tmp_path / "again.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ExportError, match="not a readable ONNX model"):
        convert_fp16(tmp_path / "junk.onnx", tmp_path / "out.onnx")
