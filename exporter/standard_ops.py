"""The two detection ops of ``runtime.plugins.spec`` written with torch ops that trace to standard ONNX.

This is the ``ort`` flavor of multi-level ROIAlign and batched NMS, and also the eager computation behind
the ``trt`` flavor's plugin nodes (so tracing either flavor runs the same numbers). Everything is batched:
one ``NonMaxSuppression`` node handles every image and class at once (boxes [B, N, 4], scores [B, C, N]),
where torchvision's graph runs one NMS over ~90k coordinate-offset boxes; results are fixed-size, padded
per the plugin spec, so nothing downstream depends on how many detections an image has.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torchvision
from torch import Tensor

from runtime.plugins.spec import BatchedNmsAttrs, MultiLevelRoiAlignAttrs


class NmsResult(NamedTuple):
    """``MRD_BatchedNms``'s outputs, in its order and dtypes."""

    num_detections: Tensor  # [B] int32
    boxes: Tensor  # [B, K, 4]
    scores: Tensor  # [B, K]
    classes: Tensor  # [B, K] int32, -1 in padding
    indices: Tensor  # [B, K] int32, -1 in padding


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (natively batched); the eager forward gives the same selected indices."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: object,
        boxes: Tensor,
        scores: Tensor,
        max_per_class: int,
        iou_threshold: float,
        score_threshold: float,
    ) -> Tensor:
        selected = []
        for b in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                s = scores[b, c]
                cand = torch.nonzero(s > score_threshold).flatten()
                keep = cand[torchvision.ops.nms(boxes[b, cand], s[cand], iou_threshold)[:max_per_class]]
                rows = torch.stack([torch.full_like(keep, b), torch.full_like(keep, c), keep], dim=1)
                selected.append(rows)
        return torch.cat(selected) if selected else torch.zeros((0, 3), dtype=torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou_threshold, score_threshold):  # type: ignore[no-untyped-def]
        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            g.op("Constant", value_t=torch.tensor([max_per_class], dtype=torch.int64)),
            g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32)),
        )


def roi_levels(rois: Tensor, attrs: MultiLevelRoiAlignAttrs) -> Tensor:
    """FPN level index of each [R, 4] roi: torchvision's ``LevelMapper`` (the plugin spec's formula).

    With ``attrs.legacy_plus_one`` the area is (x2 - x1 + 1) * (y2 - y1 + 1) (maskrcnn-benchmark). The +1 is
    decided in Python at trace time, so the default traces to exactly the graph it always did.
    """
    k_min = round(-math.log2(attrs.spatial_scales[0]))
    k_max = round(-math.log2(attrs.spatial_scales[-1]))
    widths = rois[:, 2] - rois[:, 0]
    heights = rois[:, 3] - rois[:, 1]
    if attrs.legacy_plus_one:
        widths = widths + 1
        heights = heights + 1
    area = widths * heights
    target = torch.floor(
        attrs.canonical_level + torch.log2(torch.sqrt(area) / attrs.canonical_box_size) + 1e-6
    )
    return torch.clamp(target, min=k_min, max=k_max).to(torch.int64) - k_min


def multilevel_roi_align(rois: Tensor, features: Sequence[Tensor], attrs: MultiLevelRoiAlignAttrs) -> Tensor:
    """rois [B, R, 4] -> pooled [B*R, C, h, w]: each roi pooled once, on its own level.

    Rois are split per level with NonZero, pooled with ONNX RoiAlign, and put back in order by gathering
    through the inverse permutation (a 1-D scatter of indices, not of feature maps).
    """
    if len(features) != len(attrs.spatial_scales):
        raise ValueError(f"{len(features)} feature maps but {len(attrs.spatial_scales)} spatial scales")
    flat = rois.reshape(-1, 4)
    batch_index = torch.arange(rois.shape[0]).to(rois.dtype)[:, None].expand(-1, rois.shape[1]).reshape(-1, 1)
    levels = roi_levels(flat, attrs)
    order, pooled = [], []
    for level, (feature, scale) in enumerate(zip(features, attrs.spatial_scales)):
        idx = torch.nonzero(levels == level).flatten()
        level_rois = torch.cat([batch_index[idx], flat[idx]], dim=1)
        pooled.append(
            torchvision.ops.roi_align(
                feature,
                level_rois,
                (attrs.output_height, attrs.output_width),
                spatial_scale=float(scale),
                sampling_ratio=attrs.sampling_ratio,
                aligned=bool(attrs.aligned),
            )
        )
        order.append(idx)
    if len(features) == 1:
        return pooled[0]
    order_all = torch.cat(order)
    inverse = torch.zeros_like(order_all).scatter(0, order_all, torch.arange(order_all.shape[0]))
    return torch.cat(pooled)[inverse]


def batched_nms(boxes: Tensor, scores: Tensor, attrs: BatchedNmsAttrs) -> NmsResult:
    """``MRD_BatchedNms``: boxes [B, N, 4] or [B, N, C, 4], scores [B, N, C] -> fixed-size padded results."""
    if attrs.pre_nms_top_k > 0:
        raise NotImplementedError("pre_nms_top_k is not used by the exporter's graphs")
    batch, num_boxes, num_classes = scores.shape[0], scores.shape[1], scores.shape[2]
    per_class = boxes.dim() == 4
    if per_class:
        widths = boxes[..., 2] - boxes[..., 0]  # [B, N, C]
        heights = boxes[..., 3] - boxes[..., 1]
    else:
        widths = (boxes[..., 2] - boxes[..., 0])[..., None]  # [B, N, 1]
        heights = (boxes[..., 3] - boxes[..., 1])[..., None]
    candidate = (
        (scores > attrs.score_threshold) & (widths >= attrs.min_box_size) & (heights >= attrs.min_box_size)
    )
    if attrs.background_class >= 0:
        not_background = torch.arange(scores.shape[2]) != attrs.background_class
        candidate = candidate & not_background
    neg_inf = float("-inf")
    masked = torch.where(candidate, scores, neg_inf)  # [B, N, C]
    k = attrs.keep_top_k
    if per_class:  # every (image, class) pair is one NMS "batch" of its own boxes
        nms_boxes = boxes.permute(0, 2, 1, 3).reshape(-1, num_boxes, 4)  # [B*C, N, 4]
        nms_scores = masked.permute(0, 2, 1).reshape(-1, 1, num_boxes)  # [B*C, 1, N]
    else:
        nms_boxes = boxes
        nms_scores = masked.permute(0, 2, 1)  # [B, C, N]
    selected = _NonMaxSuppression.apply(nms_boxes, nms_scores, k, attrs.iou_threshold, attrs.score_threshold)
    # flat position of each kept (b, c, n) in a [B, C, N] grid; identical for both layouts above
    flat_kept = (selected[:, 0] * nms_scores.shape[1] + selected[:, 1]) * num_boxes + selected[:, 2]
    kept = torch.zeros_like(masked, dtype=torch.bool).permute(0, 2, 1).reshape(-1)
    kept = kept.scatter(0, flat_kept, torch.ones_like(flat_kept, dtype=torch.bool))
    kept = kept.reshape(batch, num_classes, num_boxes).permute(0, 2, 1)  # [B, N, C]
    # Rank in (n, c) order so equal scores keep ascending flat index n * C + c (TopK is stable on ties).
    ranked = torch.where(kept, masked, neg_inf).reshape(batch, -1)
    ranked = torch.cat(
        [ranked, torch.full_like(ranked[:, :1], neg_inf).expand(-1, k)], dim=1
    )  # TopK needs k <= N * C
    top_scores, top_index = torch.topk(ranked, k, dim=1)
    valid = top_scores > neg_inf
    top_index = torch.where(valid, top_index, torch.zeros_like(top_index))
    box_index = top_index // num_classes
    class_index = top_index % num_classes
    if per_class:
        gathered = boxes.reshape(batch, -1, 4).gather(1, top_index[..., None].expand(-1, -1, 4))
    else:
        gathered = boxes.gather(1, box_index[..., None].expand(-1, -1, 4))
    minus_one = torch.full_like(top_index, -1)
    return NmsResult(
        num_detections=valid.sum(dim=1).to(torch.int32),
        boxes=torch.where(valid[..., None], gathered, torch.zeros_like(gathered)),
        scores=torch.where(valid, top_scores, torch.zeros_like(top_scores)),
        classes=torch.where(valid, class_index, minus_one).to(torch.int32),
        indices=torch.where(valid, box_index, minus_one).to(torch.int32),
    )
