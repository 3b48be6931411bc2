"""Where a backend's inference time goes, by operator type, from the backend's own profiler.

``runtime.bench --profile-ops N`` prints each model's top N operator types. That is the view needed to
find what an export does that costs time (a layout change, an op that breaks a fusion, a slow kernel), and
to compare ONNX Runtime and OpenVINO on the same graph.

Each backend's names are its own: ONNX Runtime's optimized kernels (``Conv``, ``QLinearConv``,
``ReorderInput``), OpenVINO's executed nodes (``Convolution``, ``ROIAlign``), PyTorch's aten operators
(self time, so nested calls are not counted twice). Times are wall times per node summed by type and
divided by the number of runs, so they add up to about the network's time per run, whatever the threads.
Profiling runs are separate from the timed ones: the profilers cost time of their own.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.text_table import format_text_table


@dataclass
class OpProfile:
    """Milliseconds per run spent in each operator type, over ``runs`` runs of the network."""

    ms_per_run: dict[str, float] = field(default_factory=dict)
    runs: int = 0

    @property
    def total_ms(self) -> float:
        return float(sum(self.ms_per_run.values()))

    def top(self, n: int) -> list[tuple[str, float]]:
        """The ``n`` most expensive operator types, most expensive first (ties by name, for stable tables)."""
        return sorted(self.ms_per_run.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def _per_run(totals_ms: Mapping[str, float], runs: int) -> OpProfile:
    if runs < 1:
        raise ValueError("profiling needs at least one run")
    return OpProfile({op: t / runs for op, t in totals_ms.items()}, runs)


def onnxruntime_op_profile(
    open_session: Callable[[Any], Any], session_options: Any, feeds: Sequence[Mapping[str, np.ndarray]]
) -> OpProfile:
    """ONNX Runtime's profile of one run per feed: node kernel times by op type.

    ``open_session(so)`` opens the session with the given options (the backend's own, so the profiled
    graph is optimized as the timed one is); profiling is switched on in ``session_options`` here.
    """
    with tempfile.TemporaryDirectory(prefix="mrd-ops-") as tmp:
        session_options.enable_profiling = True
        session_options.profile_file_prefix = os.path.join(tmp, "profile")
        session = open_session(session_options)
        for feed in feeds:
            session.run(None, dict(feed))
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time"):
            totals[str(event.get("args", {}).get("op_name", "?"))] += float(event.get("dur", 0)) / 1e3
    return _per_run(totals, len(feeds))


def openvino_op_profile(request: Any, feeds: Sequence[Mapping[str, np.ndarray]]) -> OpProfile:
    """OpenVINO's per-node counters of one run per feed, by node type, for executed nodes only.

    ``request`` is an infer request of a model compiled with ``PERF_COUNT`` on; its counters describe the
    last run only, so they are read after each.
    """
    totals: dict[str, float] = defaultdict(float)
    for feed in feeds:
        request.infer(dict(feed))
        for info in request.profiling_info:
            if str(info.status).endswith("EXECUTED"):
                totals[str(info.node_type)] += info.real_time.total_seconds() * 1e3
    return _per_run(totals, len(feeds))


def torch_op_profile(runs: Sequence[Callable[[], Any]]) -> OpProfile:
    """torch.profiler's self CPU time per aten operator over one call of each of ``runs``."""
    from torch.profiler import ProfilerActivity, profile

    # the CUDA build's kineto otherwise logs "gpuGetDeviceCount failed" as an ERROR on a machine without a GPU
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for run in runs:
            run()
    totals = {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages() if e.self_cpu_time_total > 0}
    return _per_run(totals, len(runs))


def format_op_profile(name: str, profile: OpProfile, top: int, network_ms: float | None = None) -> str:
    """A table of the ``top`` operator types of one model, with each one's share of the profiled time.

    ``network_ms`` (the timed inference median) is printed beside the profile's own total, so the
    profiler's overhead and any time outside the nodes show.
    """
    total = profile.total_ms
    ranked = profile.top(top)
    rows = [[op, f"{ms:.2f}", f"{100 * ms / total:.1f}" if total > 0 else "-"] for op, ms in ranked]
    rest = total - sum(ms for _, ms in ranked)
    if len(profile.ms_per_run) > top:
        rows.append([f"({len(profile.ms_per_run) - top} other types)", f"{rest:.2f}",
                     f"{100 * rest / total:.1f}" if total > 0 else "-"])  # fmt: skip
    timed = f"; timed inference {network_ms:.1f} ms" if network_ms is not None else ""
    head = f"{name}: {total:.1f} ms per run in the profiled nodes over {profile.runs} run(s){timed}"
    return head + "\n" + format_text_table(["op type", "ms/run", "%"], rows)
