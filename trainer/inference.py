"""Run a torchvision detection model up to, not through, its own post-processing.

torchvision's ``forward`` resizes, runs, then rescales boxes and pastes masks itself. We stop before its
``transform.postprocess`` and hand :class:`RawDetections` (network-input pixels, M x M mask probabilities) to
``runtime.postprocess``: the same host-side post-processing the ONNX and TensorRT backends use, so every
backend is compared on equal terms and mask pasting exists once.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList
from yacs.config import CfgNode

from runtime.preprocess import PreprocessedBatch, PreprocessParams
from runtime.structures import RawDetections


def preprocess_params(cfg: CfgNode) -> PreprocessParams:
    """The runtime's pre-processing parameters equivalent to the model's own transform at test time."""
    return PreprocessParams(
        min_size=cfg.INPUT.MIN_SIZE_TEST,
        max_size=cfg.INPUT.MAX_SIZE_TEST,
        pixel_mean=tuple(cfg.INPUT.PIXEL_MEAN),
        pixel_std=tuple(cfg.INPUT.PIXEL_STD),
        size_divisibility=cfg.DATALOADER.SIZE_DIVISIBILITY,
    )


def _to_raw(det: dict[str, torch.Tensor]) -> RawDetections:
    masks = det.get("masks")
    keypoints = det.get("keypoints")
    if keypoints is not None:
        kp_scores = det["keypoints_scores"]
        keypoints = torch.cat([keypoints[..., :2], kp_scores[..., None]], dim=-1)
    return RawDetections(
        boxes=det["boxes"].float().cpu().numpy(),
        scores=det["scores"].float().cpu().numpy(),
        labels=det["labels"].cpu().numpy().astype(np.int64),
        masks=None if masks is None else masks[:, 0].float().cpu().numpy(),
        keypoints=None if keypoints is None else keypoints.float().cpu().numpy(),
    )


@torch.no_grad()
def raw_forward(
    model: nn.Module, images: torch.Tensor, image_sizes: list[tuple[int, int]]
) -> list[RawDetections]:
    """Backbone, RPN and ROI heads on an already pre-processed batch (the ONNX contract's inputs)."""
    image_list = ImageList(images, [(int(h), int(w)) for h, w in image_sizes])
    features = model.backbone(images)
    proposals, _ = model.rpn(image_list, features)
    detections, _ = model.roi_heads(features, proposals, image_list.image_sizes)
    return [_to_raw(d) for d in detections]


def raw_forward_batch(
    model: nn.Module, batch: PreprocessedBatch, device: torch.device | str = "cpu"
) -> list[RawDetections]:
    images = torch.from_numpy(batch.images).to(device)
    return raw_forward(model, images, [tuple(s) for s in batch.image_sizes.tolist()])
