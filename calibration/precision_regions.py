"""Where in a detector's ONNX graph reduced precision belongs: the dense network, not the detection glue.

A Mask R-CNN graph is a dense network (backbone, FPN, the RPN/box/mask heads' convolutions and matmuls)
wrapped in glue that must stay FP32: anchor generation, box decoding (``exp`` of deltas times image-sized
widths), clipping, top-k, NMS, index gathers, the score softmax. FP16 boxes in an 800-1333 pixel image are
already 0.5-1 px off; INT8 there would be worse. So both precision passes only touch the *dense region*:

    tensors that flow from ``images`` through dense ops only (convolution, matmul, activation, pooling,
    resize, residual add, reshape), continuing through ROI pooling's feature input.

Everything else keeps its type. Inside the region the *head outputs* (the last matmul/conv of each head,
whose results go straight into decoding, softmax or the mask sigmoid) and the *ROI heads* (layers after ROI
pooling) are named separately, because whether they tolerate reduced precision is measured, not assumed
(see ``benchmarks/bench_precision.py``), and so are the *parts* (:func:`named_parts`: each backbone stage, FPN
level and head), which ``exporter.precision_plan`` keeps in FP32 or not by their measured cost. It takes plain ``onnx`` protos so it serves both the FP16 and the
INT8 pass, and works on either flavor (``RoiAlign`` or the ``MRD_MultiLevelRoiAlign`` plugin node); who
consumes what comes from onnx-graphsurgeon, as in the passes that act on the regions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

import onnx
import onnx_graphsurgeon as gs
from onnx import numpy_helper

from runtime import onnx_contract as contract

#: layers that carry the weights (what INT8 quantizes and what dominates FP16 speed)
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
#: ops that keep a tensor "dense" (feature maps and head activations) when a float input of theirs is dense
DENSE_OPS = COMPUTE_OPS | {
    "Relu",
    "LeakyRelu",
    "Clip",
    "Add",
    "Sum",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Resize",
    "Upsample",
    "BatchNormalization",
    "InstanceNormalization",  # GroupNorm exports as Reshape -> InstanceNormalization -> Reshape -> Mul -> Add
    "Mul",  # of a dense tensor by a per-channel weight only: GroupNorm's affine scale
    "Flatten",
    "Reshape",
    "Identity",
    "Concat",  # of dense tensors only: the per-level ROI pooling results
    "Gather",  # of a dense tensor: putting pooled ROIs back in order
}
#: ROI pooling: dense output when its feature inputs are dense; the ROI (box) input is glue
ROI_OPS = frozenset({"RoiAlign", "MRD_MultiLevelRoiAlign"})


@dataclass(frozen=True)
class GraphRegions:
    """Node names of one graph, by the role reduced precision cares about."""

    dense: frozenset[str]  # every node of the dense region, ROI pooling excluded
    compute: frozenset[str]  # COMPUTE_OPS nodes of the dense region
    head_outputs: frozenset[str]  # compute nodes with no compute node after them in the dense region
    roi_heads: frozenset[str]  # dense nodes after ROI pooling (box and mask heads)
    roi_pooling: frozenset[str]  # the ROI pooling nodes themselves
    #: compute nodes with no compute node before them: the stem convolution, which sees the normalized
    #: pixels (empty for graphs made before it was named)
    stem: frozenset[str] = frozenset()

    def describe(self) -> str:
        return (
            f"dense region {len(self.dense)} nodes ({len(self.compute)} conv/matmul), "
            f"{len(self.stem)} stem, {len(self.head_outputs)} head outputs, {len(self.roi_heads)} ROI-head nodes, "
            f"{len(self.roi_pooling)} ROI pooling nodes"
        )


def find_regions(model: onnx.ModelProto, input_name: str = contract.INPUT_IMAGES) -> GraphRegions:
    """Classify the nodes of ``model`` (nodes must be topologically sorted, as ONNX requires)."""
    graph = model.graph
    if input_name not in {i.name for i in graph.input}:
        raise ValueError(f"the model has no input named {input_name!r}; is it an export of this project?")
    initializers = {t.name for t in graph.initializer}
    weight_dims = {t.name: tuple(t.dims) for t in graph.initializer}
    dense_tensors = {input_name}
    after_roi: set[str] = set()  # dense tensors downstream of ROI pooling
    dense: set[str] = set()
    roi_heads: set[str] = set()
    roi_pooling: set[str] = set()
    stem: set[str] = set()
    after_compute: set[str] = set()  # dense tensors downstream of a compute node
    for node in graph.node:
        op = node.op_type
        if op in ROI_OPS:
            features = [t for t in node.input[:1] if op == "RoiAlign"] or list(node.input[1:])
            if features and all(t in dense_tensors for t in features):
                roi_pooling.add(node.name)
                dense_tensors.update(node.output)
                after_roi.update(node.output)
                after_compute.update(node.output)
            continue
        if op not in DENSE_OPS:
            continue
        # the data input decides; shape/scale inputs (Reshape, Resize) and weights do not
        data_inputs = [t for t in node.input[:2] if t and t not in initializers]
        if op in {"Reshape", "Resize", "Upsample", "Gather"}:
            data_inputs = node.input[:1]
        if not data_inputs or not any(t in dense_tensors for t in data_inputs):
            continue
        if op in {"Add", "Sum", "Concat"} and not all(
            t in dense_tensors or t in initializers for t in node.input
        ):
            continue  # adding a glue tensor (an anchor, a decoded offset) is decoding, not a residual
        if op == "Mul" and not all(
            t in dense_tensors or len(weight_dims.get(t, ())) >= 3 for t in node.input
        ):
            continue  # only a per-channel scale ([C, 1, 1]) of a feature map; a scalar or [4] scale is decoding
        dense.add(node.name)
        dense_tensors.update(node.output)
        if op in COMPUTE_OPS and not any(t in after_compute for t in data_inputs):
            stem.add(node.name)
        if op in COMPUTE_OPS or any(t in after_compute for t in data_inputs):
            after_compute.update(node.output)
        if any(t in after_roi for t in data_inputs):
            roi_heads.add(node.name)
            after_roi.update(node.output)
    by_name = {n.name: n for n in graph.node}
    compute = {n for n in dense if by_name[n].op_type in COMPUTE_OPS}
    return GraphRegions(
        dense=frozenset(dense),
        compute=frozenset(compute),
        head_outputs=frozenset(_last_compute(gs.import_onnx(model), dense | roi_pooling, compute)),
        roi_heads=frozenset(roi_heads),
        roi_pooling=frozenset(roi_pooling),
        stem=frozenset(stem),
    )


def _last_compute(graph: gs.Graph, passable: set[str], compute: set[str]) -> set[str]:
    """Compute nodes from which no other compute node is reachable through dense and ROI pooling nodes."""
    last = set()
    for node in graph.nodes:
        if node.name not in compute:
            continue
        stack, seen, feeds_compute = list(node.outputs), set(), False
        while stack and not feeds_compute:
            for c in stack.pop().outputs:
                if c.name in compute:
                    feeds_compute = True
                    break
                if c.name in passable and c.name not in seen:
                    seen.add(c.name)
                    stack.extend(c.outputs)
        if not feeds_compute:
            last.add(node.name)
    return last


#: the parts of a detector reduced precision is planned by (``exporter.precision_plan``): each backbone stage,
#: each FPN level, each head. A node's part comes from the module path its export gave it
#: (``/backbone/body/layer3/...``, ``/backbone/fpn/inner_blocks.2/...``, ``/mask_predictor/...``).
def part_of(node_name: str) -> str:
    """The named part of a dense-region node (``"other"`` for a path this does not know)."""
    if "/" not in node_name:
        return "other"  # a node the exporter made itself (a Reshape or Concat between the parts)
    parts = [p for p in node_name.split("/") if p]
    if len(parts) >= 3 and parts[0] == "backbone":
        if parts[1] == "body":
            return f"backbone.{parts[2]}" if parts[2].startswith("layer") else "backbone.stem"
        if parts[1] == "fpn":
            level = parts[2].rsplit(".", 1)[-1]
            return f"fpn.level{level}" if level.isdigit() else "fpn.extra"
    if parts and parts[0] == "head":
        return "rpn.head"
    return parts[0] if parts else "other"


def named_parts(model: onnx.ModelProto, regions: GraphRegions) -> dict[str, frozenset[str]]:
    """part name -> the dense-region nodes of that part, for the parts holding a conv or matmul (what a plan
    can keep in FP32), in graph order."""
    found: dict[str, set[str]] = {}
    for node in model.graph.node:
        if node.name in regions.dense:
            found.setdefault(part_of(node.name), set()).add(node.name)
    return {
        name: frozenset(nodes) for name, nodes in found.items() if nodes & regions.compute and name != "other"
    }


def parts_named(
    model: onnx.ModelProto, regions: GraphRegions, names: Iterable[str], error: type[Exception] = ValueError
) -> frozenset[str]:
    """The nodes of the parts ``names``, together (``error`` naming the known parts for an unknown one)."""
    parts = named_parts(model, regions)
    wanted = check_part_names(parts, names, error)
    return frozenset().union(*(parts[n] for n in wanted))


def check_part_names(
    known: Iterable[str], names: Iterable[str], error: type[Exception] = ValueError
) -> set[str]:
    """``names`` as a set, each one of the ``known`` parts (``error`` naming them all otherwise)."""
    known, wanted = list(known), set(names)
    unknown = sorted(wanted - set(known))
    if unknown:
        raise error(f"no part named {', '.join(unknown)} in this model; its parts: {', '.join(known)}")
    return wanted


def plan_metadata(precision: str, fp32_parts: Iterable[str]) -> dict[str, str]:
    """The ``precision_plan`` metadata of a model built keeping exactly ``fp32_parts`` FP32 (what
    ``--fp32-parts from:MODEL`` rebuilds it from; a search adds what it measured)."""
    return {
        contract.META_PRECISION_PLAN: json.dumps({"precision": precision, "fp32_parts": sorted(fp32_parts)})
    }


def region_fingerprint(model: onnx.ModelProto, nodes: Iterable[str]) -> str:
    """SHA-256 of the given nodes' names, ops and weights: what calibration ranges depend on.

    Tensor names, metadata, node order and the glue are left out, so both flavors of one export (``ort``
    and ``trt``, whose ROI pooling differs) share a fingerprint while another model, or the same model
    retrained, does not.
    """
    wanted = set(nodes)
    weights = {t.name: t for t in model.graph.initializer}
    h = hashlib.sha256()
    for node in sorted((n for n in model.graph.node if n.name in wanted), key=lambda n: n.name):
        h.update(f"{node.name}|{node.op_type}\n".encode())
        for t in node.input:
            if t in weights:
                h.update(numpy_helper.to_array(weights[t]).tobytes())
    return h.hexdigest()
