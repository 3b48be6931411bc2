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


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, numbers, strings and numpy arrays; refuses every other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a weights file holds arrays only"
            )
        if module.startswith("numpy.core."):  # written by numpy 1, read by numpy 2
            module = "numpy._core." + module[len("numpy.core.") :] if hasattr(np, "_core") else module
        return super().find_class(module, name)


def load_pickle_checkpoint(path: str | Path) -> dict[str, Any]:
    """A detectron2 model-zoo ``.pkl`` (``{"model": {name: ndarray}, "__author__": ...}``) as ``{"model": tensors}``."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
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
        out[str(k)] = torch.from_numpy(np.ascontiguousarray(v))
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
