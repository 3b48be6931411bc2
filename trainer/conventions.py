"""The box conventions of maskrcnn-benchmark and detectron2 on torchvision's detection modules.

An imported checkpoint is a torchvision ``MaskRCNN`` / ``FasterRCNN`` / ``KeypointRCNN`` whose few
convention-bearing parts are swapped for the ones below, so that its forward (training included) computes
what the source project computes, and ``exporter.wrapper`` reads the same parameters off these modules to
write them into the graph:

- ``PlusOneBoxCoder``: Detectron's box coding, widths ``x2 - x1 + 1`` and ``x2 = ctr + w/2 - 1``;
- ``ConventionAnchorGenerator``: fixed strides per level (the sources use 4..64; torchvision derives a
  stride from the padded size, 61 for the pooled level of an 800-row image) and the source's cell anchors;
- ``ConventionRPN`` / ``ConventionRoIHeads``: clipping to ``size - 1`` and "+1" NMS overlaps and size
  filters under the Detectron convention, and the source's size thresholds (``MIN_SIZE`` keys);
- the pooler's ``aligned`` and "+1" level mapping live in ``trainer.roi_pooling``.

Models of our own configs never use these classes: they stay torchvision's modules, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import boxes as box_ops

from .config import ANCHOR_STYLES


def clip_boxes(boxes: Tensor, size: tuple[int, int], offset: float) -> Tensor:
    """Clip [..., 4] boxes to an (h, w) image: to [0, w] (torchvision, detectron2) or [0, w - 1] (offset 1)."""
    h, w = float(size[0]) - offset, float(size[1]) - offset
    x = boxes[..., 0::2].clamp(min=0, max=w)
    y = boxes[..., 1::2].clamp(min=0, max=h)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def keep_min_size(boxes: Tensor, min_size: float, offset: float) -> Tensor:
    """Indices of [N, 4] boxes whose sides (``x2 - x1 + offset``) are both >= ``min_size``."""
    ws = boxes[:, 2] - boxes[:, 0] + offset
    hs = boxes[:, 3] - boxes[:, 1] + offset
    return torch.where((ws >= min_size) & (hs >= min_size))[0]


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou: float, offset: float) -> Tensor:
    """torchvision's ``batched_nms``; with offset 1 the overlaps and areas count ``x2 - x1 + 1`` pixels.

    Growing x2 and y2 by one pixel makes torchvision's IoU exactly Detectron's "+1" IoU (intersection
    ``min(x2) - max(x1) + 1``, areas ``(w + 1)(h + 1)``); the kept indices are those of the given boxes.
    """
    if offset:
        boxes = boxes + boxes.new_tensor([0.0, 0.0, offset, offset])
    return box_ops.batched_nms(boxes, scores, groups, iou)


class PlusOneBoxCoder(BoxCoder):
    """Detectron's (maskrcnn-benchmark's) box coder: same weights and clamp, widths counted with "+1"."""

    offset = 1.0

    def encode_single(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        wx, wy, ww, wh = (float(v) for v in self.weights)
        ex_w = proposals[:, 2] - proposals[:, 0] + 1.0
        ex_h = proposals[:, 3] - proposals[:, 1] + 1.0
        ex_x = proposals[:, 0] + 0.5 * ex_w
        ex_y = proposals[:, 1] + 0.5 * ex_h
        gt_w = reference_boxes[:, 2] - reference_boxes[:, 0] + 1.0
        gt_h = reference_boxes[:, 3] - reference_boxes[:, 1] + 1.0
        gt_x = reference_boxes[:, 0] + 0.5 * gt_w
        gt_y = reference_boxes[:, 1] + 0.5 * gt_h
        return torch.stack(
            (
                wx * (gt_x - ex_x) / ex_w,
                wy * (gt_y - ex_y) / ex_h,
                ww * torch.log(gt_w / ex_w),
                wh * torch.log(gt_h / ex_h),
            ),
            dim=1,
        )

    def decode_single(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        """[N, 4k] deltas on [N, 4] boxes -> [N, 4k] boxes, ``x2 = ctr + w/2 - 1``."""
        boxes = boxes.to(rel_codes.dtype)
        widths = boxes[:, 2] - boxes[:, 0] + 1.0
        heights = boxes[:, 3] - boxes[:, 1] + 1.0
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights
        wx, wy, ww, wh = self.weights
        dx = rel_codes[:, 0::4] / wx
        dy = rel_codes[:, 1::4] / wy
        dw = torch.clamp(rel_codes[:, 2::4] / ww, max=self.bbox_xform_clip)
        dh = torch.clamp(rel_codes[:, 3::4] / wh, max=self.bbox_xform_clip)
        pred_x = dx * widths[:, None] + ctr_x[:, None]
        pred_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = torch.exp(dw) * widths[:, None]
        pred_h = torch.exp(dh) * heights[:, None]
        x1 = pred_x - 0.5 * pred_w
        y1 = pred_y - 0.5 * pred_h
        x2 = pred_x + 0.5 * pred_w - 1.0
        y2 = pred_y + 0.5 * pred_h - 1.0
        return torch.stack((x1, y1, x2, y2), dim=2).flatten(1)


def box_offset(coder: BoxCoder) -> float:
    """1.0 for the Detectron convention, 0.0 for torchvision's (what clipping, NMS and sizes add)."""
    return float(getattr(coder, "offset", 0.0))


def cell_anchors(style: str, stride: int, sizes: Sequence[float], ratios: Sequence[float]) -> Tensor:
    """[A, 4] anchors of one level centred on its first cell, in the style's rounding; ratio-major (with the
    one size per level the imported configs have, every style's order).

    - "torchvision": centred at 0, half sides rounded (``AnchorGenerator.generate_anchors``);
    - "detectron": Detectron's ``generate_anchors`` as maskrcnn-benchmark runs it: a (0, 0, s-1, s-1)
      base box of the level's stride, sides ``np.round``ed per ratio, then scaled to each size, corners at
      ``ctr -+ (side - 1) / 2`` (so not centred at 0: stride 4, size 32, ratio 0.5 is [-22, -10, 25, 13]);
    - "detectron2": centred at 0, not rounded (``DefaultAnchorGenerator`` with OFFSET 0).
    """
    if style == "torchvision":
        return AnchorGenerator((tuple(sizes),), (tuple(ratios),)).cell_anchors[0]
    rows = []
    for ratio in ratios:
        for size in sizes:
            if style == "detectron2":
                w = math.sqrt(size * size / ratio)
                h = ratio * w
                rows.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
            elif style == "detectron":
                ctr = 0.5 * (stride - 1)
                ws = np.round(np.sqrt(stride * stride / ratio))
                hs = np.round(ws * ratio)
                ws, hs = ws * (size / stride), hs * (size / stride)
                rows.append(
                    [ctr - 0.5 * (ws - 1), ctr - 0.5 * (hs - 1), ctr + 0.5 * (ws - 1), ctr + 0.5 * (hs - 1)]
                )
            else:
                raise ValueError(
                    f"unknown anchor style {style!r}; expected one of {', '.join(ANCHOR_STYLES)}"
                )
    return torch.tensor(rows, dtype=torch.float32)


class ConventionAnchorGenerator(AnchorGenerator):
    """torchvision's generator with given cell anchors and, where given, fixed strides per level."""

    def __init__(self, anchors: Sequence[Tensor], strides: Sequence[int] | None) -> None:
        nn.Module.__init__(self)
        # torchvision's attributes, kept for code that reads them; the cell anchors below are what is used
        self.sizes = tuple((0,) * len(a) for a in anchors)
        self.aspect_ratios = tuple((1.0,) for _ in anchors)
        self.cell_anchors = [a.to(torch.float32) for a in anchors]
        self.strides = None if not strides else tuple(int(s) for s in strides)

    def num_anchors_per_location(self) -> list[int]:
        return [int(a.shape[0]) for a in self.cell_anchors]

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        if self.strides is None:
            return super().forward(image_list, feature_maps)
        if len(self.strides) != len(feature_maps):
            raise ValueError(f"{len(self.strides)} anchor strides for {len(feature_maps)} feature maps")
        device = feature_maps[0].device
        grid_sizes = [f.shape[-2:] for f in feature_maps]
        strides = [[torch.tensor(s, dtype=torch.int64, device=device)] * 2 for s in self.strides]
        self.set_cell_anchors(feature_maps[0].dtype, device)
        anchors = torch.cat(self.grid_anchors(grid_sizes, strides))
        return [anchors for _ in image_list.image_sizes]


class ConventionRPN(RegionProposalNetwork):
    """torchvision's RPN whose proposal filter clips, size-filters and suppresses in the box coder's convention.

    ``min_size`` is the source's: maskrcnn-benchmark keeps ``x2 - x1 + 1 >= 0``, detectron2 ``x2 - x1 > 0``
    (a threshold of the smallest positive float), torchvision ``x2 - x1 >= 1e-3``. ``rank_by_probability``
    picks each level's top-n by sigmoid probability, as maskrcnn-benchmark does: where probabilities tie in
    float32 (saturated logits) the choice among them is then torch's, as in the source. ``nms_on_logits``
    suppresses in logit order, as detectron2 does: logits do not tie where probabilities saturate, so
    every NMS implementation visits the boxes in the same order.
    """

    rank_by_probability: bool = False
    nms_on_logits: bool = False

    def filter_proposals(
        self,
        proposals: Tensor,
        objectness: Tensor,
        image_shapes: list[tuple[int, int]],
        num_anchors_per_level: list[int],
    ) -> tuple[list[Tensor], list[Tensor]]:
        offset = box_offset(self.box_coder)
        num_images = proposals.shape[0]
        objectness = objectness.detach().reshape(num_images, -1)
        level_of = torch.cat(
            [
                torch.full((n,), i, dtype=torch.int64, device=proposals.device)
                for i, n in enumerate(num_anchors_per_level)
            ]
        )
        ranked = torch.sigmoid(objectness) if self.rank_by_probability else objectness
        top = self._get_top_n_idx(ranked, num_anchors_per_level)
        rows = torch.arange(num_images, device=proposals.device)[:, None]
        logits = objectness[rows, top]
        probs = torch.sigmoid(logits)
        levels = level_of[top]
        proposals = proposals[rows, top]
        final_boxes, final_scores = [], []
        for boxes, scores, order, lvl, shape in zip(proposals, probs, logits, levels, image_shapes):
            boxes = clip_boxes(boxes, shape, offset)
            keep = keep_min_size(boxes, self.min_size, offset)
            keep = keep[scores[keep] >= self.score_thresh]
            boxes, scores, order, lvl = boxes[keep], scores[keep], order[keep], lvl[keep]
            by = order if self.nms_on_logits else scores
            keep = batched_nms(boxes, by, lvl, self.nms_thresh, offset)[: self.post_nms_top_n()]
            final_boxes.append(boxes[keep])
            final_scores.append(scores[keep])
        return final_boxes, final_scores


class ConventionRoIHeads(RoIHeads):
    """torchvision's ROI heads whose detection filter uses the box coder's convention and ``min_size``."""

    min_size: float = 1e-2

    def postprocess_detections(
        self,
        class_logits: Tensor,
        box_regression: Tensor,
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        offset = box_offset(self.box_coder)
        num_classes = class_logits.shape[-1]
        counts = [len(p) for p in proposals]
        all_boxes = self.box_coder.decode(box_regression, proposals).split(counts)
        all_scores = torch.softmax(class_logits, -1).split(counts)
        out_boxes, out_scores, out_labels = [], [], []
        for boxes, scores, shape in zip(all_boxes, all_scores, image_shapes):
            boxes = clip_boxes(boxes, shape, offset)[:, 1:].reshape(-1, 4)
            labels = torch.arange(num_classes, device=scores.device).expand_as(scores)[:, 1:].reshape(-1)
            scores = scores[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            keep = keep[keep_min_size(boxes[keep], self.min_size, offset)]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh, offset)[: self.detections_per_img]
            out_boxes.append(boxes[keep])
            out_scores.append(scores[keep])
            out_labels.append(labels[keep])
        return out_boxes, out_scores, out_labels


class BGR255Transform(GeneralizedRCNNTransform):
    """torchvision's training transform for models that read BGR pixels in 0..255 (``INPUT.TO_BGR255``).

    The data sets give RGB in [0, 1], as torchvision's models want; at test time ``runtime.preprocess``
    makes the source's input itself, so this matters to fine-tuning only.
    """

    def normalize(self, image: Tensor) -> Tensor:
        return super().normalize(image[[2, 1, 0]] * 255.0)


def adopt(module: nn.Module, cls: type[nn.Module], **attrs: object) -> None:
    """Make a built torchvision module an instance of our subclass ``cls`` in place, and set ``attrs``.

    torchvision's detectors build their RPN and ROI heads inside their constructors; switching the class
    afterwards keeps every submodule, parameter name and setting, and changes only the overridden methods.
    """
    if not issubclass(cls, type(module)):
        raise TypeError(f"{cls.__name__} does not extend {type(module).__name__}")
    module.__class__ = cls
    for name, value in attrs.items():
        setattr(module, name, value)
