"""ONNX Runtime backend: the deployable CPU path, and CUDA / TensorRT execution providers where present.

Model facts (classes, pre-processing, mask size, static shapes) come from the file's metadata through
``runtime.onnx_contract``, so an exported model runs with nothing but the .onnx file. A `trt`-flavor
graph (plugin nodes) runs through the plugins' CPU reference ops (``runtime.plugins.ort_reference``): the exact
graph TensorRT will parse is checked on machines without a GPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnxruntime as ort

from runtime import onnx_contract as contract
from runtime.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    contract_feeds,
    declared_static_shape,
    first_line,
)
from runtime.onnx_contract import ModelInfo
from runtime.op_profile import OpProfile, onnxruntime_op_profile
from runtime.plugins.spec import NMS_OP, ROI_ALIGN_OP
from runtime.preprocess import PreprocessedBatch
from runtime.structures import RawDetections

log = logging.getLogger(__name__)

GRAPH_OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

#: device name -> execution providers, best first (ONNX Runtime falls back along the list per node)
DEVICE_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def open_session(
    model_path: Path, so: ort.SessionOptions, providers: Sequence[Any], reference_ops: bool | None = None
) -> tuple[ort.InferenceSession, bool]:
    """A session of ``model_path``: plain, or with the plugin ops' reference when the graph needs it (or
    ``reference_ops`` forces it); the bool says which.

    Trying the plain session first costs nothing on failure (ONNX Runtime rejects an unknown op while
    resolving the graph, before optimizing it) and spares parsing the file with the onnx package.
    """
    if not reference_ops:
        try:
            return ort.InferenceSession(str(model_path), so, providers=providers), False
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/... types
            message = str(e)
            if reference_ops is False or not (ROI_ALIGN_OP in message or NMS_OP in message):
                raise BackendError(
                    f"{model_path}: ONNX Runtime cannot load it: {first_line(message)}"
                ) from None
    try:
        from runtime.plugins.ort_reference import reference_session
    except ImportError as e:
        raise BackendUnavailable(
            f"{model_path} has TensorRT plugin nodes; running them here needs {e}"
        ) from None
    log.info("%s has plugin nodes: running them through the CPU reference ops", model_path.name)
    try:
        return reference_session(model_path, so, providers), True
    except ImportError as e:
        raise BackendUnavailable(
            f"{model_path} has TensorRT plugin nodes (`trt` flavor); running them on ONNX Runtime "
            f"needs onnx and onnxruntime-extensions ({e}); or run the `ort` flavor"
        ) from None
    except Exception as e:
        raise BackendError(f"{model_path}: ONNX Runtime cannot load it with the reference ops: "
                           f"{first_line(str(e))}") from None  # fmt: skip


def providers_for(device: str, providers: Sequence[str] | None = None) -> list[Any]:
    """Execution providers for a device ("cpu", "cuda[:N]", "tensorrt[:N]") or an explicit list.

    A requested provider this onnxruntime build lacks is an error, not a silent CPU fallback: a user
    benchmarking "cuda" must not get CPU numbers.
    """
    available = ort.get_available_providers()
    if providers:
        chosen: list[Any] = list(providers)
        names = [p if isinstance(p, str) else p[0] for p in chosen]
    else:
        kind, _, index = device.partition(":")
        if kind not in DEVICE_PROVIDERS:
            raise ValueError(f"unknown device {device!r} for onnxruntime; use cpu, cuda[:N] or tensorrt[:N]")
        names = DEVICE_PROVIDERS[kind]
        opts = {"device_id": int(index)} if index else {}
        chosen = [(n, opts) if opts and n != "CPUExecutionProvider" else n for n in names]
    missing = [n for n in names if n not in available]
    if missing:
        raise BackendUnavailable(
            f"ONNX Runtime execution provider(s) {', '.join(missing)} not available in this onnxruntime "
            f"build (available: {', '.join(available)}); install onnxruntime-gpu for CUDA/TensorRT, or use "
            f"--device cpu"
        )
    return chosen


class OnnxRuntimeBackend(Backend):
    """An exported .onnx file under ONNX Runtime.

    ``threads`` sets intra-op threads (inter-op stays 1: the graph is one chain); ``graph_optimization``
    is one of disable/basic/extended/all. ``reference_ops`` forces (True) or forbids (False) the CPU
    reference of the plugin ops; by default they are used when the graph has plugin nodes.
    """

    name = "onnxruntime"
    OPTIONS = ("threads", "graph_optimization", "providers", "reference_ops")

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        device: str = "cpu",
        threads: int | None = None,
        graph_optimization: str = "all",
        providers: Sequence[str] | None = None,
        reference_ops: bool | None = None,
    ) -> None:
        super().__init__(model_path, device)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.model_path}")
        if graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
            raise ValueError(
                f"unknown graph optimization level {graph_optimization!r}; use one of "
                f"{', '.join(GRAPH_OPTIMIZATION_LEVELS)}"
            )
        self._providers = providers_for(device, providers)
        self.threads = threads
        self.graph_optimization = graph_optimization
        self.session, self.uses_reference_ops = self._create_session(reference_ops)
        try:
            meta = contract.read_metadata(self.session)
        except contract.ContractError as e:
            raise BackendError(
                str(e).replace("the ONNX Runtime session's model", str(self.model_path))
            ) from None
        self._output_names = [o.name for o in self.session.get_outputs()]
        missing = [n for n in contract.DETECTION_OUTPUTS if n not in self._output_names]
        if missing:
            raise BackendError(
                f"{self.model_path}: outputs {self._output_names} lack {missing}; not a model of the ONNX contract"
            )
        static, batch = self._static_shape(meta)
        self._info = replace(meta, static_input_size=static, batch=batch, max_batch=batch)
        if self._providers[0] == "CPUExecutionProvider":
            self.warn_if_inexact_here()

    def _session_options(self) -> ort.SessionOptions:
        so = ort.SessionOptions()
        so.graph_optimization_level = GRAPH_OPTIMIZATION_LEVELS[self.graph_optimization]
        if self.threads is not None:
            so.intra_op_num_threads = int(self.threads)
            so.inter_op_num_threads = 1
        so.log_severity_level = 3  # errors only: warnings are about the providers we chose on purpose
        # Idle intra-op threads otherwise spin for a while after every run, on the cores the host-side
        # post-processing (mask pasting) and the next pre-processing need: measured on R-50-FPN, 2 threads,
        # 100 detections, that spinning made the pasting 2.6x slower (244 ms against 93 ms).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return so

    def _create_session(self, reference_ops: bool | None) -> tuple[ort.InferenceSession, bool]:
        return open_session(self.model_path, self._session_options(), self._providers, reference_ops)

    def _static_shape(self, meta: ModelInfo) -> tuple[tuple[int, int] | None, int | None]:
        shape = next(i.shape for i in self.session.get_inputs() if i.name == contract.INPUT_IMAGES)
        return declared_static_shape(meta, [d if isinstance(d, int) else None for d in shape])

    @property
    def info(self) -> ModelInfo:
        return self._info

    def infer(self, batch: PreprocessedBatch) -> list[RawDetections]:
        n = len(batch)
        feeds = contract_feeds(batch, self._info, self.model_path)
        outputs = self.session.run(self._output_names, feeds)
        return contract.outputs_to_raw(dict(zip(self._output_names, outputs)), self.info.output_convention)[
            :n
        ]

    def count_flops(self, batches: Sequence[PreprocessedBatch]) -> list[float] | None:
        from runtime.compute_floor import onnx_flops

        feeds = [contract_feeds(b, self._info, self.model_path) for b in batches]
        return onnx_flops(self.model_path, feeds, self.threads)

    def profile_ops(self, batches: Sequence[PreprocessedBatch]) -> OpProfile:
        def session(so: ort.SessionOptions) -> ort.InferenceSession:
            return open_session(self.model_path, so, self._providers, self.uses_reference_ops)[0]

        feeds = [contract_feeds(b, self._info, self.model_path) for b in batches]
        return onnxruntime_op_profile(session, self._session_options(), feeds)

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["versions"] = {"onnxruntime": ort.__version__}
        d["providers"] = self.session.get_providers() if self.session is not None else []
        d["threads"] = self.threads
        d["graph_optimization"] = self.graph_optimization
        d["flavor"] = self._info.flavor
        d["reference_ops"] = self.uses_reference_ops
        return d
