"""TensorRT backend: a serialized engine plus its JSON sidecar, with our plugin library loaded.

Written against the TensorRT >= 10 Python API (``Runtime.deserialize_cuda_engine``, named I/O tensors,
``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``) and type-checked with tensorrt-stubs.
Device buffers are torch CUDA tensors: torch is the one CUDA array library this project already depends on
where a GPU exists, and it spares a pycuda/cuda-python dependency. Where TensorRT or a GPU is missing it
fails with :class:`BackendUnavailable` saying what to install or which backend to use instead.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime import engine_sidecar
from runtime import onnx_contract as contract
from runtime.backends.base import Backend, BackendError, BackendUnavailable, check_batch
from runtime.onnx_contract import ModelInfo
from runtime.preprocess import PreprocessedBatch
from runtime.structures import RawDetections
from runtime.tensorrt_probe import MIN_TENSORRT_MAJOR, find_tensorrt

if TYPE_CHECKING:
    import tensorrt as trt
    import torch

log = logging.getLogger(__name__)


_USE_ORT = "without them run the .onnx model with the onnxruntime backend"


def import_tensorrt() -> ModuleType:
    """The usable ``tensorrt`` module, or :class:`BackendUnavailable` saying what is missing.

    ``runtime.tensorrt_probe`` tells the real package from tensorrt-stubs' empty namespace package.
    """
    module, missing = find_tensorrt()
    if module is None:
        raise BackendUnavailable(
            f"the tensorrt backend needs TensorRT >= {MIN_TENSORRT_MAJOR} and an NVIDIA GPU: {missing}; {_USE_ORT}"
        )
    return module


def import_torch_cuda(device: str) -> Any:
    try:
        import torch
    except ImportError:
        raise BackendUnavailable(
            "the tensorrt backend allocates GPU buffers with PyTorch: install torch with CUDA"
        ) from None
    if not torch.cuda.is_available():
        raise BackendUnavailable(
            "the tensorrt backend needs an NVIDIA GPU, and PyTorch sees none (no driver, or a CPU-only torch "
            "build); run the .onnx model with the onnxruntime backend instead"
        )
    if not device.startswith("cuda"):
        raise BackendError(f"TensorRT engines run on a GPU; use --device cuda (got {device!r})")
    return torch


class TensorRTBackend(Backend):
    """A TensorRT engine (.engine/.plan) built by the exporter, with its ``.json`` sidecar beside it."""

    name = "tensorrt"
    OPTIONS = ("plugin_library",)

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        device: str = "cuda",
        plugin_library: str | os.PathLike[str] | None = None,
    ) -> None:
        device = "cuda" if device == "cpu" else device  # engines only run on GPUs; cpu is every CLI's default
        super().__init__(model_path, device)
        import_tensorrt()  # a clear error where TensorRT is missing, too old, or only its stubs are installed
        import tensorrt as trt  # typed against tensorrt-stubs from here on

        self._torch = import_torch_cuda(device)
        self._trt_version = str(trt.__version__)
        try:
            sidecar = engine_sidecar.read_sidecar(self.model_path)
            self._info = contract.model_info_from_sidecar(sidecar, str(self.model_path))
        except (engine_sidecar.SidecarError, contract.ContractError) as e:
            raise BackendError(str(e)) from None
        self._check_compatible(sidecar)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._load_plugins(plugin_library)
        runtime = trt.Runtime(self._logger)
        engine = runtime.deserialize_cuda_engine(self.model_path.read_bytes())
        if engine is None:
            raise BackendError(
                f"{self.model_path}: TensorRT could not deserialize the engine (built by another TensorRT "
                f"version or for another GPU? the sidecar says TensorRT {self._info.extra.get(contract.SIDECAR_TENSORRT_VERSION, '?')}, "
                f"GPU {self._info.extra.get(contract.SIDECAR_GPU, '?')}); rebuild it on this machine"
            )
        self._runtime = runtime
        self.engine: trt.ICudaEngine = engine
        context = engine.create_execution_context()
        if context is None:
            raise BackendError(
                f"{self.model_path}: could not create an execution context (out of GPU memory?)"
            )
        self.context: trt.IExecutionContext = context
        self._inputs, self._outputs = self._io_names()
        self._stream = self._torch.cuda.Stream(device=self.device)
        max_batch = self._profile_max_batch()
        if max_batch is not None:
            self._info = replace(self._info, max_batch=max_batch)

    def _check_compatible(self, sidecar: dict[str, Any]) -> None:
        """One clear sentence instead of TensorRT's deserialization error on another version or GPU."""
        torch = self._torch
        major, minor = torch.cuda.get_device_capability(self.device)
        try:
            warnings = engine_sidecar.check_engine_compatible(
                sidecar, self._trt_version, f"{major}.{minor}", torch.cuda.get_device_name(self.device),
                str(self.model_path),
            )  # fmt: skip
        except engine_sidecar.EngineMismatchError as e:
            raise BackendError(str(e)) from None
        for w in warnings:
            log.warning("%s", w)

    def _load_plugins(self, plugin_library: str | os.PathLike[str] | None) -> None:
        """Register our IPluginV3 creators before deserializing: the engine references them by name."""
        import tensorrt as trt

        trt.init_libnvinfer_plugins(self._logger, "")
        load_engine_plugins(trt.get_plugin_registry(), plugin_library, self.model_path)

    def _io_names(self) -> tuple[list[str], list[str]]:
        import tensorrt as trt

        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        missing = [n for n in (*contract.INPUT_NAMES, *contract.DETECTION_OUTPUTS) if n not in names]
        if missing:
            raise BackendError(
                f"{self.model_path}: engine tensors {names} lack {missing}; not a model of the ONNX contract"
            )
        return inputs, outputs

    def _profile_max_batch(self) -> int | None:
        _, _, max_shape = self.engine.get_tensor_profile_shape(contract.INPUT_IMAGES, 0)
        return int(max_shape[0]) if len(max_shape) else None

    def _check_profile(self, shape: tuple[int, ...]) -> None:
        lo, _, hi = (_dims(d) for d in self.engine.get_tensor_profile_shape(contract.INPUT_IMAGES, 0))
        if any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
            raise BackendError(
                f"{self.model_path.name}: input shape {shape} is outside the engine's optimization profile "
                f"(min {lo}, max {hi}); change --min-image-size/--batch or rebuild the engine with a wider profile"
            )

    @property
    def info(self) -> ModelInfo:
        return self._info

    def _torch_dtype(self, name: str) -> torch.dtype:
        import tensorrt as trt

        torch = self._torch
        mapping = {
            trt.DataType.FLOAT: torch.float32,
            trt.DataType.HALF: torch.float16,
            trt.DataType.INT32: torch.int32,
            trt.DataType.INT64: torch.int64,
            trt.DataType.BOOL: torch.bool,
            trt.DataType.INT8: torch.int8,
        }
        dtype = self.engine.get_tensor_dtype(name)
        if dtype not in mapping:
            raise BackendError(f"{self.model_path.name}: tensor {name} has unsupported type {dtype}")
        return mapping[dtype]

    def infer(self, batch: PreprocessedBatch) -> list[RawDetections]:
        check_batch(batch, self._info, self.model_path)
        torch = self._torch
        shape = tuple(int(v) for v in batch.images.shape)
        self._check_profile(shape)
        host_inputs = {contract.INPUT_IMAGES: batch.images, contract.INPUT_IMAGE_SIZES: batch.image_sizes}
        keep: list[Any] = []  # buffers must outlive the asynchronous execution
        with torch.cuda.stream(self._stream):
            for name in self._inputs:
                if name not in host_inputs:
                    raise BackendError(f"{self.model_path.name}: unexpected engine input {name!r}")
                t = torch.from_numpy(np.ascontiguousarray(host_inputs[name]))
                t = t.to(self.device, dtype=self._torch_dtype(name), non_blocking=True).contiguous()
                if not self.context.set_input_shape(name, tuple(t.shape)):
                    raise BackendError(
                        f"{self.model_path.name}: TensorRT rejected input shape {tuple(t.shape)} for {name}"
                    )
                self.context.set_tensor_address(name, t.data_ptr())
                keep.append(t)
            outputs: dict[str, Any] = {}
            for name in self._outputs:
                out_shape = _dims(self.context.get_tensor_shape(name))
                if any(d < 0 for d in out_shape):
                    raise BackendError(
                        f"{self.model_path.name}: output {name} has an unresolved shape {out_shape}"
                    )
                t = torch.empty(out_shape, dtype=self._torch_dtype(name), device=self.device)
                self.context.set_tensor_address(name, t.data_ptr())
                outputs[name] = t
            if not self.context.execute_async_v3(self._stream.cuda_stream):
                raise BackendError(
                    f"{self.model_path.name}: TensorRT execution failed (see the TensorRT log above)"
                )
            host = {
                k: v.float().cpu().numpy() if v.dtype == torch.float16 else v.cpu().numpy()
                for k, v in outputs.items()
            }
        self._stream.synchronize()
        return contract.outputs_to_raw(host, self.info.output_convention)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def close(self) -> None:
        self.context = None  # type: ignore[assignment]
        self.engine = None  # type: ignore[assignment]

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["versions"] = {"tensorrt": self._trt_version, "torch": self._torch.__version__}
        d["gpu"] = self._torch.cuda.get_device_name(self.device)
        return d


def load_engine_plugins(
    registry: Any, plugin_library: str | os.PathLike[str] | None, model_path: Path
) -> None:
    """Our plugin creators into ``registry`` (``trt.get_plugin_registry()``), or a clear backend error.

    ``plugin_library`` defaults to the built ``libmrd_trt_plugins.so``; the checks are
    :func:`runtime.plugins.library.register_trt_plugins` (shared with the engine build).
    """
    from runtime.plugins.library import PluginLibraryNotFound, PluginRegistrationError, register_trt_plugins

    try:
        register_trt_plugins(registry, plugin_library)
    except PluginLibraryNotFound as e:
        raise BackendUnavailable(f"{model_path}: the engine needs our plugin library: {e}") from None
    except PluginRegistrationError as e:
        raise BackendError(f"{model_path}: {e}") from None


def _dims(d: trt.Dims) -> tuple[int, ...]:
    """TensorRT Dims as a plain tuple (the binding's Dims is indexable, not a sequence type)."""
    return tuple(int(d[i]) for i in range(len(d)))
