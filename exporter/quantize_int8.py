"""INT8: explicit Q/DQ from calibration on real images, placed where the target's INT8 kernels want them.

TensorRT >= 10 builds INT8 from Q/DQ nodes in a strongly typed network (its calibrators are gone in 11), and
expects symmetric scales (zero point 0) for weights and activations, per-channel weights and float biases:
ONNX Runtime's static quantization writes that (``ActivationSymmetric``, ``WeightSymmetric``,
``QuantizeBias=False``, QInt8) for the ``trt`` flavor. For the ``ort`` flavor (ONNX Runtime's CPU) activations
are asymmetric UINT8 instead, the only form its x86 kernels fuse (see ``ACTIVATION_SCHEMES``), and the mask
predictor's ConvTranspose is rewritten exactly as 1x1 convolutions + DepthToSpace (:func:`convtranspose_as_conv`)
because ORT has no quantized ConvTranspose. Either file runs on ORT's CPU, so its accuracy is measured here
before any GPU is involved.

Only the dense region (``calibration.precision_regions``) is quantized: decoding, NMS and the rest of the glue
keep FP32. How much of the heads stays FP32 is ``keep_fp32``, chosen by measuring AP
(``benchmarks/bench_precision.py``). Ranges are calibrated once (not symmetrized), cached, and serve both
schemes and both flavors.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from calibration.cache import CalibrationCache, load_cache, save_cache, tensor_roles
from calibration.data_reader import FeedsReader
from calibration.errors import CalibrationError
from calibration.image_source import CalibrationImages
from calibration.model_inputs import InputSpec, common_canvas
from calibration.precision_regions import GraphRegions, find_regions, region_fingerprint
from exporter.precision_fp16 import META_PRECISION
from runtime.onnx_contract import read_metadata
from runtime.plugin_ops import DOMAIN

METHODS = ("minmax", "entropy", "percentile")
#: what stays FP32 inside the dense region: nothing, the last layer of every head, or every layer after ROI
#: pooling plus the RPN's last layers
KEEP_FP32_CHOICES = ("none", "head_outputs", "roi_heads")
DEFAULT_KEEP_FP32 = "head_outputs"
META_CALIBRATION = "calibration"
META_ACTIVATIONS = "int8_activations"
#: activation quantization: TensorRT's explicit quantization takes symmetric INT8 only; ONNX Runtime's x86
#: CPU kernels fuse Conv+ReLU into QLinearConv only with asymmetric UINT8 activations (with symmetric INT8
#: most convolutions stay FP32 between Q/DQ pairs and the model is barely faster). Weights are symmetric
#: per-channel INT8 in both.
ACTIVATION_SCHEMES = ("int8-symmetric", "uint8-asymmetric")


def default_activations(flavor: str) -> str:
    """``trt`` graphs are for TensorRT (symmetric INT8); ``ort`` graphs for ONNX Runtime (UINT8 on the CPU)."""
    return "int8-symmetric" if flavor == "trt" else "uint8-asymmetric"


@dataclass
class Int8Result:
    path: Path
    quantized_nodes: int
    kept_fp32: list[str]
    cache_path: Path | None
    cache_reused: bool
    seconds: float

    def summary(self) -> str:
        cache = ""
        if self.cache_path is not None:
            cache = f", ranges {'reused from' if self.cache_reused else 'saved to'} {self.cache_path}"
        return (
            f"wrote {self.path} (INT8 Q/DQ: {self.quantized_nodes} nodes quantized, "
            f"{len(self.kept_fp32)} dense nodes kept FP32{cache}, {self.seconds:.1f} s)"
        )


#: data movement in the dense region, left in its input's precision: quantizing it buys nothing, and the same
#: op types in the glue hold -inf paddings, which the histogram calibrators cannot bin
NOT_QUANTIZED_OPS = frozenset({"Concat", "Gather", "Reshape", "Flatten", "Identity"})
#: op types whose tensors are calibrated: every dense tensor is an input or output of one of them (a residual
#: Add sits between convolutions and ReLUs), and none of them occurs in the glue
NOT_CALIBRATED_OPS = NOT_QUANTIZED_OPS | {"Add", "Sum"}


def nodes_to_quantize(
    regions: GraphRegions, keep_fp32: str = DEFAULT_KEEP_FP32, op_types: dict[str, str] | None = None
) -> tuple[set[str], set[str]]:
    """(quantized, kept FP32) node names of the dense region for a ``keep_fp32`` choice."""
    if keep_fp32 not in KEEP_FP32_CHOICES:
        raise ValueError(f"unknown keep_fp32 {keep_fp32!r}; expected one of {', '.join(KEEP_FP32_CHOICES)}")
    kept: set[str] = set()
    if keep_fp32 in ("head_outputs", "roi_heads"):
        kept |= regions.head_outputs
    if keep_fp32 == "roi_heads":
        kept |= regions.roi_heads
    moving = {n for n in regions.dense if op_types and op_types.get(n) in NOT_QUANTIZED_OPS}
    return set(regions.dense) - kept - moving, kept


def quantize_int8(
    onnx_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    images: CalibrationImages | None = None,
    method: str = "minmax",
    keep_fp32: str = DEFAULT_KEEP_FP32,
    activations: str | None = None,
    cache_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Int8Result:
    """Calibrate the FP32 ``onnx_path`` (or reuse ``cache_path``'s ranges) and write its Q/DQ model to ``output``.

    ``images`` may be None only when ``cache_path`` holds this model's ranges. A cache computed for another
    model or method raises :class:`CalibrationError`; a missing cache file is written after calibrating.
    ``activations`` defaults to the flavor's scheme (:func:`default_activations`).
    """
    if method not in METHODS:
        raise CalibrationError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")
    if keep_fp32 not in KEEP_FP32_CHOICES:
        raise CalibrationError(
            f"unknown keep_fp32 {keep_fp32!r}; expected one of {', '.join(KEEP_FP32_CHOICES)}"
        )
    start = time.perf_counter()
    src, out = Path(onnx_path), Path(output)
    spec = InputSpec.from_onnx(src)  # also checks it is a model of ours
    scheme = activations or default_activations(read_metadata(src).flavor)
    if scheme not in ACTIVATION_SCHEMES:
        raise CalibrationError(
            f"unknown activation scheme {scheme!r}; expected one of {', '.join(ACTIVATION_SCHEMES)}"
        )
    model = onnx.load(str(src))
    precision = {p.key: p.value for p in model.metadata_props}.get(META_PRECISION, "fp32")
    if precision != "fp32":
        raise CalibrationError(f"{src} is already {precision}; quantize the FP32 model instead")
    try:
        regions = find_regions(model)
    except ValueError as e:
        raise CalibrationError(f"{src}: {e}") from None
    cache_file = Path(cache_path) if cache_path is not None else None
    fingerprint = region_fingerprint(model, regions.compute)
    reused = cache_file is not None and cache_file.exists()
    if reused:
        assert cache_file is not None
        cached = load_cache(cache_file, fingerprint, method)
    else:
        if any(n.domain == DOMAIN for n in model.graph.node):
            raise CalibrationError(
                f"{src} is the trt flavor: its plugin nodes do not run in ONNX Runtime's calibrator. Quantize "
                "the ort flavor of the same weights first with the same calibration cache; this one then reuses "
                "its ranges"
            )
        if images is None:
            raise CalibrationError(
                "INT8 needs calibration images (--calib-images DIR or --calib-dataset NAME)"
                + (f"; the calibration cache {cache_file} does not exist yet" if cache_file else "")
            )
        ranges = calibrate(src, regions, images, spec, method, progress)
        cached = CalibrationCache(
            fingerprint, method, images.describe(), ranges, tensor_roles(model, regions.dense)
        )
        if cache_file is not None:
            save_cache(cache_file, cached)
    quantize, kept = nodes_to_quantize(regions, keep_fp32, {n.name: n.op_type for n in model.graph.node})
    result_model, quantized = write_qdq(src, model, regions, quantize, cached, scheme)
    meta = {META_PRECISION: "int8", META_CALIBRATION: f"{method}, {cached.source}", META_ACTIVATIONS: scheme}
    _copy_metadata(model, result_model, meta)
    onnx.checker.check_model(result_model)
    _save_atomic(result_model, out)
    return Int8Result(out, len(quantized), sorted(kept), cache_file, reused, time.perf_counter() - start)


def write_qdq(
    src: Path,
    model: onnx.ModelProto,
    regions: GraphRegions,
    quantize: set[str],
    cache: CalibrationCache,
    scheme: str,
) -> tuple[onnx.ModelProto, set[str]]:
    """ONNX Runtime's QDQ quantizer on ``quantize`` with the cached ranges; returns the model and what it quantized."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    symmetric = scheme == "int8-symmetric"
    by_name = {n.name: n for n in model.graph.node}
    weights = {t.name for t in model.graph.initializer}
    ranges = cache.ranges_for(model, regions.dense)
    quantize = {n for n in quantize if _has_ranges(by_name[n], ranges["data"], weights)}
    with tempfile.TemporaryDirectory(prefix="mrd-int8-") as tmp:
        ort_cache, tmp_out = Path(tmp) / "ranges.json", Path(tmp) / "model_int8.onnx"
        if (
            not symmetric
        ):  # ONNX Runtime's CPU: make the mask upsampling quantizable (TensorRT has INT8 deconv)
            rewritten = onnx.ModelProto()
            rewritten.CopyFrom(model)
            aliases = convtranspose_as_conv(rewritten, quantize)
            if aliases:
                for new, old in aliases.items():
                    ranges["data"][new] = ranges["data"][old]
                # the pixel shuffle moves UINT8 between QLinearConv and its consumer: 4x less memory traffic
                quantize |= {
                    n.name
                    for n in rewritten.graph.node
                    if n.op_type == "DepthToSpace" and n.input[0] in aliases
                }
                by_name = {n.name: n for n in rewritten.graph.node}
                src = Path(tmp) / "rewritten.onnx"
                onnx.save(rewritten, str(src))
        ort_cache.write_text(json.dumps(ranges))
        quiet = _QuietPreprocessAdvice()
        logging.getLogger().addFilter(quiet)
        try:
            quantize_static(
                str(src),
                str(tmp_out),
                calibration_data_reader=None,  # the ranges come from the cache file
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=sorted({by_name[n].op_type for n in quantize}),
                nodes_to_quantize=sorted(quantize),
                per_channel=True,
                reduce_range=False,
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=ORT_METHODS[cache.method](),
                calibration_cache_path=str(ort_cache),
                extra_options={
                    "ActivationSymmetric": symmetric,
                    "WeightSymmetric": True,
                    "QuantizeBias": False,  # TensorRT keeps biases in float; an INT32 bias DQ is not supported
                },
            )
        finally:
            logging.getLogger().removeFilter(quiet)
        return onnx.load(str(tmp_out)), quantize


def calibrate(
    src: Path, regions: GraphRegions, images: CalibrationImages, spec: InputSpec, method: str, progress: bool
) -> dict[str, Any]:
    """Activation ranges of the dense region over ``images``, as ONNX Runtime's cache JSON (not symmetrized).

    Kept apart from quantizing so the ranges are computed once and cached, whatever the scheme or the
    ``keep_fp32`` choice of later runs.
    """
    from onnxruntime.quantization import create_calibrator
    from onnxruntime.quantization.calibrate import save_tensors_data

    if method != "minmax" and spec.static_size is None:
        # the histogram calibrators stack every batch of a tensor: one canvas for all images
        spec = replace(spec, static_size=common_canvas(images, spec.preprocess))
    model = onnx.load(str(src), load_external_data=False)
    by_name = {n.name: n for n in model.graph.node}
    with tempfile.TemporaryDirectory(prefix="mrd-calib-") as tmp:
        calibrator = create_calibrator(
            src,
            sorted({by_name[n].op_type for n in regions.dense} - NOT_CALIBRATED_OPS),
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=ORT_METHODS[method](),
        )
        calibrator.collect_data(FeedsReader(images, spec, progress))
        ranges = calibrator.compute_data()
        save_tensors_data(ranges, Path(tmp) / "ranges.json")
        return dict(json.loads((Path(tmp) / "ranges.json").read_text()))


def convtranspose_as_conv(model: onnx.ModelProto, names: set[str]) -> dict[str, str]:
    """Rewrite each named 2x2/stride-2 ConvTranspose as 1x1 convolutions + a pixel shuffle, in place (exact).

    ONNX Runtime's CPU has no quantized ConvTranspose, so the mask predictor's upsampling would run in FP32
    between a DQ and a Q. As a 1x1 convolution to 4x the channels (one group of channels per output
    sub-pixel) followed by DepthToSpace it becomes a QLinearConv. Where a ReLU and a 1x1 convolution follow
    (the mask logits), the shuffle moves after them, the 1x1 convolution applied to each sub-pixel group
    (``group=4``): DepthToSpace then moves num_classes channels instead of 4x256, which ORT's slow
    DepthToSpace otherwise spends a third of the INT8 model's time on.
    Returns {new tensor: original tensor holding the same values}, so calibrated ranges carry over.
    """
    weights = {t.name: t for t in model.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for t in node.input:
            consumers.setdefault(t, []).append(node)
    graph_outputs = {o.name for o in model.graph.output}
    aliases: dict[str, str] = {}
    replace: dict[str, list[onnx.NodeProto]] = {}  # node name -> nodes standing for it
    for node in model.graph.node:
        if node.name not in names or not _is_2x2_upsampling(node, weights):
            continue
        w = numpy_helper.to_array(weights[node.input[1]])  # [C_in, C_out, 2, 2]
        c_in, c_out = w.shape[:2]
        bias = (
            numpy_helper.to_array(weights[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
        )
        # rows (2a + b) * C_out + c: DepthToSpace's DCR order
        conv_w = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(4 * c_out, c_in, 1, 1))
        upsampled = f"{node.output[0]}_by_subpixel"
        conv = _conv(
            model, node.name, node.input[0], conv_w, None if bias is None else np.tile(bias, 4), upsampled
        )
        aliases[upsampled] = node.output[0]
        relu, logits = _relu_then_1x1(node.output[0], consumers, weights, graph_outputs)
        if relu is None or logits is None:
            shuffle = _depth_to_space(f"{node.name}_depth_to_space", upsampled, node.output[0])
            replace[node.name] = [conv, shuffle]
            continue
        relu_out = f"{relu.output[0]}_by_subpixel"
        aliases[relu_out] = relu.output[0]
        new_relu = onnx.helper.make_node("Relu", [upsampled], [relu_out], name=relu.name)
        lw = numpy_helper.to_array(weights[logits.input[1]])  # [K, C_out, 1, 1]
        lb = (
            numpy_helper.to_array(weights[logits.input[2]])
            if len(logits.input) > 2 and logits.input[2]
            else None
        )
        grouped_out = f"{logits.output[0]}_by_subpixel"
        aliases[grouped_out] = logits.output[0]
        grouped = _conv(
            model, logits.name, relu_out, np.tile(lw, (4, 1, 1, 1)), None if lb is None else np.tile(lb, 4),
            grouped_out, group=4,
        )  # fmt: skip
        replace[node.name] = [conv]
        replace[relu.name] = [new_relu]
        replace[logits.name] = [
            grouped,
            _depth_to_space(f"{logits.name}_depth_to_space", grouped_out, logits.output[0]),
        ]
    if replace:
        nodes = [n for node in model.graph.node for n in replace.get(node.name, [node])]
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        used = {t for n in nodes for t in n.input}
        kept = [t for t in model.graph.initializer if t.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
    return aliases


def _is_2x2_upsampling(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto]) -> bool:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return (
        node.op_type == "ConvTranspose"
        and list(attrs.get("kernel_shape", [])) == [2, 2]
        and list(attrs.get("strides", [])) == [2, 2]
        and not any(attrs.get("pads", [0, 0, 0, 0]))
        and list(attrs.get("dilations", [1, 1])) == [1, 1]
        and attrs.get("group", 1) == 1
        and not attrs.get("output_padding")
        and not attrs.get("output_shape")
        and all(t in weights for t in node.input[1:] if t)
    )


def _relu_then_1x1(
    tensor: str,
    consumers: dict[str, list[onnx.NodeProto]],
    weights: dict[str, onnx.TensorProto],
    graph_outputs: set[str],
) -> tuple[onnx.NodeProto | None, onnx.NodeProto | None]:
    """The ReLU and 1x1 convolution that alone consume ``tensor`` in that order, else (None, None)."""
    first = consumers.get(tensor, [])
    if len(first) != 1 or first[0].op_type != "Relu" or tensor in graph_outputs:
        return None, None
    relu = first[0]
    second = consumers.get(relu.output[0], [])
    if len(second) != 1 or second[0].op_type != "Conv" or relu.output[0] in graph_outputs:
        return None, None
    conv = second[0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
    w = weights.get(conv.input[1])
    pointwise = (
        w is not None
        and list(w.dims[2:]) == [1, 1]
        and attrs.get("group", 1) == 1
        and list(attrs.get("strides", [1, 1])) == [1, 1]
        and not any(attrs.get("pads", [0, 0, 0, 0]))
        and all(t in weights for t in conv.input[1:] if t)
    )
    return (relu, conv) if pointwise else (None, None)


def _conv(
    model: onnx.ModelProto,
    name: str,
    x: str,
    weight: np.ndarray,
    bias: np.ndarray | None,
    output: str,
    group: int = 1,
) -> onnx.NodeProto:
    inputs = [x, f"{name}_subpixel_weight"]
    model.graph.initializer.append(numpy_helper.from_array(weight.astype(np.float32), inputs[1]))
    if bias is not None:
        inputs.append(f"{name}_subpixel_bias")
        model.graph.initializer.append(numpy_helper.from_array(bias.astype(np.float32), inputs[2]))
    return onnx.helper.make_node("Conv", inputs, [output], name=name, kernel_shape=[1, 1], group=group)


def _depth_to_space(name: str, x: str, output: str) -> onnx.NodeProto:
    return onnx.helper.make_node("DepthToSpace", [x], [output], name=name, blocksize=2, mode="DCR")


def _has_ranges(node: onnx.NodeProto, ranges: dict[str, Any], weights: set[str]) -> bool:
    """Whether every activation of ``node`` was calibrated (ONNX Runtime's quantizer needs them all)."""
    inputs = node.input[:1] if node.op_type in ("Resize", "Upsample") else node.input
    activations = [t for t in list(inputs) + list(node.output) if t and t not in weights]
    return all(t in ranges for t in activations)


def _ort_method(name: str) -> Callable[[], Any]:
    def get() -> Any:
        from onnxruntime.quantization import CalibrationMethod

        return getattr(CalibrationMethod, name)

    return get


#: our method names -> ONNX Runtime's CalibrationMethod (imported lazily, like all of onnxruntime here)
ORT_METHODS: dict[str, Callable[[], Any]] = {
    "minmax": _ort_method("MinMax"),
    "entropy": _ort_method("Entropy"),
    "percentile": _ort_method("Percentile"),
}


class _QuietPreprocessAdvice(logging.Filter):
    """ORT logs "consider pre-processing" to the root logger on every call; our graph is already clean."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _copy_metadata(src: onnx.ModelProto, dst: onnx.ModelProto, extra: dict[str, str]) -> None:
    """The FP32 model's contract metadata, plus what quantization adds (precision, calibration, scheme)."""
    props = {p.key: p.value for p in src.metadata_props}
    props.update(extra)
    del dst.metadata_props[:]
    onnx.helper.set_model_props(dst, props)


def _save_atomic(model: onnx.ModelProto, output: Path) -> None:
    tmp = output.with_name(output.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(output)
