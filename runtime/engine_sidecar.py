"""The JSON sidecar of a TensorRT engine: what the model is, and what the engine was built for.

An engine file carries no class names or pre-processing, and it only deserializes on the TensorRT version
and GPU architecture it was built with; loading it elsewhere fails deep in TensorRT with a cryptic
message. The exporter writes this sidecar next to the engine and the runtime's TensorRT backend checks it
before deserializing, so a mismatch is one clear sentence. Its keys and their meaning are the contract's
(``runtime.onnx_contract``: ``sidecar_dict`` / ``model_info_from_sidecar``); this module only reads and
writes the file and checks the build facts. Plain JSON: importable anywhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runtime import onnx_contract as contract
from runtime.atomic_files import finish_interrupted, replace_together, temporary_beside, write_bytes_atomic


class SidecarError(ValueError):
    """A sidecar that is missing or not a JSON object."""


class EngineMismatchError(RuntimeError):
    """The engine was built for another TensorRT version or GPU architecture: rebuild it on this machine."""


def sidecar_path(engine_path: str | os.PathLike[str]) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def read_sidecar(engine_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar's JSON object; :class:`SidecarError` names the file when it is missing or unreadable.

    A pair whose writer was interrupted after committing it is completed first (``runtime.atomic_files``).
    """
    finish_interrupted(engine_path)
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise SidecarError(
            f"{engine_path}: its JSON sidecar {path.name} is missing; engines built by "
            f"`python -m exporter --to tensorrt` are written with one (classes, pre-processing, precision)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SidecarError(f"{path}: unreadable engine sidecar: {e}") from None
    if not isinstance(data, dict):
        raise SidecarError(f"{path}: engine sidecar must be a JSON object")
    return data


def write_sidecar(engine_path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """The sidecar alone, atomically (for an engine already in place)."""
    path = sidecar_path(engine_path)
    write_bytes_atomic(path, _sidecar_bytes(data))
    return path


def write_engine_with_sidecar(
    engine_path: str | os.PathLike[str], engine: bytes, data: Mapping[str, Any]
) -> Path:
    """The engine and its sidecar, replaced together: a crash leaves the old pair or the new one, never new
    weights described by the old sidecar (``runtime.atomic_files.replace_together``)."""
    engine_path = Path(engine_path)
    path = sidecar_path(engine_path)
    finish_interrupted(engine_path)
    with temporary_beside(engine_path) as tmp_engine, temporary_beside(path) as tmp_sidecar:
        tmp_engine.write_bytes(engine)
        tmp_sidecar.write_bytes(_sidecar_bytes(data))
        replace_together([(tmp_engine, engine_path), (tmp_sidecar, path)])
    return path


def _sidecar_bytes(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(dict(data), indent=2) + "\n").encode()


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
    built_version = str(data.get(contract.SIDECAR_TENSORRT_VERSION, ""))
    built_cc = str(data.get(contract.SIDECAR_COMPUTE_CAPABILITY, ""))
    built_gpu = str(data.get(contract.SIDECAR_GPU, ""))
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
