"""maskrcnn-benchmark and detectron2 state dicts -> torchvision's parameter names and layouts.

The layout is recognised from the names themselves (``backbone.body.stem.`` is maskrcnn-benchmark's,
``backbone.bottom_up.`` detectron2's), so a checkpoint we saved after fine-tuning an imported model (already
torchvision's names) loads the same way as any of ours. Besides renaming:

- maskrcnn-benchmark's FrozenBatchNorm has no eps (``w / sqrt(var)``): folded into weight and bias, with
  running statistics set so torchvision's ``w / sqrt(var + eps)`` gives the same scale;
- detectron2 puts the background class last and has no background box or mask: rows are moved and zero
  background rows added, so classes become torchvision's (background 0, classes 1..K);
- maskrcnn-benchmark stores its cell anchors: they are checked against the config's, not loaded.

detectron2's model-zoo ``.pkl`` files are read by a restricted unpickler that accepts numpy arrays and
nothing else (no arbitrary code from a user's file).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import CheckpointError

FROZEN_BN_EPS = 1e-5  # torchvision's FrozenBatchNorm2d
_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var")

_MRB_RULES: list[tuple[str, str]] = [
    (r"backbone\.body\.stem\.conv1\.", "backbone.body.conv1."),
    (r"backbone\.body\.stem\.bn1\.", "backbone.body.bn1."),
    (r"backbone\.body\.(layer\d\.\d+\.(conv\d|bn\d|downsample\.[01]))\.", r"backbone.body.\1."),
    (r"backbone\.fpn\.fpn_inner(\d)\.", lambda m: f"backbone.fpn.inner_blocks.{int(m[1]) - 1}.0."),  # type: ignore[list-item]
    (r"backbone\.fpn\.fpn_layer(\d)\.", lambda m: f"backbone.fpn.layer_blocks.{int(m[1]) - 1}.0."),  # type: ignore[list-item]
    (r"rpn\.head\.conv\.", "rpn.head.conv.0.0."),
    (r"rpn\.head\.(cls_logits|bbox_pred)\.", r"rpn.head.\1."),
    (r"roi_heads\.box\.feature_extractor\.(fc6|fc7)\.", r"roi_heads.box_head.\1."),
    (r"roi_heads\.box\.predictor\.(cls_score|bbox_pred)\.", r"roi_heads.box_predictor.\1."),
    (r"roi_heads\.mask\.feature_extractor\.mask_fcn(\d)\.", lambda m: f"roi_heads.mask_head.{int(m[1]) - 1}.0."),  # type: ignore[list-item]
    (r"roi_heads\.mask\.predictor\.(conv5_mask|mask_fcn_logits)\.", r"roi_heads.mask_predictor.\1."),
    (r"roi_heads\.keypoint\.feature_extractor\.conv_fcn(\d)\.", lambda m: f"roi_heads.keypoint_head.{2 * (int(m[1]) - 1)}."),  # type: ignore[list-item]
    (r"roi_heads\.keypoint\.predictor\.kps_score_lowres\.", "roi_heads.keypoint_predictor.kps_score_lowres."),
]  # fmt: skip

_D2_RULES: list[tuple[str, Any]] = [
    (r"backbone\.bottom_up\.stem\.conv1\.norm\.", "backbone.body.bn1."),
    (r"backbone\.bottom_up\.stem\.conv1\.", "backbone.body.conv1."),
    (r"backbone\.bottom_up\.res(\d)\.(\d+)\.conv(\d)\.norm\.", lambda m: f"backbone.body.layer{int(m[1]) - 1}.{m[2]}.bn{m[3]}."),
    (r"backbone\.bottom_up\.res(\d)\.(\d+)\.conv(\d)\.", lambda m: f"backbone.body.layer{int(m[1]) - 1}.{m[2]}.conv{m[3]}."),
    (r"backbone\.bottom_up\.res(\d)\.0\.shortcut\.norm\.", lambda m: f"backbone.body.layer{int(m[1]) - 1}.0.downsample.1."),
    (r"backbone\.bottom_up\.res(\d)\.0\.shortcut\.", lambda m: f"backbone.body.layer{int(m[1]) - 1}.0.downsample.0."),
    (r"backbone\.fpn_lateral(\d)\.", lambda m: f"backbone.fpn.inner_blocks.{int(m[1]) - 2}.0."),
    (r"backbone\.fpn_output(\d)\.", lambda m: f"backbone.fpn.layer_blocks.{int(m[1]) - 2}.0."),
    (r"proposal_generator\.rpn_head\.conv\.", "rpn.head.conv.0.0."),
    (r"proposal_generator\.rpn_head\.objectness_logits\.", "rpn.head.cls_logits."),
    (r"proposal_generator\.rpn_head\.anchor_deltas\.", "rpn.head.bbox_pred."),
    (r"roi_heads\.box_head\.fc1\.", "roi_heads.box_head.fc6."),
    (r"roi_heads\.box_head\.fc2\.", "roi_heads.box_head.fc7."),
    (r"roi_heads\.box_predictor\.(cls_score|bbox_pred)\.", r"roi_heads.box_predictor.\1."),
    (r"roi_heads\.mask_head\.mask_fcn(\d)\.", lambda m: f"roi_heads.mask_head.{int(m[1]) - 1}.0."),
    (r"roi_heads\.mask_head\.deconv\.", "roi_heads.mask_predictor.conv5_mask."),
    (r"roi_heads\.mask_head\.predictor\.", "roi_heads.mask_predictor.mask_fcn_logits."),
]  # fmt: skip

#: buffers of the sources that are not weights (maskrcnn-benchmark's anchors are checked separately)
_MRB_NOT_WEIGHTS = re.compile(r"rpn\.anchor_generator\.cell_anchors\.\d+$")
_D2_ANCHORS = re.compile(
    r"proposal_generator\.anchor_generator\.cell_anchors\.\d+$"
)  # older detectron2 saved them
_D2_NOT_WEIGHTS = re.compile(r"pixel_(mean|std)$|" + _D2_ANCHORS.pattern)


def state_dict_layout(state: Mapping[str, Any]) -> str:
    """ "maskrcnn-benchmark", "detectron2" or "torchvision", from the parameter names."""
    keys = list(state)
    if any(k.startswith("backbone.bottom_up.") or k.startswith("proposal_generator.") for k in keys):
        return "detectron2"
    if any(k.startswith("backbone.body.stem.") or k.startswith("roi_heads.box.") for k in keys):
        return "maskrcnn-benchmark"
    return "torchvision"


def _rename(
    state: Mapping[str, torch.Tensor], rules: list[tuple[str, Any]], skip: re.Pattern[str]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]
    out: dict[str, torch.Tensor] = {}
    unmatched = []
    for key, value in state.items():
        if skip.search(key):
            continue
        for pattern, repl in compiled:
            m = pattern.match(key)
            if m:
                head = repl(m) if callable(repl) else m.expand(repl)
                out[head + key[m.end() :]] = value
                break
        else:
            unmatched.append(key)
    return out, unmatched


def _fold_frozen_bn(state: dict[str, torch.Tensor]) -> None:
    """maskrcnn-benchmark's eps-free FrozenBatchNorm as torchvision's (which adds eps 1e-5 to the variance)."""
    prefixes = {k[: -len("running_var")] for k in state if k.endswith("running_var")}
    for p in prefixes:
        w, b, mean, var = (state[p + s].double() for s in _BN_SUFFIXES)
        scale = w * var.rsqrt()
        dtype = state[p + "weight"].dtype
        state[p + "weight"] = scale.to(dtype)
        state[p + "bias"] = (b - mean * scale).to(dtype)
        state[p + "running_mean"] = torch.zeros_like(mean).to(dtype)
        state[p + "running_var"] = torch.full_like(var, 1.0 - FROZEN_BN_EPS).to(dtype)


def _background_first(state: dict[str, torch.Tensor]) -> None:
    """detectron2's classes (background last, no background box/mask) in torchvision's layout."""
    for suffix in ("weight", "bias"):
        key = f"roi_heads.box_predictor.cls_score.{suffix}"
        if key in state:
            t = state[key]
            state[key] = torch.cat([t[-1:], t[:-1]])
        key = f"roi_heads.box_predictor.bbox_pred.{suffix}"
        if key in state:
            t = state[key]
            state[key] = torch.cat([torch.zeros_like(t[:4]), t])
        key = f"roi_heads.mask_predictor.mask_fcn_logits.{suffix}"
        if key in state:
            t = state[key]
            state[key] = torch.cat([torch.zeros_like(t[:1]), t])


def to_torchvision(
    state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], str, dict[str, torch.Tensor]]:
    """(torchvision-named state, the layout it came in, maskrcnn-benchmark's stored cell anchors by level).

    Raises CheckpointError naming the parameters no rule maps, so nothing is silently dropped.
    """
    state = dict(state)
    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    layout = state_dict_layout(state)
    if layout == "torchvision":
        return state, layout, {}
    anchors: dict[str, torch.Tensor] = {}
    if layout == "maskrcnn-benchmark":
        anchors = {k: v for k, v in state.items() if _MRB_NOT_WEIGHTS.search(k)}
        out, unmatched = _rename(state, _MRB_RULES, _MRB_NOT_WEIGHTS)
    else:
        anchors = {k: v for k, v in state.items() if _D2_ANCHORS.search(k)}
        out, unmatched = _rename(state, _D2_RULES, _D2_NOT_WEIGHTS)
    if unmatched:
        raise CheckpointError(
            f"{len(unmatched)} {layout} parameter(s) belong to no part of the model this importer builds: "
            f"{', '.join(unmatched[:8])}{' ...' if len(unmatched) > 8 else ''}; is the config the one the "
            "checkpoint was trained with?"
        )
    if layout == "maskrcnn-benchmark":
        _fold_frozen_bn(out)
    else:
        _background_first(out)
    return out, layout, anchors


#: numeric dtypes a weights file may hold: bool, signed and unsigned integers, floats (no objects, no void,
#: no strings, no structured records)
_NUMERIC_KINDS = frozenset("biuf")
_BYTE_ORDERS = frozenset("<>|=")
#: how deep the containers of a weights file may nest (names -> arrays, plus a little metadata)
_MAX_DEPTH = 8


def _numeric_dtype(spec: object) -> np.dtype:
    """``spec`` (a dtype's pickled name, e.g. "f4") as a numeric dtype; anything else is refused."""
    if not isinstance(spec, str) or len(spec) > 16:
        raise pickle.UnpicklingError(f"refusing dtype {spec!r}: a weights file holds numeric arrays only")
    try:
        dtype = np.dtype(spec)
    except (TypeError, ValueError):
        raise pickle.UnpicklingError(f"unknown dtype {spec!r}") from None
    if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise pickle.UnpicklingError(f"refusing dtype {spec!r}: a weights file holds numeric arrays only")
    return dtype


class _PickledDType:
    """Stands in for ``numpy.dtype`` while unpickling: only numeric dtypes, the state checked before use
    (numpy's own ``__setstate__`` takes field layouts and item sizes on trust)."""

    def __init__(self, spec: object, align: object = False, copy: object = True) -> None:
        self.dtype = _numeric_dtype(spec)

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in _BYTE_ORDERS:
            raise pickle.UnpicklingError(f"refusing a dtype state {str(state)[:80]}")
        if any(v is not None for v in state[2:5]):  # subarray, field names, fields
            raise pickle.UnpicklingError(
                "refusing a structured dtype: a weights file holds numeric arrays only"
            )
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


class _PickledArray:
    """Stands in for ``numpy.core.multiarray._reconstruct(ndarray, ...)``: its state becomes an array only
    when the shape, the dtype and the bytes present agree, so nothing is allocated beyond the file's bytes."""

    array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise pickle.UnpicklingError(
                "refusing an array state that is not numpy's (version, shape, dtype, order, data)"
            )
        _, shape, dtype, fortran, data = state
        if not isinstance(dtype, _PickledDType):
            raise pickle.UnpicklingError("refusing an array without a numeric dtype")
        if (
            not isinstance(shape, tuple)
            or not all(isinstance(d, int) and 0 <= d for d in shape)
            or len(shape) > 8
        ):
            raise pickle.UnpicklingError(f"refusing array shape {str(shape)[:80]}")
        if isinstance(data, str):  # a Python 2 pickle read with encoding="latin1"
            data = data.encode("latin1")
        if not isinstance(data, (bytes, bytearray)):
            raise pickle.UnpicklingError("refusing array data that is not bytes (an object array?)")
        count = 1
        for d in shape:
            count *= d
        if count * dtype.dtype.itemsize != len(data):
            raise pickle.UnpicklingError(
                f"an array of shape {list(shape)} and dtype {dtype.dtype} needs {count * dtype.dtype.itemsize} "
                f"bytes, the file holds {len(data)}"
            )
        flat = np.frombuffer(bytes(data), dtype=dtype.dtype)
        self.array = flat.reshape(shape, order="F" if fortran else "C").copy()


def _reconstruct(cls: object, shape: object, typecode: object) -> _PickledArray:
    if cls is not _NDARRAY:
        raise pickle.UnpicklingError("refusing to reconstruct anything but a numpy array")
    return _PickledArray()


def _scalar(dtype: object, data: object = None) -> np.generic:
    if not isinstance(dtype, _PickledDType):
        raise pickle.UnpicklingError("refusing a scalar without a numeric dtype")
    if isinstance(data, str):
        data = data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)) or len(data) != dtype.dtype.itemsize:
        raise pickle.UnpicklingError(f"a {dtype.dtype} scalar needs {dtype.dtype.itemsize} bytes")
    return np.frombuffer(bytes(data), dtype=dtype.dtype)[0]


def _encode(text: object, encoding: object = "utf-8") -> bytes:
    """``_codecs.encode``, which Python 3 pickles of bytes use; latin-1 of a string only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode other than latin-1 of a string")
    return text.encode("latin1")


def _empty_bytes(*args: object) -> bytes:
    """``bytes()``, which protocol-2 pickles of an empty bytes object call; nothing else."""
    if args:
        raise pickle.UnpicklingError("refusing bytes() with arguments")
    return b""


_NDARRAY = object()  # what ``numpy.ndarray`` unpickles to: only _reconstruct may take it


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, numbers, strings and numeric numpy arrays; refuses every other global.

    numpy's own reconstructors are never called: stand-ins check each array's dtype, shape and bytes first
    (a crafted object array whose state is shorter than its shape crashed numpy, and each
    ``scalar(dtype('V<n>'))`` allocated n bytes).
    """

    _GLOBALS: dict[str, Any] = {
        "_reconstruct": _reconstruct,
        "scalar": _scalar,
        "ndarray": _NDARRAY,
        "dtype": _PickledDType,
    }
    _MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")

    def find_class(self, module: str, name: str) -> Any:
        if module in self._MODULES and name in self._GLOBALS:
            return self._GLOBALS[name]
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if (module, name) == ("_codecs", "encode"):
            return _encode
        if (module, name) in (("__builtin__", "bytes"), ("builtins", "bytes")):
            return _empty_bytes
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a weights file holds arrays only")


def _arrays(obj: Any, depth: int = 0) -> Any:
    """The unpickled object with every stand-in replaced by its array (and dtypes by numpy's)."""
    if depth > _MAX_DEPTH:
        raise pickle.UnpicklingError(f"containers nested deeper than {_MAX_DEPTH} levels")
    if isinstance(obj, _PickledArray):
        if obj.array is None:
            raise pickle.UnpicklingError("an array without its data")
        return obj.array
    if isinstance(obj, _PickledDType):
        return obj.dtype
    if obj is _NDARRAY:
        raise pickle.UnpicklingError("a bare numpy.ndarray class where a value belongs")
    if isinstance(obj, dict):
        return {k: _arrays(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_arrays(v, depth + 1) for v in obj)
    return obj


def load_pickle_checkpoint(path: str | Path) -> dict[str, Any]:
    """A detectron2 model-zoo ``.pkl`` (``{"model": {name: ndarray}, "__author__": ...}``) as ``{"model": tensors}``."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            obj = _arrays(_NumpyOnlyUnpickler(f, encoding="latin1").load())
    except RecursionError:
        raise CheckpointError(f"{path} is not a detectron2 .pkl: its containers nest too deep") from None
    except Exception as e:  # a corrupt pickle raises many types (EOFError, KeyError, UnicodeDecodeError, ...)
        raise CheckpointError(
            f"{path} is not a readable detectron2 .pkl (truncated or corrupt?): {e}"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a dict of weights")
    if "model" in obj and "__author__" in obj:
        weights = obj["model"]
    elif "blobs" in obj:
        raise CheckpointError(
            f"{path} is a Detectron1/Caffe2 .pkl (a 'blobs' dict with Caffe2 names); convert it with "
            "detectron2 or maskrcnn-benchmark first, then import the .pth they save"
        )
    else:
        weights = obj.get("model", obj)
    if not isinstance(weights, dict) or not weights:
        raise CheckpointError(f"{path} holds no weights dict")
    out = {}
    for k, v in weights.items():
        if not isinstance(v, np.ndarray):
            raise CheckpointError(f"{path}: weight {k!r} is a {type(v).__name__}, not an array")
        out[str(k)] = torch.from_numpy(np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("=")))
    return {"model": out}


def check_cell_anchors(stored: Mapping[str, torch.Tensor], model: torch.nn.Module) -> None:
    """Anchors a checkpoint stores (maskrcnn-benchmark's, older detectron2's) must be the config's, else
    the checkpoint was trained with another anchor config."""
    if not stored:
        return
    ours = list(model.rpn.anchor_generator.cell_anchors)
    for key, value in stored.items():
        level = int(key.rsplit(".", 1)[1])
        if (
            level >= len(ours)
            or ours[level].shape != value.shape
            or not torch.allclose(ours[level], value.float(), atol=1e-4)
        ):
            raise CheckpointError(
                f"the checkpoint's anchors ({key}) differ from those of the config's anchor sizes, aspect "
                "ratios and strides: the checkpoint was trained with another config"
            )
