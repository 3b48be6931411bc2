"""Configs and checkpoints of maskrcnn-benchmark and detectron2, imported as our configs and torchvision models.

The one place that recognises where a config or checkpoint comes from (``source_yaml.detect_source``,
``weights.state_dict_layout``), translates the config key by key into ours (``maskrcnn_benchmark``,
``detectron2``), and maps the weights onto torchvision's modules (``weights``). The translated config
records every convention the source needs (``MODEL.SOURCE``, ``MODEL.LEGACY_PLUS_ONE``, ``INPUT.RESIZE``,
...), so after the import the model is an ordinary model of ours: exported, evaluated and fine-tuned by the
same code, with the source's pre- and post-processing reproduced by ``runtime``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from yacs.config import CfgNode

from ..config import (
    _MISSING,
    ConfigError,
    _all_keys,
    _assign,
    _coerce,
    _lookup,
    _parse_literal,
    get_default_config,
    load_config,
    merge_from_list,
    validate,
)
from . import detectron2, maskrcnn_benchmark
from .reader import KeyReader
from .source_yaml import SOURCES, detect_source, flatten, read_with_bases
from .weights import check_cell_anchors, load_pickle_checkpoint, state_dict_layout, to_torchvision

__all__ = [
    "SOURCES",
    "ImportedConfig",
    "check_cell_anchors",
    "load_any_config",
    "load_pickle_checkpoint",
    "state_dict_layout",
    "to_torchvision",
]

_TRANSLATORS = {"maskrcnn-benchmark": maskrcnn_benchmark, "detectron2": detectron2}


@dataclass(frozen=True)
class ImportedConfig:
    cfg: CfgNode
    source: str  # one of SOURCES
    class_names: list[str] | None  # from the config's data sets where known (COCO)
    keypoint_names: list[str] | None


def load_any_config(path: str | Path, opts: Sequence[str] = (), source: str | None = None) -> ImportedConfig:
    """Our config for a YAML file of ours, maskrcnn-benchmark's or detectron2's (``source`` forces which).

    Overrides (``KEY VALUE``) are our keys; a key only the source's config has (say
    ``MODEL.RPN.FPN_POST_NMS_TOP_N_TEST``) is applied to the source's config before the translation.
    """
    if source is not None and source not in SOURCES:
        raise ConfigError(f"unknown --source {source!r}; expected one of {', '.join(SOURCES)}")
    own_keys = set(_all_keys(get_default_config()))
    flat = flatten(read_with_bases(path))
    source = source or detect_source(flat, own_keys, path)
    if source == "torchvision":
        if "_BASE_" in flat:
            raise ConfigError(f"{path}: _BASE_ is detectron2's; pass --source detectron2 if the file is one")
        return ImportedConfig(load_config(path, opts), source, None, None)
    if len(opts) % 2:
        raise ConfigError(f"overrides come as KEY VALUE pairs; {opts[-1]!r} has no value")
    ours_opts: list[str] = []
    for key, value in zip(opts[0::2], opts[1::2]):
        if key in own_keys:
            ours_opts += [key, value]
        else:
            flat[key] = _parse_literal(value)
    translator = _TRANSLATORS[source]
    reader = KeyReader(source, str(path), flat, translator.DEFAULTS)
    values, names, keypoints = translator.translate(reader)
    cfg = get_default_config()
    for key, value in values.items():
        default = _lookup(cfg, key)
        if default is _MISSING:
            raise AssertionError(f"translator bug: {key} is not one of our keys")
        _assign(cfg, key, _coerce(key, value, default, f"the {source} config {path}"))
    merge_from_list(cfg, ours_opts)
    validate(cfg)
    cfg.freeze()
    return ImportedConfig(cfg, source, names, keypoints)
