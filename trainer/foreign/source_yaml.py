"""Reading another project's YAML config as its own loader would: ``_BASE_`` files, tuple strings, flat keys.

detectron2 configs inherit with ``_BASE_: "../Base-RCNN-FPN.yaml"`` (relative to the file, recursively,
the child's keys winning); maskrcnn-benchmark's write tuples as strings (``ANCHOR_STRIDE: (4, 8, 16, 32, 64)``)
that yacs ``literal_eval``s. Both projects' full dumps use YAML anchors and aliases, which ``safe_load``
resolves. The result is one flat ``{"MODEL.RPN.NMS_THRESH": 0.7, ...}`` mapping the translators read.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from ..config import ConfigError, read_yaml_mapping

SOURCES = ("maskrcnn-benchmark", "detectron2", "torchvision")

#: keys only maskrcnn-benchmark writes (any one identifies it)
_MRB_MARKERS = (
    "MODEL.RPN.USE_FPN",
    "MODEL.ROI_HEADS.USE_FPN",
    "MODEL.RESNETS.BACKBONE_OUT_CHANNELS",
    "MODEL.RESNETS.TRANS_FUNC",
    "MODEL.RESNETS.STEM_FUNC",
    "MODEL.BACKBONE.FREEZE_CONV_BODY_AT",
    "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR",
    "MODEL.ROI_BOX_HEAD.PREDICTOR",
    "MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR",
    "MODEL.RPN_ONLY",
    "MODEL.RETINANET_ON",
    "MODEL.CLS_AGNOSTIC_BBOX_REG",
    "MODEL.ROI_HEADS.DETECTIONS_PER_IMG",
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST",
    "PATHS_CATALOG",
    "AMP_VERBOSE",
    "DTYPE",
)
#: keys only detectron2 writes
_D2_MARKERS = (
    "_BASE_",
    "VERSION",
    "MODEL.WEIGHTS",
    "MODEL.PIXEL_MEAN",
    "MODEL.PIXEL_STD",
    "MODEL.BACKBONE.NAME",
    "MODEL.BACKBONE.FREEZE_AT",
    "MODEL.RESNETS.DEPTH",
    "MODEL.RESNETS.OUT_FEATURES",
    "MODEL.FPN.IN_FEATURES",
    "MODEL.ROI_HEADS.NAME",
    "MODEL.ROI_HEADS.IN_FEATURES",
    "MODEL.ROI_BOX_HEAD.NAME",
    "MODEL.ROI_MASK_HEAD.NAME",
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "MODEL.RPN.IN_FEATURES",
    "INPUT.FORMAT",
    "TEST.DETECTIONS_PER_IMAGE",
)


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in child.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_with_bases(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's mapping with its ``_BASE_`` chain merged underneath (detectron2's inheritance)."""
    path = Path(path).expanduser()
    if path.resolve() in _chain:
        raise ConfigError(f"config file {path} inherits from itself through _BASE_")
    data = read_yaml_mapping(path)
    base = data.pop("_BASE_", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"_BASE_ in {path} must be a file name, not {base!r}")
    if base.startswith(("http://", "https://")):
        raise ConfigError(
            f"_BASE_ {base!r} in {path} is a URL; download it next to the config and name the file"
        )
    base_path = Path(base).expanduser()
    if not base_path.is_absolute():
        base_path = path.parent / base_path
    if not base_path.is_file():
        raise ConfigError(
            f"the _BASE_ config {base!r} named by {path} does not exist (looked for {base_path}); "
            "copy the base files of the project's configs/ folder next to your config, keeping their layout"
        )
    merged = _merge(read_with_bases(base_path, (*_chain, path.resolve())), data)
    merged["_BASE_"] = base  # kept, so the source is still recognisable
    return merged


def _literal(value: Any) -> Any:
    """yacs reads strings that look like Python literals ("(4, 8)", "1e-3") as those literals."""
    if isinstance(value, str) and value.strip()[:1] in "([{-0123456789.":
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"MODEL": {"RPN": {"NMS_THRESH": 0.7}}}`` -> ``{"MODEL.RPN.NMS_THRESH": 0.7}``."""
    flat: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            flat.update(flatten(v, key + "."))
        else:
            flat[key] = _literal(v)
    return flat


def detect_source(flat: dict[str, Any], known_own_keys: set[str], path: str | Path) -> str:
    """Which project wrote a config, by the keys only that project writes.

    A file with keys of neither is taken to be ours ("torchvision"), so that a typo in one of our configs
    gets our own "unknown config key ... did you mean" message.
    """
    keys = set(flat)
    if keys <= known_own_keys:
        return "torchvision"
    mrb = sorted(k for k in _MRB_MARKERS if k in keys)
    d2 = sorted(k for k in _D2_MARKERS if k in keys)
    if mrb and d2:
        raise ConfigError(
            f"cannot tell which project wrote {path} (maskrcnn-benchmark keys {mrb[:3]} and detectron2 keys "
            f"{d2[:3]}); pass --source maskrcnn-benchmark|detectron2|torchvision"
        )
    if mrb:
        return "maskrcnn-benchmark"
    return "detectron2" if d2 else "torchvision"
