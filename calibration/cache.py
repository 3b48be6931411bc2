"""The calibration cache: activation ranges of one model, reused by later runs, refused for any other model.

Calibrating runs the network on every calibration image; a cache turns a second export (another exclusion
choice, the ``trt`` flavor after the ``ort`` one) into seconds. The ranges are ONNX Runtime's own
(``onnxruntime.quantization`` reads them back through ``calibration_cache_path``), wrapped with a fingerprint
of the dense region (ops, tensor names, weights): ranges from another model or an older training run would
quantize silently wrong, so they are an error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from calibration.errors import CalibrationError

FORMAT = "maskrcnn-deploy calibration cache"
VERSION = 1


@dataclass(frozen=True)
class CalibrationCache:
    """One cache file's content; ``ranges`` is the JSON ``onnxruntime.quantization`` saves for its ranges."""

    fingerprint: str
    method: str
    source: str
    ranges: dict[str, Any]
    roles: dict[str, str] = field(default_factory=dict)  # "node:in0" / "node:out0" -> tensor name

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "fingerprint": self.fingerprint,
            "method": self.method,
            "source": self.source,
            "ranges": self.ranges,
            "roles": self.roles,
        }

    def ranges_for(self, model: onnx.ModelProto, nodes: Iterable[str]) -> dict[str, Any]:
        """The ranges of the activations of ``nodes`` in ``model``, found by name or by role.

        The ``ort`` and ``trt`` flavors name the ROI pooling outputs differently; the node consuming them
        (``/box_head/Flatten``...) is the same, so a range is also found through the node and input slot.
        Ranges of other tensors (glue the calibrator saw, -inf paddings) are left out: they would only
        give ONNX Runtime's quantizer meaningless scales to compute.
        """
        known = self.ranges.get("data", {})
        data = {}
        for role, tensor in tensor_roles(model, nodes).items():
            source = tensor if tensor in known else self.roles.get(role)
            if source in known:
                data[tensor] = known[source]
        return {**self.ranges, "data": data}


def tensor_roles(model: onnx.ModelProto, nodes: Iterable[str]) -> dict[str, str]:
    """``node:inI`` / ``node:outI`` -> tensor name for the activations of ``nodes`` (weights left out)."""
    wanted = set(nodes)
    weights = {t.name for t in model.graph.initializer}
    roles = {}
    for node in model.graph.node:
        if node.name not in wanted:
            continue
        for i, t in enumerate(node.input):
            if t and t not in weights:
                roles[f"{node.name}:in{i}"] = t
        for i, t in enumerate(node.output):
            roles[f"{node.name}:out{i}"] = t
    return roles


def default_cache_path(output: str | os.PathLike[str]) -> Path:
    """Where a model's ranges are kept unless told: ``model_int8.onnx`` -> ``model_int8.calib.json`` beside it."""
    out = Path(output)
    return out.with_name(out.stem + ".calib.json")


def save_cache(path: str | os.PathLike[str], cache: CalibrationCache) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(cache.to_json()))
    tmp.replace(out)  # atomic: an interrupted run never leaves half a cache that a later run trusts
    return out


def load_cache(path: str | os.PathLike[str], fingerprint: str, method: str) -> CalibrationCache:
    """The cache at ``path``, checked to belong to the model with ``fingerprint`` and to ``method``."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as e:
        raise CalibrationError(f"calibration cache {p} is not readable: {e.strerror or e}") from None
    except ValueError as e:
        raise CalibrationError(
            f"calibration cache {p} is not valid JSON ({e}); delete it to recalibrate"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CalibrationError(
            f"{p} is not a calibration cache written by this tool; delete it or give another --calib-cache path"
        )
    if data.get("version") != VERSION:
        raise CalibrationError(
            f"calibration cache {p} has version {data.get('version')}, this tool writes {VERSION}; delete it"
        )
    if data.get("fingerprint") != fingerprint:
        raise CalibrationError(
            f"calibration cache {p} was computed for another model (or other weights of this one): its "
            f"fingerprint {str(data.get('fingerprint'))[:12]} is not this model's {fingerprint[:12]}. "
            "Delete it to recalibrate, or give another --calib-cache path"
        )
    if data.get("method") != method:
        raise CalibrationError(
            f"calibration cache {p} holds {data.get('method')} ranges, not {method}; "
            f"use --calib-method {data.get('method')} or delete the cache to recalibrate"
        )
    ranges = data.get("ranges")
    if not isinstance(ranges, dict):
        raise CalibrationError(f"calibration cache {p} has no ranges; delete it to recalibrate")
    roles = data.get("roles") or {}
    return CalibrationCache(fingerprint, method, str(data.get("source", "")), ranges, dict(roles))
