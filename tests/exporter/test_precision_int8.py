"""INT8 Q/DQ: symmetric per-channel weights, symmetric INT8 activations, glue left FP32, runs under ORT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from calibration.image_source import calibration_images
from calibration.precision_regions import find_regions
from exporter.quantize_int8 import quantize_int8
from runtime.image_io import read_image
from runtime.onnx_contract import read_metadata
from runtime.preprocess import preprocess
from tests.precision_models import HEAD_NODE, PARAMS, export_tiny_model, run, write_images

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("int8")
    write_images(root / "images", 10)
    return {"root": root, "model": export_tiny_model(root / "tiny.onnx"), "images": root / "images"}


def _inputs(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Two images like the calibration ones (the ranges only hold for data like what calibrated them)."""
    batch = preprocess([read_image(p) for p in sorted(folder.glob("*.png"))[:2]], PARAMS)
    return batch.images, batch.image_sizes


def test_regions_of_the_tiny_model(setup: dict[str, Path]) -> None:
    regions = find_regions(onnx.load(str(setup["model"])))
    assert regions.head_outputs == {HEAD_NODE}
    assert regions.stem == {"/conv1/Conv"}  # the convolution that sees the pixels
    assert len(regions.compute) == 3  # the three convolutions; Exp/Mul/Sigmoid are glue


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_qdq_model_is_symmetric_per_channel_and_runs(setup: dict[str, Path], method: str) -> None:
    out = setup["root"] / f"tiny_int8_{method}.onnx"
    images = calibration_images(setup["images"], count=8)
    result = quantize_int8(
        setup["model"],
        out,
        images,
        method=method,
        keep_fp32="none",
        activations="int8-symmetric",
        progress=False,
    )
    model = onnx.load(str(out))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    weights = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zero_point = numpy_helper.to_array(weights[node.input[2]])
            assert zero_point.dtype == np.int8 and not zero_point.any()  # symmetric INT8, what TensorRT takes
    conv_weights = [
        numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8
    ]
    assert any(w.ndim == 4 and w.shape[0] == 8 for w in conv_weights)  # INT8 conv weights
    scales = [
        numpy_helper.to_array(weights[n.input[1]])
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
    ]
    assert any(s.shape == (8,) for s in scales)  # per output channel
    consumers_of_dq = {i for n in model.graph.node for i in n.input if i.endswith("DequantizeLinear_Output")}
    exp = next(n for n in model.graph.node if n.op_type == "Exp")
    assert exp.input[0] not in consumers_of_dq  # decoding stays FP32
    assert [i.type.tensor_type.elem_type for i in model.graph.output] == [onnx.TensorProto.FLOAT] * 2
    assert read_metadata(out).precision == "int8"
    boxes, scores = run(out, *_inputs(setup["images"]))
    ref_boxes, ref_scores = run(setup["model"], *_inputs(setup["images"]))
    np.testing.assert_allclose(boxes, ref_boxes, rtol=0.05)
    np.testing.assert_allclose(scores, ref_scores, atol=0.05)
    assert result.quantized_nodes > 0 and not result.cache_reused


def test_keep_head_outputs_fp32(setup: dict[str, Path]) -> None:
    out = setup["root"] / "tiny_int8_heads.onnx"
    images = calibration_images(setup["images"], count=8)
    result = quantize_int8(setup["model"], out, images, keep_fp32="head_outputs", progress=False)
    assert result.kept_fp32 == sorted([HEAD_NODE, "/conv1/Conv"])  # the head output and the stem
    model = onnx.load(str(out))
    weights = {t.name: t for t in model.graph.initializer}
    for name in result.kept_fp32:
        node = next(n for n in model.graph.node if n.name == name)
        assert weights[node.input[1]].data_type == onnx.TensorProto.FLOAT  # its weight is not quantized


def test_ort_flavor_defaults_to_uint8_activations_for_the_cpu(setup: dict[str, Path]) -> None:
    out = setup["root"] / "tiny_int8_cpu.onnx"
    quantize_int8(setup["model"], out, calibration_images(setup["images"], count=8), progress=False)
    model = onnx.load(str(out))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    zero_points = [weights[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert zero_points and all(z.dtype == np.uint8 for z in zero_points)  # activations: asymmetric UINT8
    weight_dq = [
        weights[n.input[0]]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in weights
    ]
    assert weight_dq and all(w.dtype == np.int8 for w in weight_dq)  # weights: symmetric INT8 either way
    # 7-bit weights: no u8 x s8 pair sum (255 * 64 * 2 = 32640) saturates an int16 on CPUs without VNNI
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in weight_dq) == 64
    assert read_metadata(out).extra["int8_activations"] == "uint8-asymmetric"
    assert read_metadata(out).extra["int8_weight_bits"] == "7"
    boxes, _ = run(out, *_inputs(setup["images"]))
    ref_boxes, _ = run(setup["model"], *_inputs(setup["images"]))
    np.testing.assert_allclose(boxes, ref_boxes, rtol=0.05)


def test_eight_bit_weights_on_request_are_recorded_and_warned_about_without_vnni(
    setup: dict[str, Path],
) -> None:
    from runtime.cpu_features import CpuFeatures, int8_weight_warning

    out = setup["root"] / "tiny_int8_8bit.onnx"
    quantize_int8(setup["model"], out, calibration_images(setup["images"], count=8), progress=False, bits=8)
    model = onnx.load(str(out))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    dq = [
        weights[n.input[0]]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in weights
    ]
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in dq) == 127
    assert read_metadata(out).extra["int8_weight_bits"] == "8"
    info = read_metadata(out)
    avx2 = CpuFeatures("AVX2 machine", True, ("AVX2",), vnni=False)
    message = int8_weight_warning(info.precision, info.extra.get("int8_weight_bits"), avx2)
    assert message is not None and "8-bit weights" in message and "AVX2 machine" in message


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter, as exporter.onnx_export uses
@pytest.mark.parametrize("with_logits", [False, True])
def test_convtranspose_rewrite_for_the_cpu_is_exact(tmp_path: Path, with_logits: bool) -> None:
    """The mask predictor's 2x2 stride-2 ConvTranspose (+ ReLU + 1x1 logits) as 1x1 convs + DepthToSpace."""
    import onnxruntime as ort
    import torch

    from exporter.quantize_int8 import convtranspose_as_conv

    torch.manual_seed(0)
    layers = [torch.nn.ConvTranspose2d(5, 3, 2, stride=2)]
    if with_logits:
        layers += [torch.nn.ReLU(), torch.nn.Conv2d(3, 4, 1)]
    path = tmp_path / "deconv.onnx"
    torch.onnx.export(
        torch.nn.Sequential(*layers).eval(),
        (torch.rand(2, 5, 7, 6),),
        str(path),
        input_names=["x"],
        output_names=["y"],
        opset_version=17,
        dynamo=False,
    )
    model = onnx.load(str(path))
    aliases = convtranspose_as_conv(model, {n.name for n in model.graph.node})
    expected = ["Conv", "DepthToSpace"] if not with_logits else ["Conv", "Relu", "Conv", "DepthToSpace"]
    assert [n.op_type for n in model.graph.node] == expected
    assert "y" in aliases.values() and model.graph.node[-1].output[0] == "y"
    onnx.checker.check_model(model)
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 6)).astype(np.float32)
    ref = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    got = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_group_norm_is_part_of_the_dense_region_and_quantizes(tmp_path: Path) -> None:
    """The shapes recipe's GroupNorm (Reshape -> InstanceNormalization -> Reshape -> Mul -> Add) must not cut
    the dense region: cut, nothing was left to quantize and ONNX Runtime's quantizer failed on the Softmax."""
    model = export_tiny_model(tmp_path / "tiny_gn.onnx", group_norm=True)
    regions = find_regions(onnx.load(str(model)))
    ops = {n.name: n.op_type for n in onnx.load(str(model)).graph.node}
    assert len(regions.compute) == 3  # every convolution, through both GroupNorms
    assert sorted(ops[n] for n in regions.dense if ops[n] in ("InstanceNormalization", "Mul")) == [
        "InstanceNormalization", "InstanceNormalization", "Mul", "Mul"]  # fmt: skip
    assert not any(ops[n] in ("Exp", "Sigmoid") for n in regions.dense)  # the decoding stays glue
    write_images(tmp_path / "images", 8)
    out = tmp_path / "tiny_gn_int8.onnx"
    result = quantize_int8(model, out, calibration_images(tmp_path / "images", count=8), progress=False)
    assert result.quantized_nodes >= 3 and read_metadata(out).precision == "int8"
    batch = preprocess([read_image(p) for p in sorted((tmp_path / "images").glob("*.png"))[:2]], PARAMS)
    boxes, scores = run(out, batch.images, batch.image_sizes)
    assert np.isfinite(boxes).all() and np.isfinite(scores).all()
