"""FP16: a mixed-precision ONNX model, FP16 in the dense network, FP32 everywhere numbers are large or fragile.

TensorRT 11 has no FP16 builder flag: a strongly typed network runs each layer in the type the ONNX gives it.
So the precision decision lives here, once, and ONNX Runtime runs the same file on the CPU to measure it.
What converts is the dense region of ``calibration.precision_regions`` (backbone, FPN, head convolutions and
matmuls); decoding (``exp`` of deltas times image-sized widths, where FP16's 0.5-1 px steps at 1000 px would
show), NMS, top-k, softmax and the mask sigmoid keep FP32, as do the inputs and outputs (the contract's
types), and ROI pooling (ONNX RoiAlign gives its boxes the features' type). ``keep_fp32="head_outputs"``
also keeps the last layer of each head in FP32; the default was chosen by measuring AP
(``benchmarks/bench_precision.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import onnx

from calibration.precision_regions import GraphRegions, find_regions, parts_named, plan_metadata
from exporter.errors import ExportError
from exporter.precision_passes import FLOAT, mixed_fp16
from exporter.surgery import edit_in_place, save_onnx_atomic
from runtime.onnx_contract import META_PRECISION, metadata_props, update_metadata_props

#: what stays FP32 inside the dense region: nothing, or the last layer of every head. ROI pooling always
#: stays FP32: ONNX RoiAlign gives its boxes the features' type, and FP16 boxes are 0.5 px off at 1000 px.
KEEP_FP32_CHOICES = ("none", "head_outputs")
DEFAULT_KEEP_FP32 = "none"


@dataclass
class Fp16Result:
    path: Path
    fp16_nodes: int
    kept_fp32: list[str]
    casts: int
    seconds: float

    def summary(self) -> str:
        return (
            f"wrote {self.path} (mixed FP16: {self.fp16_nodes} nodes in FP16, {len(self.kept_fp32)} dense nodes "
            f"kept FP32, {self.casts} casts, FP32 inputs/outputs, {self.seconds:.1f} s)"
        )


def fp16_nodes(
    regions: GraphRegions,
    keep_fp32: str = DEFAULT_KEEP_FP32,
    fp32_nodes: frozenset[str] | None = None,
) -> tuple[set[str], set[str]]:
    """(FP16, kept FP32) node names of the dense region for a ``keep_fp32`` choice, or for a precision plan's
    ``fp32_nodes`` (the nodes of the parts it keeps FP32)."""
    if keep_fp32 not in KEEP_FP32_CHOICES:
        raise ValueError(f"unknown keep_fp32 {keep_fp32!r}; expected one of {', '.join(KEEP_FP32_CHOICES)}")
    if fp32_nodes is not None:
        kept = set(fp32_nodes)
    else:
        kept = set(regions.head_outputs) if keep_fp32 == "head_outputs" else set()
    return set(regions.dense) - kept, kept


def convert_fp16(
    onnx_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    keep_fp32: str = DEFAULT_KEEP_FP32,
    fp32_parts: Collection[str] | None = None,
) -> Fp16Result:
    """Write the mixed-precision FP16 version of the FP32 model ``onnx_path`` to ``output``; ``fp32_parts``
    (names of :func:`calibration.precision_regions.named_parts`) replaces ``keep_fp32``."""
    start = time.perf_counter()
    src, out = Path(onnx_path), Path(output)
    try:
        model = onnx.load(str(src))
    except Exception as e:  # DecodeError and friends for a file that is not ONNX
        raise ExportError(f"{src} is not a readable ONNX model: {e}") from None
    props = metadata_props(model)
    if props.get(META_PRECISION, "fp32") != "fp32":
        raise ExportError(f"{src} is already {props[META_PRECISION]}; convert the FP32 model instead")
    try:
        regions = find_regions(model)
    except ValueError as e:
        raise ExportError(f"{src}: {e}") from None
    fp32_nodes = None if fp32_parts is None else parts_named(model, regions, fp32_parts, ExportError)
    half, kept = fp16_nodes(regions, keep_fp32, fp32_nodes)
    casts = to_mixed_fp16(model, half)
    meta = {META_PRECISION: "fp16"}
    if fp32_parts is not None:
        meta.update(plan_metadata("fp16", fp32_parts))
    update_metadata_props(model, meta)
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_onnx_atomic(model, out)
    return Fp16Result(out, len(half), sorted(kept), casts, time.perf_counter() - start)


def to_mixed_fp16(model: onnx.ModelProto, half: set[str]) -> int:
    """Run the nodes named in ``half`` in FP16, in place; returns the number of Casts inserted.

    Float weights used only by FP16 nodes become FP16; every other float tensor crossing the FP16/FP32
    border goes through one Cast per direction, so graph inputs, outputs and the glue keep their types.
    """
    float_tensors = _float_tensors(model)
    return edit_in_place(model, lambda graph: mixed_fp16(graph, half, float_tensors))


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of the FP32 tensors of the graph (inputs, weights, and values shape inference can type)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    names = {t.name for t in model.graph.initializer if t.data_type == FLOAT}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.type.tensor_type.elem_type == FLOAT:
            names.add(vi.name)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == FLOAT:
                    names.update(node.output)
    return names
