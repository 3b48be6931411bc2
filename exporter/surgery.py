"""Graph surgery on the traced ONNX model, as small named passes (onnx-graphsurgeon style).

Each pass does one thing and returns the graph, so ``clean_graph`` reads as the list of what happens to
every exported model, and a pass can be tested or skipped alone. The ``trt`` flavor's plugin nodes are
written at trace time (``exporter.plugin_nodes``), so the passes here also check that the nodes TensorRT
will parse carry exactly the spec's attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import onnx
import onnx_graphsurgeon as gs

from runtime import onnx_contract as contract
from runtime.atomic_files import write_atomic
from runtime.plugins.spec import DOMAIN, NMS_FIELDS, NMS_OP, ROI_ALIGN_FIELDS, ROI_ALIGN_OP

GraphPass = Callable[[gs.Graph], gs.Graph]
T = TypeVar("T")


def remove_initializer_inputs(graph: gs.Graph) -> gs.Graph:
    """Drop initializers listed as graph inputs: they make every runtime treat weights as overridable inputs."""
    graph.inputs = [t for t in graph.inputs if not isinstance(t, gs.Constant)]
    return graph


def fold_constants(graph: gs.Graph) -> gs.Graph:
    """Evaluate every subgraph whose inputs are constants (and shape arithmetic on static dims)."""
    import onnxruntime as ort

    # onnx-graphsurgeon folds through ONNX Runtime, whose optimizer logs harmless notes on partial graphs
    ort.set_default_logger_severity(3)
    try:
        return graph.fold_constants(error_ok=False)
    finally:
        ort.set_default_logger_severity(2)


def cleanup_and_toposort(graph: gs.Graph) -> gs.Graph:
    """Remove nodes and tensors nothing consumes, then order nodes topologically."""
    return graph.cleanup(remove_unused_graph_inputs=False).toposort()


def name_plugin_nodes(graph: gs.Graph) -> gs.Graph:
    """Readable, stable names for plugin nodes (``box_nms``, not ``/MRD_BatchedNms_1``) for TensorRT logs."""
    counts: dict[str, int] = {}
    for node in graph.nodes:
        if node.op in (ROI_ALIGN_OP, NMS_OP):
            i = counts.get(node.op, 0)
            counts[node.op] = i + 1
            node.name = f"{node.op}_{i}"
    return graph


def check_plugin_nodes(graph: gs.Graph) -> gs.Graph:
    """Every plugin node is in the spec's domain with exactly the spec's attributes (the plugins read them all)."""
    expected = {ROI_ALIGN_OP: set(ROI_ALIGN_FIELDS), NMS_OP: set(NMS_FIELDS)}
    for node in graph.nodes:
        if node.op in expected:
            if node.domain != DOMAIN:
                raise ValueError(f"plugin node {node.name} is in domain {node.domain!r}, not {DOMAIN!r}")
            if set(node.attrs) != expected[node.op]:
                raise ValueError(
                    f"plugin node {node.name} has attributes {sorted(node.attrs)}, the spec "
                    f"(runtime/plugins/spec.py) lists {sorted(expected[node.op])}"
                )
    return graph


DEFAULT_PASSES: tuple[GraphPass, ...] = (
    remove_initializer_inputs,
    fold_constants,
    cleanup_and_toposort,
    name_plugin_nodes,
    check_plugin_nodes,
)


def clean_graph(model: onnx.ModelProto, passes: Sequence[GraphPass] = DEFAULT_PASSES) -> onnx.ModelProto:
    """Run ``passes`` in order; metadata, opset imports and the producer survive the round trip."""
    graph = gs.import_onnx(model)
    for graph_pass in passes:
        graph = graph_pass(graph)
    return export_like(graph, model)


def export_like(graph: gs.Graph, model: onnx.ModelProto) -> onnx.ModelProto:
    """``graph`` as a model with ``model``'s IR version, opset imports, producer and metadata.

    onnx-graphsurgeon writes its own IR version and producer and drops ``metadata_props``; the contract
    lives in the metadata, so every round trip through a ``gs.Graph`` goes through here.
    """
    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version
    del out.opset_import[:]
    out.opset_import.extend(model.opset_import)
    out.producer_name, out.producer_version = model.producer_name, model.producer_version
    copy_metadata(model, out)
    return out


def edit_in_place(model: onnx.ModelProto, edit: Callable[[gs.Graph], T]) -> T:
    """Run ``edit`` (a pass that also reports something) on ``model``'s graph and write the graph back.

    For callers whose API edits a ``ModelProto`` in place; returns what ``edit`` returns.
    """
    graph = gs.import_onnx(model)
    result = edit(graph)
    model.CopyFrom(export_like(graph, model))
    return result


def copy_metadata(
    src: onnx.ModelProto, dst: onnx.ModelProto, updates: Mapping[str, str] | None = None
) -> None:
    """``dst``'s metadata becomes ``src``'s plus ``updates``: the one way a rewritten model keeps its contract."""
    contract.set_metadata_props(dst, {**contract.metadata_props(src), **(updates or {})})


def save_onnx_atomic(model: onnx.ModelProto, output: Path) -> None:
    """Write ``model`` to ``output`` through a temporary file in the same folder, then rename it.

    An interrupted export never leaves half a model where a later build or run would trust it.
    """
    write_atomic(output, lambda tmp: onnx.save(model, str(tmp)))


def initializer_inputs(model: onnx.ModelProto) -> list[str]:
    """Names of initializers that are also graph inputs (should be none after surgery)."""
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name in inits]
