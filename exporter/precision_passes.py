"""Graph passes of the precision steps (FP16, INT8), in the onnx-graphsurgeon style of ``exporter.surgery``.

Each pass edits a ``gs.Graph`` through ``tensor.inputs`` / ``tensor.outputs`` and ``graph.layer`` and reports
what the caller needs (a count, tensor aliases); ``exporter.surgery.edit_in_place`` runs one on a
``ModelProto``. Which nodes a pass touches is decided elsewhere (``calibration.precision_regions``): the
passes only rewrite.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

FLOAT = onnx.TensorProto.FLOAT
FLOAT16 = onnx.TensorProto.FLOAT16
#: inputs that keep their own type whatever the node's precision (shapes, indices, Resize's roi/scales)
DATA_INPUTS_ONLY = {"Reshape": 1, "Resize": 1, "Upsample": 1, "Gather": 1, "Flatten": 1}


# --- FP16 -----------------------------------------------------------------------------------------------


def mixed_fp16(graph: gs.Graph, half: Collection[str], float_tensors: Collection[str]) -> int:
    """Run the nodes named in ``half`` in FP16; returns the number of Casts in the graph afterwards.

    Float weights used only by FP16 nodes become FP16; every other float tensor crossing the FP16/FP32
    border goes through one Cast per direction, so graph inputs, outputs and the glue keep their types.
    ``float_tensors`` names the FP32 tensors (shape inference knows them; graphsurgeon's dtypes may not).
    """
    half_nodes = [n for n in graph.nodes if n.name in half]
    fp16: set[str] = {t.name for n in half_nodes for t in n.outputs if t.name in float_tensors}
    casts: dict[tuple[str, int], gs.Variable] = {}

    def cast(tensor: gs.Tensor, to: int) -> gs.Variable:
        key = (tensor.name, to)
        if key not in casts:
            name = f"{tensor.name}_to_{'fp16' if to == FLOAT16 else 'fp32'}"
            out = gs.Variable(name, dtype=np.float16 if to == FLOAT16 else np.float32)
            graph.layer(op="Cast", name=f"{name}_cast", inputs=[tensor], outputs=[out], attrs={"to": to})
            casts[key] = out
        return casts[key]

    for node in list(graph.nodes):
        if node.name in half:
            limit = DATA_INPUTS_ONLY.get(node.op, len(node.inputs))
            for i, t in enumerate(list(node.inputs[:limit])):
                if t.is_empty() or t.name not in float_tensors or t.name in fp16:
                    continue
                if isinstance(t, gs.Constant) and all(c.name in half for c in t.outputs):
                    t.values = t.values.astype(np.float16)
                    fp16.add(t.name)
                else:
                    node.inputs[i] = cast(t, FLOAT16)
        else:
            for i, t in enumerate(list(node.inputs)):
                if t.name in fp16:
                    node.inputs[i] = cast(t, FLOAT)
    for node in half_nodes:
        for t in node.outputs:
            if t.name in fp16 and t.dtype is not None:
                t.dtype = np.float16
    for i, out in enumerate(list(graph.outputs)):
        if out.name in fp16 and not isinstance(out, gs.Constant):
            graph.outputs[i] = _fp32_graph_output(graph, out)
    graph.toposort()
    return sum(1 for n in graph.nodes if n.op == "Cast" and n.name.endswith("_cast"))


def _fp32_graph_output(graph: gs.Graph, tensor: gs.Variable) -> gs.Variable:
    """A graph output computed in FP16 keeps its name and FP32 type: the FP16 value is renamed and cast."""
    name = tensor.name
    tensor.name, tensor.dtype = f"{name}_fp16", np.float16
    out = gs.Variable(name, dtype=np.float32, shape=tensor.shape)
    graph.layer(op="Cast", name=f"{name}_to_fp32_cast", inputs=[tensor], outputs=[out], attrs={"to": FLOAT})
    return out


# --- INT8 on ONNX Runtime's CPU: 2x2 ConvTranspose as 1x1 convolutions + DepthToSpace -------------------


@dataclass(frozen=True)
class _Upsampling:
    """One 2x2/stride-2 ConvTranspose, with the ReLU and pointwise convolution that alone follow it, if any."""

    deconv: gs.Node
    relu: gs.Node | None
    logits: gs.Node | None


def convtranspose_as_conv(graph: gs.Graph, names: Collection[str]) -> dict[str, str]:
    """Rewrite each named 2x2/stride-2 ConvTranspose as 1x1 convolutions + a pixel shuffle (exact).

    ONNX Runtime's CPU has no quantized ConvTranspose, so the mask predictor's upsampling would run in FP32
    between a DQ and a Q. As a 1x1 convolution to 4x the channels (one group of channels per output
    sub-pixel) followed by DepthToSpace it becomes a QLinearConv. Where a ReLU and a 1x1 convolution follow
    (the mask logits), the shuffle moves after them, the 1x1 convolution applied to each sub-pixel group
    (``group=4``): DepthToSpace then moves num_classes channels instead of 4x256, which ORT's slow
    DepthToSpace otherwise spends a third of the INT8 model's time on. The new nodes take the names of the
    ones they replace (what ``names`` and the quantizer's node lists refer to).
    Returns {new tensor: original tensor holding the same values}, so calibrated ranges carry over.
    """
    outputs = {t.name for t in graph.outputs}
    found = [
        _Upsampling(n, *_relu_then_1x1(n.outputs[0], outputs))
        for n in graph.nodes
        if n.name in names and _is_2x2_upsampling(n)
    ]
    aliases: dict[str, str] = {}
    for up in found:
        aliases.update(_rewrite_upsampling(graph, up))
    if found:
        graph.cleanup().toposort()  # drops the replaced nodes and their weights
    return aliases


def _rewrite_upsampling(graph: gs.Graph, up: _Upsampling) -> dict[str, str]:
    node = up.deconv
    x, w_in, y = node.inputs[0], node.inputs[1], node.outputs[0]
    w = w_in.values  # [C_in, C_out, 2, 2]
    c_in, c_out = w.shape[:2]
    bias = _bias(node)
    # rows (2a + b) * C_out + c: DepthToSpace's DCR order
    conv_w = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(4 * c_out, c_in, 1, 1))
    upsampled = gs.Variable(f"{y.name}_by_subpixel")
    aliases = {upsampled.name: y.name}
    _detach(node)
    _conv(graph, node.name, x, conv_w, None if bias is None else np.tile(bias, 4), upsampled)
    if up.relu is None or up.logits is None:
        _depth_to_space(graph, f"{node.name}_depth_to_space", upsampled, y)
        return aliases
    relu, logits = up.relu, up.logits
    lw, lb, logits_out = logits.inputs[1].values, _bias(logits), logits.outputs[0]  # lw: [K, C_out, 1, 1]
    relu_out = gs.Variable(f"{relu.outputs[0].name}_by_subpixel")
    grouped_out = gs.Variable(f"{logits_out.name}_by_subpixel")
    aliases[relu_out.name] = relu.outputs[0].name
    aliases[grouped_out.name] = logits_out.name
    _detach(relu)
    _detach(logits)
    graph.layer(op="Relu", name=relu.name, inputs=[upsampled], outputs=[relu_out])
    _conv(
        graph, logits.name, relu_out, np.tile(lw, (4, 1, 1, 1)), None if lb is None else np.tile(lb, 4),
        grouped_out, group=4,
    )  # fmt: skip
    _depth_to_space(graph, f"{logits.name}_depth_to_space", grouped_out, logits_out)
    return aliases


def _is_2x2_upsampling(node: gs.Node) -> bool:
    a = node.attrs
    return (
        node.op == "ConvTranspose"
        and list(a.get("kernel_shape", [])) == [2, 2]
        and list(a.get("strides", [])) == [2, 2]
        and not any(a.get("pads", [0, 0, 0, 0]))
        and list(a.get("dilations", [1, 1])) == [1, 1]
        and a.get("group", 1) == 1
        and not a.get("output_padding")
        and not a.get("output_shape")
        and all(isinstance(t, gs.Constant) for t in node.inputs[1:] if not t.is_empty())
    )


def _relu_then_1x1(tensor: gs.Tensor, graph_outputs: set[str]) -> tuple[gs.Node | None, gs.Node | None]:
    """The ReLU and 1x1 convolution that alone consume ``tensor`` in that order, else (None, None)."""
    first = list(tensor.outputs)
    if len(first) != 1 or first[0].op != "Relu" or tensor.name in graph_outputs:
        return None, None
    relu = first[0]
    second = list(relu.outputs[0].outputs)
    if len(second) != 1 or second[0].op != "Conv" or relu.outputs[0].name in graph_outputs:
        return None, None
    conv = second[0]
    a, w = conv.attrs, conv.inputs[1]
    pointwise = (
        isinstance(w, gs.Constant)
        and list(w.shape[2:]) == [1, 1]
        and a.get("group", 1) == 1
        and list(a.get("strides", [1, 1])) == [1, 1]
        and not any(a.get("pads", [0, 0, 0, 0]))
        and all(isinstance(t, gs.Constant) for t in conv.inputs[1:] if not t.is_empty())
    )
    return (relu, conv) if pointwise else (None, None)


def _bias(node: gs.Node) -> np.ndarray | None:
    return node.inputs[2].values if len(node.inputs) > 2 and not node.inputs[2].is_empty() else None


def _detach(node: gs.Node) -> None:
    """Disconnect a replaced node so ``cleanup`` removes it (its output tensors get new producers)."""
    node.inputs.clear()
    node.outputs.clear()


def _conv(
    graph: gs.Graph,
    name: str,
    x: gs.Tensor,
    weight: np.ndarray,
    bias: np.ndarray | None,
    output: gs.Variable,
    group: int = 1,
) -> None:
    inputs = [x, gs.Constant(f"{name}_subpixel_weight", weight.astype(np.float32))]
    if bias is not None:
        inputs.append(gs.Constant(f"{name}_subpixel_bias", bias.astype(np.float32)))
    graph.layer(
        op="Conv", name=name, inputs=inputs, outputs=[output], attrs={"kernel_shape": [1, 1], "group": group}
    )


def _depth_to_space(graph: gs.Graph, name: str, x: gs.Tensor, output: gs.Tensor) -> None:
    graph.layer(
        op="DepthToSpace", name=name, inputs=[x], outputs=[output], attrs={"blocksize": 2, "mode": "DCR"}
    )
