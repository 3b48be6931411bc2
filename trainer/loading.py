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
from .model import build_model

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    cfg: CfgNode
    model: nn.Module
    class_names: list[str]
    keypoint_names: list[str] | None
    config_source: str  # where the config came from, for messages and metadata


def resolve_config(
    config_file: str | Path | None, saved_config: str | None, opts: Sequence[str]
) -> tuple[CfgNode, str]:
    if config_file:
        return load_config(config_file, opts), str(config_file)
    if saved_config:
        cfg = config_from_yaml_text(saved_config)
        cfg.defrost()
        merge_from_list(cfg, list(opts))
        validate(cfg)
        cfg.freeze()
        return cfg, "the checkpoint's saved config"
    return load_config(None, opts), "the default config (torchvision R-50-FPN Mask R-CNN)"


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
    weights: str | Path, config_file: str | Path | None = None, opts: Sequence[str] = ()
) -> LoadedModel:
    """Build the configured model and load ``weights`` (our checkpoint or a plain torchvision state dict).

    Raises CheckpointError or ConfigError with the user's terms; a plain state dict that doesn't fit the
    default config gets a hint to pass the config it was trained with.
    """
    checkpoint = load_checkpoint_file(weights)
    saved_config = checkpoint.get("config")
    try:
        cfg, source = resolve_config(config_file, saved_config, opts)
        try:
            model = build_model(cfg, train=False)
        except ValueError as e:  # build_model's own cross-key checks
            raise ConfigError(f"cannot build the model from {source}: {e}") from None
        load_model_weights(model, checkpoint["model"])
    except (CheckpointError, ConfigError) as e:
        if config_file or saved_config:
            raise
        raise type(e)(
            f"{e} ({weights} holds no config: pass the one it was trained with, --config-file)"
        ) from None
    model.eval()
    return LoadedModel(
        cfg,
        model,
        class_names_for(cfg, checkpoint.get("class_names")),
        keypoint_names_for(cfg, checkpoint.get("keypoint_names")),
        source,
    )
