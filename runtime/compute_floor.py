"""How close a CPU backend runs to the machine's limit: the network's FLOPs over a measured matmul rate.

A latency alone says nothing about how much is left to gain; the ratio to a floor does. The floor of one
batch is the FLOPs its network actually executed (convolutions, matrix products; multiply-adds counted
twice, data-dependent heads counted for the detections this batch really had) divided by the best
float32 matrix-product rate measured on this machine, with the same threads, in the same run. It is a
measured rate, not the silicon's peak: INT8 (faster integer products) and convolution kernels that beat the
library products show as a ratio below 1.

FLOPs come from the model's own graph: an ONNX file is run once under ONNX Runtime without graph
optimizations and with its profiler on, whose per-node input and output shapes give each Conv, ConvTranspose,
MatMul and Gemm exactly (the weights' shapes, which the profile leaves out where a kernel pre-packed them,
come from the graph itself, read with the ``onnx`` package); a PyTorch model is counted by
``torch.utils.flop_counter``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any

import numpy as np

#: a single MatMul with symbolic sizes, written by scripts/make_matmul_probe.py (the runtime has no onnx)
MATMUL_PROBE = Path(__file__).resolve().parent / "data" / "matmul_probe.onnx"
#: the square products timed (the best counts): large enough that every library runs its best kernel; two
#: sizes because a library's blocking can fall badly on one of them (0.1-0.3 s each at 300 GFLOP/s)
MATMUL_SIZES = (2048, 3072)


@dataclass
class MatmulRate:
    """The best float32 GFLOP/s of a square matrix product, per library that could be timed here.

    A measured rate, not the silicon's peak: a backend whose convolutions beat the library products shows
    a ratio below 1, and machines whose speed drifts (shared cores) move it by several percent.
    """

    threads: int | None
    sizes: tuple[int, ...]
    by_library: dict[str, float] = field(default_factory=dict)

    @property
    def gflops(self) -> float:
        return max(self.by_library.values())

    @property
    def best_library(self) -> str:
        return max(self.by_library, key=self.by_library.__getitem__)

    def floor_seconds(self, flops: float) -> float:
        return flops / (self.gflops * 1e9)

    def describe(self) -> str:
        rates = ", ".join(f"{k} {v:.1f}" for k, v in sorted(self.by_library.items()))
        sizes = "/".join(str(n) for n in self.sizes)
        return (f"float32 matmul {sizes} square, {self.threads or 'default'} threads: {rates} GFLOP/s (best); "
                f"the floor uses {self.gflops:.1f} ({self.best_library})")  # fmt: skip


def measure_matmul_rate(
    threads: int | None, sizes: Sequence[int] = MATMUL_SIZES, repeats: int = 7
) -> MatmulRate:
    """Time square float32 products of each of ``sizes`` with ONNX Runtime (MLAS) and, where present,
    OpenVINO (oneDNN) and PyTorch; the best of ``repeats`` runs. The machine's rate is the fastest of all."""
    rng = np.random.default_rng(0)
    rate = MatmulRate(threads, tuple(int(n) for n in sizes))
    for size in rate.sizes:
        a = rng.standard_normal((size, size), dtype=np.float32)
        b = rng.standard_normal((size, size), dtype=np.float32)
        runs = {"onnxruntime": _ort_matmul(a, b, threads), "openvino": _openvino_matmul(a, b, threads)}
        if "torch" in sys.modules:  # only where a PyTorch model already brought it: the runtime stays light
            runs["torch"] = _torch_matmul(a, b, threads)
        for library, run in runs.items():
            if run is not None:
                gflops = 2.0 * size**3 / _best_time(run, repeats) / 1e9
                rate.by_library[library] = max(rate.by_library.get(library, 0.0), gflops)
    return rate


def _best_time(run: Any, repeats: int) -> float:
    run()  # warm-up: thread pool start, packing buffers
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def _ort_matmul(a: np.ndarray, b: np.ndarray, threads: int | None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    session = ort.InferenceSession(str(MATMUL_PROBE), so, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"a": a, "b": b})


def _openvino_matmul(a: np.ndarray, b: np.ndarray, threads: int | None) -> Any:
    try:
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        return None
    pa = ops.parameter(list(a.shape), np.float32, name="a")
    pb = ops.parameter(list(b.shape), np.float32, name="b")
    model = ov.Model([ops.matmul(pa, pb, False, False)], [pa, pb], "matmul_probe")
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
    return lambda: request.infer({0: a, 1: b})


def _torch_matmul(a: np.ndarray, b: np.ndarray, threads: int | None) -> Any:
    import torch

    ta, tb = torch.from_numpy(a), torch.from_numpy(b)

    def run() -> None:
        saved = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(int(threads))
        try:
            with torch.inference_mode():
                torch.mm(ta, tb)
        finally:
            torch.set_num_threads(saved)

    return run


# ---------------------------------------------------------------------------------------------------------
# FLOPs of an ONNX graph, from ONNX Runtime's profile of its runs


def onnx_flops(
    model_path: str | os.PathLike[str], feeds: Sequence[Mapping[str, np.ndarray]], threads: int | None = None
) -> list[float]:
    """FLOPs of one run of an exported model on each of ``feeds`` (one profiling session for all), from the
    shapes ONNX Runtime's profiler recorded.

    Optimizations are off, so the profile lists the graph's own nodes (no fused or re-laid-out kernels with
    other weight shapes). A ``trt``-flavor graph runs with the plugin ops' CPU reference, whose ROIAlign and
    NMS are not counted (neither is ONNX Runtime's RoiAlign in the ``ort`` flavor: gathers, not products).
    Needs the ``onnx`` package for the weights' shapes (ImportError without it).
    """
    import onnxruntime as ort

    from runtime.backends.onnxruntime_backend import open_session

    runs = list(feeds)
    weights = initializer_shapes(model_path)
    with tempfile.TemporaryDirectory(prefix="mrd-flops-") as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "profile")
        so.log_severity_level = 3
        if threads is not None:
            so.intra_op_num_threads = int(threads)
        session, _ = open_session(Path(model_path), so, ["CPUExecutionProvider"])
        for run in runs:
            session.run(None, dict(run))
        events = json.loads(Path(session.end_profiling()).read_text())
    counts: list[float] = []
    total = 0.0
    for event in events:  # each run's node events come before its "model_run" event
        if _is_node_run(event):
            args = event["args"]
            num_inputs, initializers = weights.get(int(args.get("node_index", -1)), (0, {}))
            total += node_flops(args, initializers, num_inputs)
        elif event.get("cat") == "Session" and event.get("name") == "model_run":
            counts.append(total)
            total = 0.0
    if len(counts) != len(runs):
        raise RuntimeError(f"ONNX Runtime's profile holds {len(counts)} runs for {len(runs)} feeds")
    return counts


def initializer_shapes(model_path: str | os.PathLike[str]) -> dict[int, tuple[int, dict[int, list[int]]]]:
    """For each node of the main graph (by index, as ONNX Runtime numbers an unoptimized graph): its number
    of inputs and the shapes of those that are initializers, by input position."""
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "counting an ONNX model's FLOPs needs the onnx package (pip install onnx)"
        ) from None
    graph = onnx.load(str(model_path), load_external_data=False).graph
    dims = {t.name: [int(d) for d in t.dims] for t in graph.initializer}
    return {
        i: (len(node.input), {j: dims[name] for j, name in enumerate(node.input) if name in dims})
        for i, node in enumerate(graph.node)
    }


def _is_node_run(event: Mapping[str, Any]) -> bool:
    return event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time")


def node_flops(
    args: Mapping[str, Any], weights: Mapping[int, list[int]] | None = None, num_inputs: int = 0
) -> float:
    """FLOPs of one profiled node (0 for anything but convolutions and matrix products).

    ``weights``: shapes of the node's initializer inputs by position, of its ``num_inputs``
    (``initializer_shapes``). Where a kernel pre-packed a weight the profile lists only the other inputs,
    in order, and they fill the remaining positions.
    """
    op = str(args.get("op_name", ""))
    profiled = [_shape(s) for s in args.get("input_type_shape", [])]
    inputs = profiled if len(profiled) >= num_inputs else _merged_inputs(profiled, weights or {}, num_inputs)
    outputs = [_shape(s) for s in args.get("output_type_shape", [])]
    if len(inputs) < 2 or inputs[0] is None or not outputs or outputs[0] is None:
        return 0.0
    x, w, out = inputs[0], inputs[1], outputs[0]
    if op in ("Conv", "FusedConv") and w is not None:  # w [Cout, Cin/groups, kh, kw]
        return 2.0 * prod(out) * prod(w[1:])
    if op == "ConvTranspose" and w is not None:  # x [N, Cin, H, W], w [Cin, Cout/groups, kh, kw]
        return 2.0 * prod(x) * prod(w[1:])
    if op in ("MatMul", "FusedMatMul") and x:
        return 2.0 * prod(out) * x[-1]
    if op in ("Gemm", "FusedGemm") and out:
        return 2.0 * prod(out) * (prod(x) / max(out[0], 1))  # A is M x K (or K x M): K = |A| / M
    return 0.0


def _merged_inputs(
    profiled: list[list[int] | None], weights: Mapping[int, list[int]], num_inputs: int
) -> list[list[int] | None]:
    """Input shapes by position: initializers from the graph, the rest from the profile in order."""
    rest = iter(profiled)
    return [list(weights[i]) if i in weights else next(rest, None) for i in range(num_inputs)]


def _shape(entry: Any) -> list[int] | None:
    """``{"float": [1, 3, 800, 1216]}`` -> the list; None for anything else."""
    if isinstance(entry, Mapping) and len(entry) == 1:
        value = next(iter(entry.values()))
        if isinstance(value, Sequence) and all(isinstance(v, int) for v in value):
            return [int(v) for v in value]
    return None


def torch_flops(run: Any) -> float:
    """FLOPs of ``run()`` (a PyTorch forward), counted by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return float(counter.get_total_flops())
