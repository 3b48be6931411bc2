"""An export-friendly view of a trained torchvision detector, computing its eval detections as a graph.

torchvision's eval forward loops over images in Python, sizes tensors by how many boxes survive, runs one
NMS over every class with coordinate offsets and pastes masks per detection; traced, that is a slow graph
whose sizes are frozen at the export example. This module reuses the model's own layers (backbone, RPN
head, box coder, ROI heads) and re-expresses only the glue for a graph:

- anchors come from the feature maps' shapes in the graph, so H and W are really dynamic;
- every stage works on the whole batch with fixed-size padded tensors (top-k per level padded with -inf,
  NMS results padded to ``keep_top_k``); padding is carried as invalid scores, so it never becomes a
  detection;
- NMS is one batched node per stage (RPN: classes = FPN levels; box head: classes = object classes);
- the per-detection heads (masks, keypoints) run, in the ``ort`` flavor, on the first ``max(num_detections)``
  slots only and the rest is zero-filled: a trained model keeps a few detections of its K slots, and the
  mask head on padding was most of its ROI-head time on the CPU. The ``trt`` flavor keeps every slot (a
  fixed shape, with no data-dependent size for TensorRT to plan around);
- masks stop at per-box M x M probabilities (pasting is ``runtime.postprocess``'s job), and keypoints at
  per-box NK x S x S heatmap logits: torchvision decodes them by resizing each heatmap to its box's size,
  a data-dependent shape no fixed grid reproduces exactly, so ``runtime.postprocess.heatmaps_to_keypoints``
  decodes them on the host for every backend (PyTorch included).

The two detection ops come from ``exporter.standard_ops`` (``ort`` flavor) or ``exporter.plugin_nodes``
(``trt`` flavor).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torchvision.models.detection import KeypointRCNN, MaskRCNN
from torchvision.ops.poolers import MultiScaleRoIAlign

from exporter import plugin_nodes, standard_ops
from exporter.standard_ops import NmsResult
from runtime.plugins.spec import BatchedNmsAttrs, MultiLevelRoiAlignAttrs
from trainer.conventions import box_offset

#: RPN NMS scores outside an roi's own level column: below every probability, and below every logit a
#: network produces while still finite in float16
NOT_THIS_LEVEL_PROB = -1.0
NOT_THIS_LEVEL_LOGIT = -60000.0
#: the box head's small-box threshold, hard-coded in torchvision (its RPN's is the module's min_size)
BOX_MIN_BOX_SIZE = 1e-2


class DetectionOps(Protocol):
    def multilevel_roi_align(
        self, rois: Tensor, features: Sequence[Tensor], attrs: MultiLevelRoiAlignAttrs
    ) -> Tensor: ...

    def batched_nms(self, boxes: Tensor, scores: Tensor, attrs: BatchedNmsAttrs) -> NmsResult: ...


def ops_for_flavor(flavor: str) -> DetectionOps:
    if flavor == "ort":
        return standard_ops  # type: ignore[return-value]
    if flavor == "trt":
        return plugin_nodes  # type: ignore[return-value]
    raise ValueError(f"unknown flavor {flavor!r}; expected 'ort' or 'trt'")


def _pooler_attrs(pooler: MultiScaleRoIAlign, spatial_scales: Sequence[float]) -> MultiLevelRoiAlignAttrs:
    """The plugin spec's attributes of a pooler (``aligned`` and "+1" levels from imported checkpoints)."""
    size = pooler.output_size
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return MultiLevelRoiAlignAttrs(
        output_height=h,
        output_width=w,
        sampling_ratio=int(pooler.sampling_ratio),
        aligned=int(bool(getattr(pooler, "aligned", False))),
        legacy_plus_one=int(bool(getattr(pooler, "legacy_plus_one", False))),
        spatial_scales=tuple(float(s) for s in spatial_scales),
        canonical_box_size=int(getattr(pooler, "canonical_scale", 224)),
        canonical_level=int(getattr(pooler, "canonical_level", 4)),
    )


def infer_spatial_scales(model: nn.Module, pooler: MultiScaleRoIAlign, size: int = 512) -> list[float]:
    """Scales of the pooled FPN levels, as torchvision infers them (2^round(log2(feature / image)))."""
    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, 3, size, size))
    return [2.0 ** round(math.log2(feats[name].shape[-2] / size)) for name in pooler.featmap_names]


class ExportableDetector(nn.Module):
    """``forward(images [B,3,H,W], image_sizes [B,2] int64)`` -> the ONNX contract's outputs, in order."""

    def __init__(self, model: nn.Module, flavor: str = "ort") -> None:
        super().__init__()
        self.model = model.eval()
        self.ops = ops_for_flavor(flavor)
        self.flavor = flavor
        rpn, heads = model.rpn, model.roi_heads
        self.has_masks = isinstance(model, MaskRCNN) and heads.has_mask()
        self.has_keypoints = isinstance(model, KeypointRCNN) and heads.has_keypoint()
        self.box_names = list(heads.box_roi_pool.featmap_names)
        self.box_attrs = _pooler_attrs(heads.box_roi_pool, infer_spatial_scales(model, heads.box_roi_pool))
        if self.has_masks:
            self.mask_names = list(heads.mask_roi_pool.featmap_names)
            self.mask_attrs = _pooler_attrs(
                heads.mask_roi_pool, infer_spatial_scales(model, heads.mask_roi_pool)
            )
        if self.has_keypoints:
            self.keypoint_feature_names = list(heads.keypoint_roi_pool.featmap_names)
            self.keypoint_attrs = _pooler_attrs(
                heads.keypoint_roi_pool, infer_spatial_scales(model, heads.keypoint_roi_pool)
            )
        # the box convention of imported checkpoints (trainer.conventions): 1 for Detectron's "+1" boxes
        self.box_offset = box_offset(heads.box_coder)
        anchor_strides = getattr(rpn.anchor_generator, "strides", None)
        self.anchor_strides = None if anchor_strides is None else tuple(int(v) for v in anchor_strides)
        self.rank_by_probability = bool(getattr(rpn, "rank_by_probability", False))
        self.nms_on_logits = bool(getattr(rpn, "nms_on_logits", False))
        if self.nms_on_logits and self.rank_by_probability:
            raise NotImplementedError("an RPN that ranks by probability but suppresses by logits")
        self.pre_nms_top_n = int(rpn._pre_nms_top_n["testing"])
        self.post_nms_top_n = int(rpn._post_nms_top_n["testing"])
        self.rpn_score_thresh = float(rpn.score_thresh)
        self.rpn_nms = BatchedNmsAttrs(
            # scores are sigmoid probabilities (>= 0; logits for detectron2's) in the roi's level column and
            # NOT_THIS_LEVEL elsewhere
            score_threshold=NOT_THIS_LEVEL_LOGIT / 2 if self.nms_on_logits else NOT_THIS_LEVEL_PROB / 2,
            iou_threshold=float(rpn.nms_thresh),
            min_box_size=float(rpn.min_size),
            pre_nms_top_k=-1,
            keep_top_k=self.post_nms_top_n,
            background_class=-1,
        )
        self.box_nms = BatchedNmsAttrs(
            score_threshold=float(heads.score_thresh),
            iou_threshold=float(heads.nms_thresh),
            min_box_size=float(getattr(heads, "min_size", BOX_MIN_BOX_SIZE)),
            pre_nms_top_k=-1,
            keep_top_k=int(heads.detections_per_img),
            background_class=0,
        )
        for i, base in enumerate(rpn.anchor_generator.cell_anchors):
            self.register_buffer(f"cell_anchors_{i}", base.to(torch.float32), persistent=False)
        self.num_rpn_levels = len(rpn.anchor_generator.cell_anchors)
        if flavor == "trt":
            self._check_plugin_attrs()
        self.eval()

    def _check_plugin_attrs(self) -> None:
        """The plugins' own checks of this model's attributes, at export rather than at the first run (an
        MNV3-FPN pools two levels of one stride, which the multi-level ROIAlign plugin cannot map)."""
        from runtime.plugins.library import PluginCallError, PluginLibraryNotFound
        from runtime.plugins.reference import check_nms_attrs, check_roi_align_attrs

        pooled = [self.box_attrs]
        pooled += [self.mask_attrs] if self.has_masks else []
        pooled += [self.keypoint_attrs] if self.has_keypoints else []
        try:
            for attrs in pooled:
                check_roi_align_attrs(attrs)
            for nms in (self.rpn_nms, self.box_nms):
                check_nms_attrs(nms)
        except PluginLibraryNotFound:
            return  # not built here: the loader checks the same where the file runs
        except (PluginCallError, ValueError) as e:
            raise NotImplementedError(
                f"the trt flavor's plugins cannot run this model ({e}); export the ort flavor instead"
            ) from None

    def train(self, mode: bool = True) -> ExportableDetector:
        """Always eval: torch.onnx.export restores the caller's mode, which would put the model in training."""
        return super().train(False)

    @property
    def detections_per_image(self) -> int:
        return self.box_nms.keep_top_k

    @property
    def mask_size(self) -> int | None:
        if not self.has_masks:
            return None
        return 2 * self.mask_attrs.output_height  # the mask predictor upsamples 2x

    @property
    def num_keypoints(self) -> int | None:
        if not self.has_keypoints:
            return None
        return int(self.model.roi_heads.keypoint_predictor.kps_score_lowres.out_channels)

    @property
    def heatmap_size(self) -> int | None:
        if not self.has_keypoints:
            return None
        # the predictor's stride-2 transposed conv, then its ``up_scale`` interpolation
        return 2 * int(self.model.roi_heads.keypoint_predictor.up_scale) * self.keypoint_attrs.output_height

    def forward(self, images: Tensor, image_sizes: Tensor) -> tuple[Tensor, ...]:
        features = self.model.backbone(images)
        feature_list = list(features.values())
        proposals, proposal_valid = self.proposals(images, image_sizes, feature_list)
        dets = self.detect(features, proposals, proposal_valid, image_sizes)
        outputs = [dets.num_detections.to(torch.int64), dets.boxes, dets.scores, dets.classes.to(torch.int64)]
        if self.has_masks:
            outputs.append(self.masks(features, dets))
        if self.has_keypoints:
            outputs.append(self.keypoint_heatmaps(features, dets))
        return tuple(outputs)

    def anchors(self, images: Tensor, feature: Tensor, level: int) -> Tensor:
        """[H_l*W_l*A, 4] anchors of one level, ordered (y, x, anchor) like torchvision's generator.

        The stride is ``padded image size // feature size`` as torchvision computes it (not 2^level: the
        max-pooled level of an 800-row image is 13 rows, stride 61).
        """
        base = getattr(self, f"cell_anchors_{level}")
        grid_h, grid_w = feature.shape[-2], feature.shape[-1]
        if self.anchor_strides is not None:  # imported checkpoints: the source's fixed stride per level
            stride_h = stride_w = self.anchor_strides[level]
        else:
            stride_h = images.shape[-2] // grid_h
            stride_w = images.shape[-1] // grid_w
        shift_x = (torch.arange(grid_w) * stride_w).to(torch.float32)
        shift_y = (torch.arange(grid_h) * stride_h).to(torch.float32)
        sy, sx = torch.meshgrid(shift_y, shift_x, indexing="ij")
        sx, sy = sx.reshape(-1), sy.reshape(-1)
        shifts = torch.stack((sx, sy, sx, sy), dim=1)
        return (shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)

    def proposals(self, images: Tensor, image_sizes: Tensor, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """RPN: per-level top-k, decode, clip, per-level NMS, post-NMS top-n -> ([B, R, 4], valid [B, R])."""
        rpn = self.model.rpn
        objectness, deltas = rpn.head(features)
        neg_inf = float("-inf")
        boxes_l, logits_l = [], []
        for level, (obj, delta) in enumerate(zip(objectness, deltas)):
            batch, num_anchors = obj.shape[0], obj.shape[1]
            logits = obj.permute(0, 2, 3, 1).reshape(batch, -1)  # (y, x, anchor) order
            delta = delta.reshape(batch, num_anchors, 4, delta.shape[-2], delta.shape[-1])
            delta = delta.permute(0, 3, 4, 1, 2).reshape(batch, -1, 4)
            # ranked by logits, or by probabilities (>= 0) as maskrcnn-benchmark ranks them
            rank, pad = (torch.sigmoid(logits), -1.0) if self.rank_by_probability else (logits, neg_inf)
            # pad so top-k is valid on levels with fewer anchors than pre_nms_top_n; padding stays `pad`
            padding = torch.full_like(rank[:, :1], pad).expand(-1, self.pre_nms_top_n)
            top, index = torch.cat([rank, padding], dim=1).topk(self.pre_nms_top_n, dim=1)
            if self.rank_by_probability:  # padding: -inf from here on, as for logits
                top = torch.where(top > pad, top, torch.full_like(top, neg_inf))
            index = torch.where(top > neg_inf, index, torch.zeros_like(index))
            anchors = self.anchors(images, obj, level)[index]  # [B, k, 4]
            delta = delta.gather(1, index[..., None].expand(-1, -1, 4))
            boxes = rpn.box_coder.decode_single(delta.reshape(-1, 4), anchors.reshape(-1, 4))
            boxes_l.append(boxes.reshape(batch, -1, 4))
            logits_l.append(top)
        boxes = clip_to_images(torch.cat(boxes_l, dim=1), image_sizes, self.box_offset)
        top = torch.cat(logits_l, dim=1)  # [B, L*k], logits or probabilities, -inf in padding
        prob = top if self.rank_by_probability else torch.sigmoid(top)
        valid = (top > neg_inf) & (prob >= self.rpn_score_thresh)
        # one NMS "class" per level: the roi's probability in its level's column, -1 elsewhere
        level_of = torch.arange(self.num_rpn_levels).repeat_interleave(self.pre_nms_top_n)
        onehot = level_of[:, None] == torch.arange(self.num_rpn_levels)[None, :]  # [L*k, L] constant
        if self.nms_on_logits:  # top holds logits (detectron2 ranks by them too)
            score, elsewhere = top, NOT_THIS_LEVEL_LOGIT
        else:
            score, elsewhere = prob, NOT_THIS_LEVEL_PROB
        scores = torch.where(onehot[None] & valid[..., None], score[..., None], elsewhere)
        kept = self.nms(boxes, scores, self.rpn_nms)
        slot = torch.arange(self.post_nms_top_n)[None, :]
        return kept.boxes, slot < kept.num_detections.to(torch.int64)[:, None]

    def detect(
        self, features: dict[str, Tensor], proposals: Tensor, proposal_valid: Tensor, image_sizes: Tensor
    ) -> NmsResult:
        """Box head on every proposal, per-class decode and clip, softmax, class-aware NMS, keep K."""
        heads = self.model.roi_heads
        batch, num_rois = proposals.shape[0], proposals.shape[1]
        pooled = self.ops.multilevel_roi_align(
            proposals, [features[n] for n in self.box_names], self.box_attrs
        )
        class_logits, box_regression = heads.box_predictor(heads.box_head(pooled))
        num_classes = class_logits.shape[-1]
        boxes = heads.box_coder.decode_single(box_regression, proposals.reshape(-1, 4))
        boxes = clip_to_images(boxes.reshape(batch, -1, 4), image_sizes, self.box_offset).reshape(
            batch, num_rois, num_classes, 4
        )
        scores = torch.softmax(class_logits, -1).reshape(batch, num_rois, num_classes)
        scores = torch.where(proposal_valid[..., None], scores, -1.0)
        return self.nms(boxes, scores, self.box_nms)

    def nms(self, boxes: Tensor, scores: Tensor, attrs: BatchedNmsAttrs) -> NmsResult:
        """The flavor's batched NMS; under the "+1" convention on boxes grown by one pixel at x2 and y2.

        Growing them makes the op's IoU and its size filter Detectron's ("+1" widths) exactly; the kept
        boxes are then gathered from the given ones, so they come out unshifted, bit for bit.
        """
        if not self.box_offset:
            return self.ops.batched_nms(boxes, scores, attrs)
        shift = torch.tensor([0.0, 0.0, self.box_offset, self.box_offset], dtype=boxes.dtype)
        kept = self.ops.batched_nms(boxes + shift, scores, attrs)
        index = kept.indices.to(torch.int64).clamp(min=0)
        if boxes.dim() == 4:  # one box per class: position n * C + c
            index = index * boxes.shape[2] + kept.classes.to(torch.int64).clamp(min=0)
        flat = boxes.reshape(boxes.shape[0], -1, 4)
        exact = flat.gather(1, index[..., None].expand(-1, -1, 4))
        valid = (kept.classes >= 0)[..., None]
        return kept._replace(boxes=torch.where(valid, exact, torch.zeros_like(exact)))

    def _pool_kept(
        self, features: dict[str, Tensor], dets: NmsResult, names: list[str], attrs: Any
    ) -> Tensor:
        """ROI features of the kept boxes ([B*K, C, S, S]): what the mask and keypoint heads both read."""
        return self.ops.multilevel_roi_align(dets.boxes, [features[n] for n in names], attrs)

    def _used_slots(self, dets: NmsResult) -> NmsResult:
        """``dets`` cut to the slots some image of the batch uses (``ort``); every slot for ``trt``.

        Kept detections fill each image's first ``num_detections`` slots, so the first max over the batch
        hold them all; at least one slot, so no head ever sees an empty batch.
        """
        if self.flavor != "ort":
            return dets
        used = torch.arange(dets.num_detections.max().to(torch.int64).clamp(min=1))  # traced: a Range
        return NmsResult(dets.num_detections, *(t.index_select(1, used) for t in dets[1:]))

    @staticmethod
    def _pad_slots(values: Tensor, k: int | Tensor) -> Tensor:
        """[B, k_used, ...] -> [B, k, ...] with zeros after the used slots (the contract's fixed K)."""
        missing = k - values.shape[1]
        padding = torch.zeros_like(values[:, :1]).expand(values.shape[0], missing, *values.shape[2:])
        return torch.cat([values, padding], dim=1)

    @staticmethod
    def _zero_padding(dets: NmsResult, values: Tensor) -> Tensor:
        """``values`` [B, K, ...] with the padding slots (class -1) set to 0, as the contract says."""
        valid = dets.classes >= 0
        return torch.where(valid[(..., *[None] * (values.dim() - 2))], values, torch.zeros_like(values))

    def _per_detection(
        self,
        features: dict[str, Tensor],
        dets: NmsResult,
        names: list[str],
        attrs: Any,
        head: Callable[[Tensor, NmsResult], Tensor],
    ) -> Tensor:
        """``head(pooled, used)`` ([B, k_used, ...]) on the ROI features of the used slots -> [B, K, ...],
        every slot that holds no detection 0 (cut slots zero-filled, padding slots zeroed)."""
        k = dets.boxes.shape[1]
        used = self._used_slots(dets)
        values = head(self._pool_kept(features, used, names, attrs), used)
        return self._zero_padding(dets, self._pad_slots(values, k) if used is not dets else values)

    def masks(self, features: dict[str, Tensor], dets: NmsResult) -> Tensor:
        """Mask head on the kept boxes; probabilities of each detection's own class -> [B, K, M, M]."""
        heads = self.model.roi_heads

        def own_class_probabilities(pooled: Tensor, used: NmsResult) -> Tensor:
            logits = heads.mask_predictor(heads.mask_head(pooled))  # [B*k_used, C, M, M]
            m = logits.shape[-1]
            label = used.classes.to(torch.int64).clamp(min=0).reshape(-1, 1, 1, 1).expand(-1, 1, m, m)
            batch, k_used = used.boxes.shape[0], used.boxes.shape[1]
            return torch.sigmoid(logits.gather(1, label)).reshape(batch, k_used, m, m)

        return self._per_detection(features, dets, self.mask_names, self.mask_attrs, own_class_probabilities)

    def keypoint_heatmaps(self, features: dict[str, Tensor], dets: NmsResult) -> Tensor:
        """Keypoint head on the kept boxes -> logits [B, K, NK, S, S], 0 in padding (decoded on the host)."""
        heads = self.model.roi_heads

        def heatmap_logits(pooled: Tensor, used: NmsResult) -> Tensor:
            logits = heads.keypoint_predictor(heads.keypoint_head(pooled))  # [B*k_used, NK, S, S]
            return logits.reshape(used.boxes.shape[0], used.boxes.shape[1], *logits.shape[1:])

        return self._per_detection(
            features, dets, self.keypoint_feature_names, self.keypoint_attrs, heatmap_logits
        )


def clip_to_images(boxes: Tensor, image_sizes: Tensor, offset: float = 0.0) -> Tensor:
    """Clip [B, N, 4] boxes to each image's own (h, w), as ``clip_boxes_to_image`` does per image;
    to (h - 1, w - 1) under the "+1" convention (``offset`` 1)."""
    sizes = image_sizes.to(boxes.dtype)
    if offset:
        sizes = sizes - offset
    h = sizes[:, 0].reshape(-1, 1)
    w = sizes[:, 1].reshape(-1, 1)
    zero = torch.zeros_like(h)
    x1 = torch.minimum(torch.maximum(boxes[..., 0], zero), w)
    y1 = torch.minimum(torch.maximum(boxes[..., 1], zero), h)
    x2 = torch.minimum(torch.maximum(boxes[..., 2], zero), w)
    y2 = torch.minimum(torch.maximum(boxes[..., 3], zero), h)
    return torch.stack((x1, y1, x2, y2), dim=-1)
