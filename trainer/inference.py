"""Run a torchvision detection model up to, not through, its own post-processing.

torchvision's ``forward`` resizes, runs, then rescales boxes and pastes masks itself. We stop before its
``transform.postprocess`` and hand :class:`RawDetections` (network-input pixels, M x M mask probabilities) to
``runtime.postprocess``: the same host-side post-processing the ONNX and TensorRT backends use, so every
backend is compared on equal terms and mask pasting exists once. Keypoints likewise: the model's own
keypoint heatmaps are decoded by ``runtime.postprocess.heatmaps_to_keypoints``, the decoding every exported
model's outputs go through, not by torchvision's copy of it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList
from yacs.config import CfgNode

from runtime.postprocess import heatmaps_to_keypoints
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
        input_format="BGR" if cfg.INPUT.TO_BGR255 else "RGB",
        pixel_range=255.0 if cfg.INPUT.TO_BGR255 else 1.0,
        resize=cfg.INPUT.RESIZE,
    )


def _to_raw(
    det: dict[str, torch.Tensor], heatmaps: torch.Tensor | None, output_convention: str
) -> RawDetections:
    masks = det.get("masks")
    boxes = det["boxes"].float().cpu().numpy()
    return RawDetections(
        boxes=boxes,
        scores=det["scores"].float().cpu().numpy(),
        labels=det["labels"].cpu().numpy().astype(np.int64),
        masks=None if masks is None else masks[:, 0].float().cpu().numpy(),
        keypoints=None
        if heatmaps is None
        else heatmaps_to_keypoints(heatmaps.float().cpu().numpy(), boxes, output_convention),
    )


def _keypoint_heatmaps(
    model: nn.Module, run: Callable[[], list[dict[str, torch.Tensor]]]
) -> tuple[list[dict[str, torch.Tensor]], list[torch.Tensor | None]]:
    """``run()``'s detections and each image's keypoint logits [N, NK, S, S] (None without a keypoint head).

    The logits are captured at the keypoint predictor's output; torchvision's own decoding of them is
    ignored, so keypoints come from the one decoding all backends share.
    """
    predictor = getattr(model.roi_heads, "keypoint_predictor", None)
    if predictor is None:
        detections = run()
        return detections, [None] * len(detections)
    captured: list[torch.Tensor] = []
    handle = predictor.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        detections = run()
    finally:
        handle.remove()
    counts = [len(d["boxes"]) for d in detections]
    if len(captured) != 1 or captured[0].shape[0] != sum(counts):  # torchvision changed its keypoint branch
        shapes = [tuple(c.shape) for c in captured]
        raise RuntimeError(f"expected one keypoint predictor call for {sum(counts)} detections, got {shapes}")
    return detections, list(captured[0].split(counts))


@torch.no_grad()
def raw_forward(
    model: nn.Module,
    images: torch.Tensor,
    image_sizes: list[tuple[int, int]],
    output_convention: str = "torchvision",
) -> list[RawDetections]:
    """Backbone, RPN and ROI heads on an already pre-processed batch (the ONNX contract's inputs);
    keypoints decoded in the model's ``output_convention`` (``runtime.postprocess``)."""
    image_list = ImageList(images, [(int(h), int(w)) for h, w in image_sizes])
    features = model.backbone(images)
    proposals, _ = model.rpn(image_list, features)
    detections, heatmaps = _keypoint_heatmaps(
        model, lambda: model.roi_heads(features, proposals, image_list.image_sizes)[0]
    )
    return [_to_raw(d, h, output_convention) for d, h in zip(detections, heatmaps)]


def raw_forward_batch(
    model: nn.Module,
    batch: PreprocessedBatch,
    device: torch.device | str = "cpu",
    output_convention: str = "torchvision",
) -> list[RawDetections]:
    images = torch.from_numpy(batch.images).to(device)
    return raw_forward(model, images, [tuple(s) for s in batch.image_sizes.tolist()], output_convention)
