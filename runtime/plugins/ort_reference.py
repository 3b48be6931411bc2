"""Run `trt`-flavor ONNX graphs (with ``MRD_MultiLevelRoiAlign`` / ``MRD_BatchedNms`` nodes) on ONNX Runtime's CPU.

The nodes are computed by the plugins' CPU reference (:mod:`runtime.plugins.reference`), registered as
onnxruntime-extensions Python custom ops. Those have three limits that the ops' spec does not fit, so a graph
goes through :func:`with_reference_ops` first, which changes nothing of the computation:

- a Python op has a fixed number of inputs, and ``MRD_MultiLevelRoiAlign`` has one per FPN level: the node
  becomes ``MRD_MultiLevelRoiAlign_Ref<L>``, one registered op per level count L (1 to 8);
- a Python op cannot read list attributes: ``spatial_scales`` is passed on as a comma-separated string;
- a Python op cannot take float16 tensors: a float16 node is wrapped in Casts to float32 and back (the
  reference computes in float32 anyway, like the kernels' float32 accumulation).

Typical use (what the ONNX Runtime backend does for a `trt` graph)::

    sess = reference_session("model_trt.onnx")

or, step by step, ``ort.InferenceSession(with_reference_ops(model).SerializeToString(),
session_options_with_reference_ops())``. onnx and onnxruntime-extensions are imported only when used.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.plugins.abi import MAX_LEVELS
from runtime.plugins.library import PluginCallError
from runtime.plugins.reference import (
    batched_nms_reference,
    check_nms_attrs,
    check_roi_align_attrs,
    multilevel_roi_align_reference,
)
from runtime.plugins.spec import DOMAIN, NMS_OP, ROI_ALIGN_OP, BatchedNmsAttrs, MultiLevelRoiAlignAttrs

if TYPE_CHECKING:
    import onnx
    import onnxruntime

#: op types of the registered Python ops that stand in for the spec's ops
REFERENCE_NMS_OP = f"{NMS_OP}_Ref"


def reference_roi_align_op(num_levels: int) -> str:
    return f"{ROI_ALIGN_OP}_Ref{num_levels}"


_registered = False
_register_lock = threading.Lock()


def _roi_align_attrs(attrs: dict[str, Any]) -> MultiLevelRoiAlignAttrs:
    scales = tuple(float(s) for s in str(attrs.pop("spatial_scales")).split(","))
    return MultiLevelRoiAlignAttrs(spatial_scales=scales, **{k: int(v) for k, v in attrs.items()})


def _run_roi_align(rois: np.ndarray, *features: np.ndarray, **attrs: Any) -> np.ndarray:
    return multilevel_roi_align_reference(rois, features, _roi_align_attrs(dict(attrs)))


def _run_nms(boxes: np.ndarray, scores: np.ndarray, **attrs: Any) -> tuple[np.ndarray, ...]:
    typed = {f.name: f.type for f in fields(BatchedNmsAttrs)}
    values: dict[str, Any] = {
        k: (float(v) if typed[k] in ("float", float) else int(v)) for k, v in attrs.items()
    }
    return tuple(batched_nms_reference(boxes, scores, BatchedNmsAttrs(**values)))


def register_reference_ops() -> None:
    """Declare the Python ops to onnxruntime-extensions (once per process; they are global there)."""
    global _registered
    with _register_lock:
        if _registered:
            return
        try:
            from onnxruntime_extensions import PyCustomOpDef, onnx_op
        except ImportError as e:
            raise ImportError(
                "running `trt`-flavor ONNX graphs on ONNX Runtime needs onnxruntime-extensions: "
                "pip install onnxruntime-extensions"
            ) from e
        f32, i32, i64 = PyCustomOpDef.dt_float, PyCustomOpDef.dt_int32, PyCustomOpDef.dt_int64
        roi_attrs = {name: i64 for name in MultiLevelRoiAlignAttrs().as_dict()}
        roi_attrs["spatial_scales"] = PyCustomOpDef.dt_string
        for levels in range(1, MAX_LEVELS + 1):
            onnx_op(
                op_type=reference_roi_align_op(levels),
                inputs=[f32] * (levels + 1),
                outputs=[f32],
                attrs=roi_attrs,
            )(_run_roi_align)
        nms_attrs = {
            f.name: (PyCustomOpDef.dt_float if f.type in ("float", float) else i64)
            for f in fields(BatchedNmsAttrs)
        }
        onnx_op(
            op_type=REFERENCE_NMS_OP, inputs=[f32, f32], outputs=[i32, f32, f32, i32, i32], attrs=nms_attrs
        )(_run_nms)
        _registered = True


def session_options_with_reference_ops(
    so: onnxruntime.SessionOptions | None = None,
) -> onnxruntime.SessionOptions:
    """Session options that can run graphs rewritten by :func:`with_reference_ops`."""
    import onnxruntime as ort
    from onnxruntime_extensions import get_library_path

    register_reference_ops()
    so = so if so is not None else ort.SessionOptions()
    so.register_custom_ops_library(get_library_path())
    return so


# ---------------------------------------------------------------------------------------------------------------
# graph rewrite


def _load(model: onnx.ModelProto | str | Path | bytes) -> onnx.ModelProto:
    import onnx

    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    if isinstance(model, bytes):
        return onnx.load_from_string(model)
    return onnx.load(str(model))


def has_plugin_ops(model: onnx.ModelProto) -> bool:
    return any(n.op_type in (ROI_ALIGN_OP, NMS_OP) for n in model.graph.node)


def _known_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor whose type ONNX shape inference can tell."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # custom ops in odd places: fall back to what the file declares
        inferred = model
    g = inferred.graph
    types = {t.name: t.data_type for t in g.initializer}
    for vi in [*g.input, *g.value_info, *g.output]:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    return types


def _node_attrs(node: onnx.NodeProto, defaults: dict[str, Any]) -> dict[str, Any]:
    from onnx import helper

    values = dict(defaults)
    for a in node.attribute:
        if a.name not in defaults:
            raise ValueError(
                f"node {node.name!r} ({node.op_type}) has unknown attribute {a.name!r}; "
                f"the spec (runtime/plugins/spec.py) knows {sorted(defaults)}"
            )
        v = helper.get_attribute_value(a)
        values[a.name] = [float(x) for x in v] if isinstance(v, list | tuple) else v
    return values


def _checked(node: onnx.NodeProto, check: Any, attrs: Any) -> None:
    """A plugin node the library would refuse is a ValueError at load time, naming the node: inside ONNX
    Runtime's Python op the same error would abort the process at the first run."""
    try:
        check(attrs)
    except (PluginCallError, ValueError) as e:
        raise ValueError(f"node {node.name!r} ({node.op_type}): {e}") from None


def with_reference_ops(model: onnx.ModelProto | str | Path | bytes) -> onnx.ModelProto:
    """A copy of ``model`` whose plugin nodes run on ONNX Runtime through the CPU reference.

    The other nodes, the graph's inputs and outputs and every tensor name stay as they are.
    """
    from onnx import TensorProto, helper

    m = _load(model)
    types = _known_types(m)
    counter = 0

    def cast(name: str, to: int) -> tuple[onnx.NodeProto, str]:
        nonlocal counter
        counter += 1
        out = f"{name}__mrd_ref_cast{counter}"
        return helper.make_node("Cast", [name], [out], to=to, name=f"mrd_ref_cast{counter}"), out

    nodes: list[onnx.NodeProto] = []
    for node in m.graph.node:
        if node.op_type == ROI_ALIGN_OP:
            levels = len(node.input) - 1
            if not 1 <= levels <= MAX_LEVELS:
                raise ValueError(
                    f"{node.name!r}: {ROI_ALIGN_OP} needs rois and 1 to {MAX_LEVELS} feature maps"
                )
            attrs = _node_attrs(node, MultiLevelRoiAlignAttrs().as_dict())
            scales = attrs.pop("spatial_scales")
            if len(scales) != levels:
                raise ValueError(
                    f"{node.name!r}: {levels} feature inputs but spatial_scales has {len(scales)} entries"
                )
            _checked(
                node, check_roi_align_attrs, MultiLevelRoiAlignAttrs(spatial_scales=tuple(scales), **attrs)
            )
            attrs["spatial_scales"] = ",".join(repr(float(s)) for s in scales)
            float_inputs, float_outputs = list(range(levels + 1)), [0]
            out_types = [types.get(node.input[1], TensorProto.FLOAT)]
            op_type = reference_roi_align_op(levels)
        elif node.op_type == NMS_OP:
            attrs = _node_attrs(node, BatchedNmsAttrs().as_dict())
            _checked(node, check_nms_attrs, BatchedNmsAttrs(**attrs))
            dtype = types.get(node.input[1], TensorProto.FLOAT)
            float_inputs, float_outputs = [0, 1], [1, 2]
            out_types = [TensorProto.INT32, dtype, dtype, TensorProto.INT32, TensorProto.INT32]
            op_type = REFERENCE_NMS_OP
        else:
            nodes.append(node)
            continue
        inputs = list(node.input)
        for i in float_inputs:
            if types.get(inputs[i], TensorProto.FLOAT) != TensorProto.FLOAT:
                cast_node, inputs[i] = cast(inputs[i], TensorProto.FLOAT)
                nodes.append(cast_node)
        outputs = list(node.output)
        after: list[onnx.NodeProto] = []
        for i in float_outputs:
            if out_types[i] != TensorProto.FLOAT:
                tmp = f"{outputs[i]}__mrd_ref_f32"
                after.append(
                    helper.make_node("Cast", [tmp], [outputs[i]], to=out_types[i], name=f"{tmp}_cast")
                )
                outputs[i] = tmp
        nodes.append(helper.make_node(op_type, inputs, outputs, name=node.name, domain=DOMAIN, **attrs))
        nodes.extend(after)
        types.update(zip(node.output, out_types))
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    if not any(op.domain == DOMAIN for op in m.opset_import):
        m.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return m


def reference_session(
    model: onnx.ModelProto | str | Path | bytes,
    so: onnxruntime.SessionOptions | None = None,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session of a `trt`-flavor graph (any graph works; others pass through unchanged)."""
    import onnxruntime as ort

    rewritten = with_reference_ops(model)
    return ort.InferenceSession(
        rewritten.SerializeToString(), session_options_with_reference_ops(so), providers=list(providers)
    )
