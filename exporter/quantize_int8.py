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

import contextlib
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import onnx

from calibration.cache import CalibrationCache, load_cache, save_cache, tensor_roles
from calibration.data_reader import FeedsReader
from calibration.errors import CalibrationError
from calibration.image_source import CalibrationImages
from calibration.model_inputs import InputSpec, common_canvas
from calibration.precision_regions import (
    GraphRegions,
    find_regions,
    parts_named,
    plan_metadata,
    region_fingerprint,
)
from exporter import precision_passes
from exporter.surgery import copy_metadata, edit_in_place, save_onnx_atomic
from runtime.onnx_contract import (
    META_CALIBRATION,
    META_FLAVOR,
    META_INT8_ACTIVATIONS,
    META_INT8_WEIGHT_BITS,
    META_KEYPOINT_NAMES,
    META_MASK_SIZE,
    META_PRECISION,
    metadata_props,
    read_metadata,
)
from runtime.plugins.spec import DOMAIN

METHODS = ("minmax", "entropy", "percentile")
#: what stays FP32 inside the dense region: nothing; the stem convolution and the last layer of every head;
#: or those and every layer after ROI pooling. The stem sees the normalized pixels through few input
#: channels, and measured (issue 23) it is where 7-bit weights cost most: keeping it FP32 took the fine-tuned
#: detectron2 import's INT8 agreement AP50 from 0.898 to 0.913 (maskrcnn-benchmark's: 0.911 to 0.925) for
#: about 3% of the FLOPs (shapes model: 0.72x against 0.74x FP32's latency, within noise)
KEEP_FP32_CHOICES = ("none", "head_outputs", "roi_heads")
DEFAULT_KEEP_FP32 = "head_outputs"
#: activation quantization: TensorRT's explicit quantization takes symmetric INT8 only; ONNX Runtime's x86
#: CPU kernels fuse Conv+ReLU into QLinearConv only with asymmetric UINT8 activations (with symmetric INT8
#: most convolutions stay FP32 between Q/DQ pairs and the model is barely faster). Weights are symmetric
#: per-channel INT8 in both.
ACTIVATION_SCHEMES = ("int8-symmetric", "uint8-asymmetric")


WEIGHT_BITS = (7, 8)


def weight_bits(scheme: str) -> int:
    """The default weight range of an activation scheme: 7-bit weights ([-64, 64]) under UINT8 activations, 8-bit under symmetric INT8 ones.

    The ``ort`` scheme runs on x86 CPUs, where without VNNI (AVX2; AVX-512 without VNNI) the u8 x s8 products
    are summed in pairs into a saturating int16 (``vpmaddubsw``): with 8-bit weights the sums overflow and
    the model's detections change with the CPU (measured under ``qemu-x86_64 -cpu Haswell``: the golden
    model's boxes up to 236 px apart; the shapes model's OpenVINO-vs-ONNX Runtime agreement AP 0.744), while
    with 7-bit weights every x86 kernel computes the same integers (the same outputs to the bit under AVX2
    emulation and on AVX512-VNNI). The cost is one bit of weight resolution, per output channel: measured on
    the demo's model in issue 23's note. The ``trt`` scheme is for TensorRT's GPU kernels, which do not
    saturate, and keeps 8 bits; on a CPU without VNNI the backends warn (``runtime.cpu_features``).
    """
    return 7 if scheme == "uint8-asymmetric" else 8


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
    regions: GraphRegions,
    keep_fp32: str = DEFAULT_KEEP_FP32,
    op_types: dict[str, str] | None = None,
    fp32_nodes: frozenset[str] | None = None,
) -> tuple[set[str], set[str]]:
    """(quantized, kept FP32) node names of the dense region for a ``keep_fp32`` choice, or for a precision
    plan's ``fp32_nodes`` (the nodes of the parts it keeps FP32; the rest of the region is quantized)."""
    if keep_fp32 not in KEEP_FP32_CHOICES:
        raise ValueError(f"unknown keep_fp32 {keep_fp32!r}; expected one of {', '.join(KEEP_FP32_CHOICES)}")
    kept: set[str] = set()
    if fp32_nodes is not None:
        kept = set(fp32_nodes)
    elif keep_fp32 in ("head_outputs", "roi_heads"):
        kept |= regions.head_outputs | regions.stem
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
    bits: int | None = None,
    fp32_parts: Collection[str] | None = None,
) -> Int8Result:
    """Calibrate the FP32 ``onnx_path`` (or reuse ``cache_path``'s ranges) and write its Q/DQ model to ``output``.

    ``images`` may be None only when ``cache_path`` holds this model's ranges. A cache computed for another
    model or method raises :class:`CalibrationError`; a missing cache file is written after calibrating.
    ``activations`` defaults to the flavor's scheme (:func:`default_activations`), ``bits`` (the weights'
    range, 7 or 8) to the scheme's (:func:`weight_bits`). ``fp32_parts`` (names of
    :func:`calibration.precision_regions.named_parts`) replaces ``keep_fp32``: exactly those parts stay FP32.
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
    scheme = activations or default_activations(read_metadata(src).flavor or "ort")
    if scheme not in ACTIVATION_SCHEMES:
        raise CalibrationError(
            f"unknown activation scheme {scheme!r}; expected one of {', '.join(ACTIVATION_SCHEMES)}"
        )
    bits = bits or weight_bits(scheme)
    if bits not in WEIGHT_BITS:
        raise CalibrationError(f"INT8 weights are 7 or 8 bits, not {bits}")
    model = onnx.load(str(src))
    precision = metadata_props(model).get(META_PRECISION, "fp32")
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
    part_nodes = None if fp32_parts is None else parts_named(model, regions, fp32_parts, CalibrationError)
    quantize, kept = nodes_to_quantize(
        regions, keep_fp32, {n.name: n.op_type for n in model.graph.node}, part_nodes
    )
    result_model, quantized = write_qdq(src, model, regions, quantize, cached, scheme, bits)
    # the FP32 model's contract metadata, plus what quantization adds (precision, calibration, scheme)
    meta = {
        META_PRECISION: "int8",
        META_CALIBRATION: f"{method}, {cached.source}",
        META_INT8_ACTIVATIONS: scheme,
        META_INT8_WEIGHT_BITS: str(bits),
    }
    if fp32_parts is not None:
        meta.update(plan_metadata("int8", fp32_parts))
    copy_metadata(model, result_model, meta)
    onnx.checker.check_model(result_model)
    save_onnx_atomic(result_model, out)
    return Int8Result(out, len(quantized), sorted(kept), cache_file, reused, time.perf_counter() - start)


def write_qdq(
    src: Path,
    model: onnx.ModelProto,
    regions: GraphRegions,
    quantize: set[str],
    cache: CalibrationCache,
    scheme: str,
    bits: int = 8,
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
                reduce_range=bits == 7,
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
        reader = FeedsReader(images, spec, progress)
        if method == "minmax" or not _has_trimmed_heads(model):
            calibrator.collect_data(reader)
        else:
            # The histogram collectors stack a tensor's values over the batches of one collect_data call,
            # which fails on tensors whose size depends on the detections (the ort flavor's mask and keypoint
            # heads run on the used slots only); one call per batch gives one array per tensor and the
            # histograms merge. Merging re-bins, so ranges differ slightly from one call over every batch.
            while (feeds := reader.get_next()) is not None:
                with contextlib.redirect_stdout(io.StringIO()):  # it prints a line per call
                    calibrator.collect_data(_OneBatch(feeds))
        ranges = calibrator.compute_data()
        save_tensors_data(ranges, Path(tmp) / "ranges.json")
        return dict(json.loads((Path(tmp) / "ranges.json").read_text()))


def _has_trimmed_heads(model: onnx.ModelProto) -> bool:
    """Whether per-detection heads run on a data-dependent number of slots (the ``ort`` flavor's)."""
    meta = metadata_props(model)
    per_detection = META_MASK_SIZE in meta or META_KEYPOINT_NAMES in meta
    return per_detection and meta.get(META_FLAVOR) == "ort"


class _OneBatch:
    """A calibration data reader over one batch of feeds (ONNX Runtime's ``CalibrationDataReader`` protocol)."""

    def __init__(self, feeds: dict[str, Any]) -> None:
        self._feeds: dict[str, Any] | None = feeds

    def get_next(self) -> dict[str, Any] | None:
        feeds, self._feeds = self._feeds, None
        return feeds

    def rewind(self) -> None:  # never called for a single batch; part of the protocol
        pass


def convtranspose_as_conv(model: onnx.ModelProto, names: set[str]) -> dict[str, str]:
    """:func:`exporter.precision_passes.convtranspose_as_conv` on ``model``, in place (exact).

    ONNX Runtime's CPU has no quantized ConvTranspose; rewritten as 1x1 convolutions + DepthToSpace the
    mask upsampling becomes QLinearConv. Returns {new tensor: original tensor holding the same values}.
    """
    return edit_in_place(model, lambda graph: precision_passes.convtranspose_as_conv(graph, names))


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
    """ORT's quantizer logs to the root logger, on every call, advice that does not apply to our graphs:
    "consider pre-processing" (it is already clean), "Axis 1 is out-of-range" for each 1-D per-channel
    constant (they stay per-tensor, as intended) and "Created a copy of bias input" (a shared bias)."""

    NOISE = (
        "pre-processing before quantization",
        "is out-of-range for weight",
        "Created a copy of bias input",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in self.NOISE)
