"""OpenVINO IR files (``model.xml`` + ``model.bin``) as carriers of the ONNX contract.

An IR keeps the contract's tensor names (the ONNX frontend copies them), but not ONNX ``metadata_props``;
so the exporter writes the same key/value pairs into the IR's ``rt_info`` under one section, and every
reader gets them back here as the same strings :func:`runtime.onnx_contract.model_info_from_metadata`
parses. An IR is then read exactly like an ONNX file: class names, pre-processing, precision, config.

``openvino`` is an optional extra; this module imports it only inside its functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runtime import onnx_contract as contract
from runtime.atomic_files import finish_interrupted
from runtime.backends.base import first_line

#: the rt_info section of an IR that holds the contract's metadata (one string per metadata key)
RT_INFO_SECTION = "maskrcnn_deploy"
#: file extensions of an OpenVINO IR (the .xml is what one opens; the .bin holds the weights beside it)
IR_EXTENSIONS = (".xml",)

OPENVINO_MISSING = (
    "OpenVINO is not installed: pip install 'maskrcnn-deploy[openvino]' (or `pip install openvino`)"
)


def import_openvino() -> Any:
    """The ``openvino`` module, or ImportError saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise ImportError(OPENVINO_MISSING) from None
    return openvino


def bin_path(xml: str | Path) -> Path:
    """The weights file OpenVINO reads beside ``xml``."""
    return Path(xml).with_suffix(".bin")


def ir_metadata(model: Any) -> dict[str, str]:
    """The contract's metadata strings of an ``openvino.Model`` (empty when the IR has none)."""
    if not model.has_rt_info([RT_INFO_SECTION]):
        return {}
    section = model.get_rt_info([RT_INFO_SECTION])
    items = section.astype(dict) if hasattr(section, "astype") else dict(section)
    return {str(k): _any_to_str(v) for k, v in items.items()}


def set_ir_metadata(model: Any, props: Mapping[str, str]) -> None:
    """Write ``props`` into ``model``'s rt_info section (replacing keys already there)."""
    for key, value in props.items():
        model.set_rt_info(str(value), [RT_INFO_SECTION, str(key)])


def read_ir_info(xml: str | Path, core: Any = None) -> contract.ModelInfo:
    """:class:`ModelInfo` of an IR file, read from its rt_info; ContractError when it is not one of ours."""
    path = Path(xml)
    finish_interrupted(path)  # an export interrupted after committing its new .xml and .bin
    if not path.is_file():
        raise contract.ContractError(f"OpenVINO IR not found: {path}")
    if not bin_path(path).is_file():
        raise contract.ContractError(f"{path}: its weights file {bin_path(path).name} is missing beside it")
    ov = import_openvino()
    try:
        model = (core or ov.Core()).read_model(str(path))
    except RuntimeError as e:
        raise contract.ContractError(f"{path} is not a readable OpenVINO IR: {first_line(str(e))}") from None
    return contract.model_info_from_metadata(ir_metadata(model), str(path))


def _any_to_str(value: Any) -> str:
    if hasattr(value, "astype"):
        return str(value.astype(str))
    if hasattr(value, "value"):
        return str(value.value)
    return str(value)
