"""Weights file (+ optional config) -> an eval-mode model with its class and keypoint names.

The one place that decides which config a weights file runs with, used by the exporter, the runtime's torch
backend and the evaluation commands alike: ``config_file`` if given, else the config saved in our
checkpoint, else the defaults (torchvision's COCO R-50-FPN Mask R-CNN, so a plain torchvision state dict
needs nothing else). Trailing ``KEY VALUE`` overrides apply last in every case.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn
from yacs.config import CfgNode

from runtime.coco_classes import COCO_PERSON_KEYPOINTS, COCO_TORCHVISION_CLASSES

from .checkpoint import CheckpointError, load_checkpoint_file, load_model_weights
from .config import ConfigError, config_from_yaml_text, load_config, merge_from_list, validate
from .foreign import check_cell_anchors, load_any_config, load_pickle_checkpoint, to_torchvision
from .model import build_model

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    cfg: CfgNode
    model: nn.Module
    class_names: list[str]
    keypoint_names: list[str] | None
    config_source: str  # where the config came from, for messages and metadata


def _resolve_config(
    config_file: str | Path | None, saved_config: str | None, opts: Sequence[str], source: str | None
) -> tuple[CfgNode, str, list[str] | None]:
    """(config, where it came from, class names the config implies): a config file of ours,
    maskrcnn-benchmark's or detectron2's, else the checkpoint's own, else the defaults."""
    if source is not None and not config_file:
        raise ConfigError("--source names the project that wrote --config-file; pass that config file too")
    if config_file:
        imported = load_any_config(config_file, opts, source)
        where = str(config_file) if imported.source == "torchvision" else f"{config_file} ({imported.source})"
        return imported.cfg, where, imported.class_names
    if saved_config:
        cfg = config_from_yaml_text(saved_config)
        cfg.defrost()
        merge_from_list(cfg, list(opts))
        validate(cfg)
        cfg.freeze()
        return cfg, "the checkpoint's saved config", None
    return load_config(None, opts), "the default config (torchvision R-50-FPN Mask R-CNN)", None


def read_weights(path: str | Path) -> dict:
    """A checkpoint as ``{"model": state dict, ...}``: ours, a plain state dict, maskrcnn-benchmark's or
    detectron2's ``.pth``, or detectron2's model-zoo ``.pkl`` (read without arbitrary unpickling)."""
    if Path(path).suffix == ".pkl":
        if not Path(path).is_file():
            raise CheckpointError(f"weights file not found: {path}")
        return load_pickle_checkpoint(path)
    return load_checkpoint_file(path)


def load_weights_into(model: nn.Module, cfg: CfgNode, state: dict, skip_class_heads: bool = False) -> str:
    """Load a state dict in any supported layout into ``model`` built from ``cfg``; returns the layout.

    A foreign checkpoint must come with its own project's config: its names would map onto a model of
    another convention and give wrong detections without any error.
    """
    state, layout, anchors = to_torchvision(state)
    source = cfg.MODEL.SOURCE or "torchvision"
    if layout != "torchvision" and layout != source:
        hint = (
            "pass the config it was trained with (--config-file, e.g. the config.yml/config.yaml beside it)"
        )
        raise CheckpointError(f"the weights are a {layout} checkpoint but the config is {source}'s; {hint}")
    load_model_weights(model, state, skip_class_heads=skip_class_heads)
    check_cell_anchors(anchors, model)
    return layout


def class_names_for(cfg: CfgNode, saved: Sequence[str] | None) -> list[str]:
    """Saved names, COCO's for torchvision's 91-label weights, placeholders otherwise."""
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if saved:
        names = list(saved)
        if len(names) > num_classes:
            raise ConfigError(
                f"the checkpoint names {len(names)} classes but MODEL.ROI_HEADS.NUM_CLASSES is {num_classes}"
            )
        return names + [f"class_{i}" for i in range(len(names), num_classes)]
    if num_classes == len(COCO_TORCHVISION_CLASSES):
        return list(COCO_TORCHVISION_CLASSES)
    return ["__background__"] + [f"class_{i}" for i in range(1, num_classes)]


def keypoint_names_for(cfg: CfgNode, saved: Sequence[str] | None) -> list[str] | None:
    if not cfg.MODEL.KEYPOINT_ON:
        return None
    num = int(cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS)
    if saved and len(saved) == num:
        return list(saved)
    if num == len(COCO_PERSON_KEYPOINTS):
        return list(COCO_PERSON_KEYPOINTS)
    return [f"keypoint_{i}" for i in range(num)]


def load_trained_model(
    weights: str | Path,
    config_file: str | Path | None = None,
    opts: Sequence[str] = (),
    source: str | None = None,
) -> LoadedModel:
    """Build the configured model and load ``weights`` (our checkpoint or a plain torchvision state dict).

    Raises CheckpointError or ConfigError with the user's terms; a plain state dict that doesn't fit the
    default config gets a hint to pass the config it was trained with.
    """
    checkpoint = read_weights(weights)
    saved_config = checkpoint.get("config")
    if not isinstance(saved_config, str):
        saved_config = None  # maskrcnn-benchmark and detectron2 save no config text in the file
    config_names = None
    try:
        cfg, where, config_names = _resolve_config(config_file, saved_config, opts, source)
        try:
            model = build_model(cfg, train=False)
        except ValueError as e:  # build_model's own cross-key checks
            raise ConfigError(f"cannot build the model from {where}: {e}") from None
        load_weights_into(model, cfg, checkpoint["model"])
    except (CheckpointError, ConfigError) as e:
        if config_file or saved_config:
            raise
        raise type(e)(
            f"{e} ({weights} holds no config: pass the one it was trained with, --config-file)"
        ) from None
    model.eval()
    saved_names = checkpoint.get("class_names") or config_names
    return LoadedModel(
        cfg,
        model,
        class_names_for(cfg, saved_names),
        keypoint_names_for(cfg, checkpoint.get("keypoint_names")),
        where,
    )
