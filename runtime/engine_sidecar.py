"""The JSON sidecar of a TensorRT engine: what the model is, and what the engine was built for.

An engine file carries no class names or pre-processing, and it only deserializes on the TensorRT version
and GPU architecture it was built with; loading it elsewhere fails deep in TensorRT with a cryptic
message. The exporter writes this sidecar next to the engine and the runtime's TensorRT backend checks it
before deserializing, so a mismatch is one clear sentence. Keys are the ONNX metadata keys
(``runtime.onnx_contract``) with JSON values, plus the build facts below. Plain JSON: importable anywhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runtime import onnx_contract as contract

KEY_PRECISION = "precision"
KEY_TENSORRT_VERSION = "tensorrt_version"
KEY_GPU = "gpu"
KEY_COMPUTE_CAPABILITY = "compute_capability"  # "8.6"
KEY_ONNX_SHA256 = "onnx_sha256"
KEY_PROFILE = "profile"  # {"images": {"min": [...], "opt": [...], "max": [...]}, ...}
KEY_PLUGIN_LIBRARY = "plugin_library"

_JSON_KEYS = (
    contract.META_CLASS_NAMES,
    contract.META_PREPROCESS,
    contract.META_KEYPOINT_NAMES,
    contract.META_STATIC_SIZE,
)
_INT_KEYS = (
    contract.META_OPSET,
    contract.META_DETECTIONS_PER_IMAGE,
    contract.META_MASK_SIZE,
    contract.META_BATCH,
)


class EngineMismatchError(RuntimeError):
    """The engine was built for another TensorRT version or GPU architecture: rebuild it on this machine."""


def sidecar_path(engine_path: str | os.PathLike[str]) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def sidecar_from_metadata(props: Mapping[str, str], build: Mapping[str, Any]) -> dict[str, Any]:
    """ONNX ``metadata_props`` (strings) as JSON-typed sidecar entries, plus the build facts in ``build``."""
    data: dict[str, Any] = {}
    for key, value in props.items():
        if key in _JSON_KEYS:
            data[key] = json.loads(value)
        elif key in _INT_KEYS:
            data[key] = int(value)
        else:
            data[key] = value
    data.setdefault(KEY_PRECISION, "fp32")
    data.update(build)
    return data


def write_sidecar(engine_path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    path = sidecar_path(engine_path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(dict(data), indent=2) + "\n")
    tmp.replace(path)
    return path


def check_engine_compatible(
    data: Mapping[str, Any],
    tensorrt_version: str,
    compute_capability: str,
    gpu: str = "",
    source: str = "engine",
) -> list[str]:
    """Raise :class:`EngineMismatchError` when the engine cannot run here; return warnings that it still can.

    TensorRT refuses plans from another version (major.minor.patch) and kernels are compiled per
    architecture (compute capability); another GPU model of the same architecture loads with a warning.
    """
    built_version = str(data.get(KEY_TENSORRT_VERSION, ""))
    built_cc = str(data.get(KEY_COMPUTE_CAPABILITY, ""))
    built_gpu = str(data.get(KEY_GPU, ""))
    if not built_version or not built_cc:
        raise EngineMismatchError(
            f"{source}: its sidecar does not say which TensorRT version and GPU it was built for; rebuild it with "
            "`python -m exporter --to tensorrt`"
        )
    if _release(built_version) != _release(tensorrt_version):
        raise EngineMismatchError(
            f"{source} was built with TensorRT {built_version}, this machine has TensorRT {tensorrt_version}: "
            "engines only load on the version that built them. Rebuild it here with `python -m exporter --to "
            "tensorrt` (the ONNX next to it is enough)"
        )
    if built_cc != compute_capability:
        raise EngineMismatchError(
            f"{source} was built for {built_gpu or 'a GPU'} (compute capability {built_cc}), this GPU is "
            f"{gpu or 'another one'} (compute capability {compute_capability}): rebuild the engine on this machine"
        )
    if built_gpu and gpu and built_gpu != gpu:
        return [
            f"{source} was built on {built_gpu} and runs on {gpu} (same architecture): rebuild it here for best speed"
        ]
    return []


def _release(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:3])
