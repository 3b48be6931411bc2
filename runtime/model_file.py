"""Which backend runs a model file: chosen from its extension, overridable by name.

Every command (predictor, bench, evaluate, webcam) accepts any model file through this one place, so a
new backend or extension is added once. Backends are imported only when chosen: loading an ONNX model
must not import torch or TensorRT.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from runtime import onnx_contract as contract
from runtime.backends.base import Backend, BackendError
from runtime.triton.client import is_triton_url

#: extension -> backend name
EXTENSIONS: dict[str, str] = {
    ".pth": "torch",
    ".pkl": "torch",  # detectron2 model-zoo weights (read without arbitrary unpickling)
    ".pt": "torch",
    ".onnx": "onnxruntime",
    ".xml": "openvino",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
    ".trt": "tensorrt",
}

#: backend name -> "module:class", imported lazily
BACKENDS: dict[str, str] = {
    "torch": "trainer.torch_backend:TorchBackend",  # PyTorch runs in the trainer, beside its model
    "onnxruntime": "runtime.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "openvino": "runtime.backends.openvino_backend:OpenVinoBackend",
    "tensorrt": "runtime.backends.tensorrt_backend:TensorRTBackend",
    "triton": "runtime.backends.triton_backend:TritonBackend",
}

#: names people type for a backend
ALIASES: dict[str, str] = {
    "pytorch": "torch",
    "ort": "onnxruntime",
    "onnx": "onnxruntime",
    "trt": "tensorrt",
    "ov": "openvino",
}


class UnknownModelType(ValueError):
    """A model file whose type (or a backend name) this toolchain does not know."""


def supported_types() -> str:
    by_backend: dict[str, list[str]] = {}
    for ext, backend in EXTENSIONS.items():
        by_backend.setdefault(backend, []).append(ext)
    return "; ".join(f"{', '.join(exts)} ({backend})" for backend, exts in by_backend.items())


def normalize_backend_name(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in BACKENDS:
        raise UnknownModelType(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return key


def backend_for(model_path: str | os.PathLike[str], backend: str | None = None) -> str:
    """Backend name for a file: ``backend`` when given, else from the extension (or a URL: triton)."""
    if backend:
        return normalize_backend_name(backend)
    if is_triton_url(str(model_path)):  # grpc://HOST:PORT/MODEL, http://...: a Triton server
        return "triton"
    suffix = Path(model_path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise UnknownModelType(
            f"{model_path}: unknown model type {suffix or '(no extension)'!r}. Supported: {supported_types()}; "
            f"or name the backend explicitly (--backend {'|'.join(BACKENDS)})"
        )
    return EXTENSIONS[suffix]


#: the mark in a file name of a model that failed ``--verify`` when exported (``model.unverified.onnx``)
UNVERIFIED = ".unverified"
#: set (to 1) by ``--allow-unverified``: commands then load such files too
ENV_ALLOW_UNVERIFIED = "MRD_ALLOW_UNVERIFIED"


def unverified_path(path: str | os.PathLike[str]) -> Path:
    """Where a model that failed its verification is moved: ``model.onnx`` -> ``model.unverified.onnx``."""
    p = Path(path)
    return p if is_unverified(p) else p.with_name(f"{p.stem}{UNVERIFIED}{p.suffix}")


def is_unverified(path: str | os.PathLike[str]) -> bool:
    return Path(path).stem.endswith(UNVERIFIED)


def check_verified(path: str | os.PathLike[str], allow_unverified: bool | None = None) -> None:
    """Refuse a model file named as one that failed ``--verify``, unless the caller (or
    ``MRD_ALLOW_UNVERIFIED=1``, which ``--allow-unverified`` sets) accepts it knowingly."""
    if allow_unverified is None:
        allow_unverified = os.environ.get(ENV_ALLOW_UNVERIFIED, "") == "1"
    if is_unverified(path) and not allow_unverified:
        raise BackendError(
            f"{path} failed its verification against PyTorch when it was exported; load it anyway with "
            f"--allow-unverified (Python: allow_unverified=True) to inspect it"
        )


def load_backend(
    model_path: str | os.PathLike[str],
    backend: str | None = None,
    device: str = "cpu",
    strict_options: bool = True,
    allow_unverified: bool | None = None,
    **options: Any,
) -> Backend:
    """Open a model file with its backend; ``options`` go to the backend (threads, config_file, ...).

    None-valued options are ignored. With ``strict_options=False`` options the chosen backend does not
    take are dropped too: a command comparing a .pth and an .onnx passes ``config_file`` to both. A file
    marked as having failed ``--verify`` is refused unless ``allow_unverified`` (:func:`check_verified`).
    """
    name = backend_for(model_path, backend)
    path: Path | str = str(model_path) if name == "triton" else Path(model_path)  # a URL stays a string
    if name != "triton" and not Path(path).exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if name != "triton":
        check_verified(path, allow_unverified)
    module_name, cls_name = BACKENDS[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    accepted = cls.OPTIONS if hasattr(cls, "OPTIONS") else ()
    kwargs = {k: v for k, v in options.items() if v is not None}
    unexpected = sorted(k for k in kwargs if k not in accepted)
    if not strict_options:
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    elif unexpected:
        raise TypeError(f"the {name} backend takes no option(s) {unexpected}; it takes {sorted(accepted)}")
    result: Backend = cls(path, device=device, **kwargs)
    return result


def read_model_info(model_path: str | os.PathLike[str]) -> contract.ModelInfo:
    """The contract's :class:`ModelInfo` of an exported file without opening a backend session.

    ONNX files and OpenVINO IRs carry it in their metadata; ContractError for anything else.
    """
    suffix = Path(model_path).suffix.lower()
    if suffix == ".xml":
        from runtime.openvino_ir import read_ir_info

        try:
            return read_ir_info(model_path)
        except ImportError as e:
            raise contract.ContractError(f"{model_path}: {e}") from None
    if suffix == ".onnx":
        return contract.read_metadata(model_path)
    raise contract.ContractError(f"{model_path}: not an exported model file (.onnx or OpenVINO .xml)")
