"""OpenVINO backend: the fastest CPU path measured here, for ``.onnx`` files and OpenVINO IR (``.xml``).

OpenVINO reads the exported ``ort``-flavor ONNX unchanged, and its own IR (``exporter --to openvino``) with
the contract's metadata in ``rt_info`` (``runtime.openvino_ir``), so both give the same :class:`ModelInfo`
as under ONNX Runtime and share its pre- and post-processing.

``inference_precision`` defaults to f32 for every file: OpenVINO's CPU plugin otherwise picks bf16 by
itself on CPUs with AMX, and an FP32 export must run in FP32 to be compared with PyTorch. An FP16 IR
(FP16 weights) is then decompressed to f32; an INT8 IR runs its quantized convolutions in INT8 whatever
the hint. Pass ``inference_precision="bf16"`` (or ``"f16"``) to trade accuracy for speed knowingly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from runtime import onnx_contract as contract
from runtime.atomic_files import finish_interrupted
from runtime.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    contract_feeds,
    declared_static_shape,
    first_line,
)
from runtime.onnx_contract import ModelInfo
from runtime.op_profile import OpProfile, openvino_op_profile
from runtime.openvino_ir import IR_EXTENSIONS, bin_path, import_openvino, ir_metadata
from runtime.plugins.spec import NMS_OP, ROI_ALIGN_OP
from runtime.preprocess import PreprocessedBatch
from runtime.structures import RawDetections

log = logging.getLogger(__name__)

#: --device names -> OpenVINO device names
DEVICES = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU", "auto": "AUTO"}
#: performance hints (OpenVINO's PERFORMANCE_HINT): latency for one request at a time, throughput for many
HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT", "cumulative_throughput": "CUMULATIVE_THROUGHPUT"}
INFERENCE_PRECISIONS = ("f32", "bf16", "f16")


class OpenVinoBackend(Backend):
    """An ``ort``-flavor ``.onnx`` file or an OpenVINO IR ``.xml`` under OpenVINO.

    ``threads`` is OpenVINO's INFERENCE_NUM_THREADS, ``hint`` its PERFORMANCE_HINT (latency by default:
    one image at a time is what the Predictor does), ``inference_precision`` its INFERENCE_PRECISION_HINT.
    Dynamic models are compiled with dynamic shapes (one compiled model for every input size); static ones
    keep their fixed canvas and batch, which the Predictor pads to.
    """

    name = "openvino"
    OPTIONS = ("threads", "hint", "inference_precision")

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        device: str = "cpu",
        threads: int | None = None,
        hint: str = "latency",
        inference_precision: str = "f32",
    ) -> None:
        super().__init__(model_path, device)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"model file not found: {self.model_path}")
        try:
            ov = import_openvino()
        except ImportError as e:
            raise BackendUnavailable(f"{self.model_path}: {e}") from None
        kind = device.split(":")[0].lower()
        if kind not in DEVICES:
            raise BackendUnavailable(
                f"OpenVINO runs on {', '.join(DEVICES)} devices, not {device!r}; for NVIDIA GPUs use the "
                f"tensorrt or onnxruntime backend"
            )
        if hint.lower() not in HINTS:
            raise ValueError(f"unknown OpenVINO performance hint {hint!r}; use one of {', '.join(HINTS)}")
        if inference_precision not in INFERENCE_PRECISIONS:
            raise ValueError(
                f"unknown inference precision {inference_precision!r}; use one of {', '.join(INFERENCE_PRECISIONS)}"
            )
        self._ov = ov
        self.threads = threads
        self.hint = hint.lower()
        self.inference_precision = inference_precision
        self._device_name = DEVICES[kind] + (f".{device.split(':', 1)[1]}" if ":" in device else "")
        core = ov.Core()
        model = self._read_model(core)
        info = self._model_info(model)
        static, batch = _static_shape(model, info)
        self._info = replace(info, static_input_size=static, batch=batch, max_batch=batch)
        self.warn_if_inexact_here()
        self._output_names = [o.get_any_name() for o in model.outputs]
        missing = [n for n in contract.DETECTION_OUTPUTS if n not in self._output_names]
        if missing:
            raise BackendError(
                f"{self.model_path}: outputs {self._output_names} lack {missing}; not a model of the ONNX contract"
            )
        try:
            self._compiled = core.compile_model(model, self._device_name, self._config())
        except RuntimeError as e:
            raise BackendError(f"{self.model_path}: OpenVINO cannot compile it for {self._device_name}: "
                               f"{first_line(str(e))}") from None  # fmt: skip
        self._request = self._compiled.create_infer_request()
        self._ports = {o.get_any_name(): o for o in self._compiled.outputs}

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"PERFORMANCE_HINT": HINTS[self.hint]}
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        if self._device_name.startswith("CPU"):
            config["INFERENCE_PRECISION_HINT"] = self.inference_precision
        return config

    def _read_model(self, core: Any) -> Any:
        """The file as an ``openvino.Model``; a ``trt``-flavor ONNX is refused by name, not by a parse error."""
        suffix = self.model_path.suffix.lower()
        if suffix in IR_EXTENSIONS:
            finish_interrupted(self.model_path)  # an export interrupted after committing its new pair
        if suffix in IR_EXTENSIONS and not bin_path(self.model_path).is_file():
            raise BackendError(f"{self.model_path}: its weights file {bin_path(self.model_path).name} is missing "
                               f"beside it (an IR is the .xml and the .bin together)")  # fmt: skip
        try:
            return core.read_model(str(self.model_path))
        except RuntimeError as e:
            message = str(e)
            if ROI_ALIGN_OP in message or NMS_OP in message:
                raise BackendError(
                    f"{self.model_path} is the `trt` flavor (TensorRT plugin nodes), which OpenVINO cannot run; "
                    f"export the `ort` flavor (--flavor ort) or an IR (--to openvino) for OpenVINO"
                ) from None
            raise BackendError(f"{self.model_path}: OpenVINO cannot read it: {first_line(message)}") from None

    def _model_info(self, model: Any) -> ModelInfo:
        """The contract's metadata: from the IR's rt_info, or from the ONNX file's metadata_props."""
        try:
            if self.model_path.suffix.lower() in IR_EXTENSIONS:
                return contract.model_info_from_metadata(ir_metadata(model), str(self.model_path))
            return contract.read_metadata(self.model_path)
        except contract.ContractError as e:
            raise BackendError(str(e)) from None

    @property
    def info(self) -> ModelInfo:
        return self._info

    def infer(self, batch: PreprocessedBatch) -> list[RawDetections]:
        n = len(batch)
        feeds = contract_feeds(batch, self._info, self.model_path)
        try:
            self._request.infer(feeds)
        except RuntimeError as e:
            raise BackendError(
                f"{self.model_path.name}: OpenVINO inference failed: {first_line(str(e))}"
            ) from None
        outputs = {name: np.array(self._request.get_tensor(port).data) for name, port in self._ports.items()}
        return contract.outputs_to_raw(outputs, self.info.output_convention)[:n]

    def count_flops(self, batches: Sequence[PreprocessedBatch]) -> list[float] | None:
        """The ONNX graph's FLOPs (``runtime.compute_floor``): the file itself, or for an IR the ONNX it was
        converted from, which ``exporter --to openvino`` leaves beside it (None when it is gone)."""
        from runtime.compute_floor import onnx_flops

        source = self.model_path.with_suffix(".onnx")
        if self.model_path.suffix.lower() == ".onnx":
            source = self.model_path
        elif not source.is_file():
            log.info("%s: no %s beside it to count FLOPs on", self.model_path.name, source.name)
            return None
        feeds = [contract_feeds(b, self._info, self.model_path) for b in batches]
        return onnx_flops(source, feeds, self.threads)

    def profile_ops(self, batches: Sequence[PreprocessedBatch]) -> OpProfile:
        """OpenVINO's per-node counters, from a second compiled model with ``PERF_COUNT`` on (counting
        costs time, so the timed model runs without it)."""
        core = self._ov.Core()
        compiled = core.compile_model(
            self._read_model(core), self._device_name, {**self._config(), "PERF_COUNT": True}
        )
        feeds = [contract_feeds(b, self._info, self.model_path) for b in batches]
        return openvino_op_profile(compiled.create_infer_request(), feeds)

    def close(self) -> None:
        self._request = None
        self._compiled = None

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["versions"] = {"openvino": self._ov.__version__.split("-")[0]}
        d["threads"] = self.threads
        d["hint"] = self.hint
        d["flavor"] = self._info.flavor
        if self._compiled is not None and self._device_name.startswith("CPU"):
            value = self._compiled.get_property("INFERENCE_PRECISION_HINT")
            d["inference_precision"] = value.to_string() if hasattr(value, "to_string") else str(value)
            d["streams"] = int(self._compiled.get_property("NUM_STREAMS"))
        return d


def _static_shape(model: Any, info: ModelInfo) -> tuple[tuple[int, int] | None, int | None]:
    shape = next(i.get_partial_shape() for i in model.inputs if contract.INPUT_IMAGES in i.get_names())
    dims = [d.get_length() if d.is_static else None for d in shape] if shape.rank.is_static else []
    return declared_static_shape(info, dims)
