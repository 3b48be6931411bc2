"""Checkpoints for the exporter tests: seeded random-init models (no training, no download).

Random init with a low ROI score threshold gives every image the full K detections, which exercises NMS,
top-K and masks harder than a briefly trained model would.
"""

from __future__ import annotations

from pathlib import Path

import torch

from trainer.config import load_config
from trainer.model import build_model

REPO = Path(__file__).resolve().parents[1]
SHAPES_CONFIG = REPO / "configs" / "shapes_mask_rcnn_R_18_FPN.yaml"
#: small inputs keep every export and verification in seconds
SHAPES_OPTS = ["MODEL.ROI_HEADS.SCORE_THRESH", "0.01", "INPUT.MIN_SIZE_TEST", "192", "INPUT.MAX_SIZE_TEST", "320",
               "TEST.DETECTIONS_PER_IMG", "30"]  # fmt: skip
#: the shapes config as a Keypoint R-CNN: the shapes data has 4 keypoints per object; a narrow keypoint head
KEYPOINT_OPTS = ["MODEL.MASK_ON", "False", "MODEL.KEYPOINT_ON", "True", "MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS", "4",
                 "MODEL.ROI_KEYPOINT_HEAD.CONV_LAYERS", "(64, 64)"]  # fmt: skip
SHAPES_CLASSES = ["__background__", "square", "circle", "triangle", "star", "ring"]


def save_shapes_checkpoint(path: Path, opts: list[str] | None = None) -> Path:
    """Our checkpoint format (state dict + config + class names) of a seeded random-init shapes model."""
    torch.manual_seed(0)
    cfg = load_config(SHAPES_CONFIG, SHAPES_OPTS if opts is None else opts)
    model = build_model(cfg)
    torch.save({"model": model.state_dict(), "config": cfg.dump(), "class_names": SHAPES_CLASSES}, path)
    return path


def save_r50_state_dict(path: Path, seed: int = 0) -> Path:
    """A plain torchvision-style state dict of a seeded random-init R-50-FPN Mask R-CNN."""
    torch.manual_seed(seed)
    torch.save(build_model(load_config(None, [])).state_dict(), path)
    return path
