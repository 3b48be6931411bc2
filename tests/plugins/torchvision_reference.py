"""torchvision's own operators on numpy inputs, the ground truth of the plugin tests (one copy for the host,
ONNX Runtime and float16 tests).

``torchvision_multiscale`` is ``MultiScaleRoIAlign``; ``torchvision_postprocess`` is the candidate pipeline of
``RoIHeads.postprocess_detections`` (score filter, ``remove_small_boxes``, class-aware ``batched_nms``, top K)
padded like ``MRD_BatchedNms``'s outputs. Both compute in the inputs' dtype: pass float32.

``legacy_plus_one=1`` (maskrcnn-benchmark's level assignment) has no torchvision counterpart as a whole:
``plus_one_levels`` is the spec's level formula with the +1 areas (written like torchvision's ``LevelMapper``,
in float32), ``roi_align_at_levels`` pools each roi with torchvision's ``roi_align`` on the level it is given,
and ``boundary_rois`` are rois whose sqrt-areas lie within 1 px of the FPN level boundaries 112, 224, 448.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.ops import MultiScaleRoIAlign, batched_nms, remove_small_boxes, roi_align

from runtime.plugins.spec import BatchedNmsAttrs, MultiLevelRoiAlignAttrs


def torchvision_multiscale(
    rois: np.ndarray, feats: list, image: tuple[int, int], attrs: MultiLevelRoiAlignAttrs
):
    names = [str(i) for i in range(len(feats))]
    pooler = MultiScaleRoIAlign(names, (attrs.output_height, attrs.output_width), attrs.sampling_ratio)
    x = {n: torch.from_numpy(f) for n, f in zip(names, feats)}
    boxes = [torch.from_numpy(r) for r in rois]
    return pooler(x, boxes, [image] * rois.shape[0]).numpy()


def plus_one_levels(rois: np.ndarray, attrs: MultiLevelRoiAlignAttrs) -> np.ndarray:
    """Level index of each roi ([B, R, 4] -> [B*R]) with ``legacy_plus_one=1``: floor(canonical_level +
    log2(sqrt((x2 - x1 + 1) * (y2 - y1 + 1)) / canonical_box_size) + 1e-6), clamped, minus k_min. In float32,
    each step as torchvision's ``LevelMapper`` takes it, only the area differs."""
    boxes = torch.from_numpy(np.ascontiguousarray(rois, np.float32).reshape(-1, 4))
    k_min = round(-math.log2(attrs.spatial_scales[0]))
    k_max = round(-math.log2(attrs.spatial_scales[-1]))
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    s = torch.sqrt(area)
    lvl = torch.floor(
        attrs.canonical_level + torch.log2(s / attrs.canonical_box_size) + torch.tensor(1e-6, dtype=s.dtype)
    )
    return (torch.clamp(lvl, min=k_min, max=k_max) - k_min).to(torch.int64).numpy()


def roi_align_at_levels(
    rois: np.ndarray, feats: list, levels: np.ndarray, attrs: MultiLevelRoiAlignAttrs
) -> np.ndarray:
    """torchvision ``roi_align`` of roi i ([B, R, 4], row-major) on feature ``levels[i]`` with that level's scale,
    [B*R, C, P_h, P_w]; what ``MultiScaleRoIAlign`` computes when given these levels."""
    batch, num = rois.shape[:2]
    flat = torch.from_numpy(np.ascontiguousarray(rois, np.float32).reshape(-1, 4))
    batch_index = torch.arange(batch, dtype=torch.float32).repeat_interleave(num)[:, None]
    out = np.zeros((batch * num, feats[0].shape[1], attrs.output_height, attrs.output_width), np.float32)
    for level, (feat, scale) in enumerate(zip(feats, attrs.spatial_scales)):
        idx = np.flatnonzero(levels == level)
        if idx.size == 0:
            continue
        t = torch.from_numpy(idx)
        out[idx] = roi_align(
            torch.from_numpy(feat),
            torch.cat([batch_index[t], flat[t]], dim=1),
            (attrs.output_height, attrs.output_width),
            spatial_scale=float(scale),
            sampling_ratio=attrs.sampling_ratio,
            aligned=bool(attrs.aligned),
        ).numpy()
    return out


#: sqrt-area offsets from each level boundary: the ones in [-1, 0) move up a level with the +1 areas
BOUNDARY_OFFSETS = (-1.0, -0.8, -0.5, -0.2, -0.05, 0.0, 0.05, 0.5, 1.0)


def boundary_rois(rng: np.random.Generator, batch: int, image: tuple[int, int]) -> np.ndarray:
    """[batch, R, 4] float32 rois inside ``image`` whose sqrt-areas are 112, 224, 448 plus ``BOUNDARY_OFFSETS``,
    square and with aspect ratios 0.64 and 1.5625 (sides t * 0.8 and t * 1.25), plus a tiny roi and one covering
    the image (clamped to the finest and the coarsest level): 83 rois, shuffled, split over the batch (the first
    ones repeated to fill the last image)."""
    h, w = image
    boxes = []
    for boundary in (112.0, 224.0, 448.0):
        for offset in BOUNDARY_OFFSETS:
            t = boundary + offset
            for f in (1.0, 0.8, 1.25):
                bw, bh = t * f, t / f
                # whole-pixel corners: the square rois at offsets -1, 0, 1 have exact areas, right on a boundary
                x1 = float(rng.integers(0, int(w - bw - 1)))
                y1 = float(rng.integers(0, int(h - bh - 1)))
                boxes.append([x1, y1, x1 + bw, y1 + bh])
    boxes += [[3, 4, 9, 11], [0, 0, w - 1, h - 1]]
    rois = np.array(boxes, np.float64)
    per_image = -(-len(rois) // batch)
    pad = per_image * batch - len(rois)
    rois = np.concatenate([rois, rois[:pad]]) if pad else rois
    return rng.permutation(rois).reshape(batch, per_image, 4).astype(np.float32)


def torchvision_postprocess(boxes: np.ndarray, scores: np.ndarray, attrs: BatchedNmsAttrs):
    """torchvision's post-processing on one batch, padded like the op's outputs."""
    b_n, n, c = scores.shape
    k = attrs.keep_top_k
    out = (
        np.zeros(b_n, np.int32),
        np.zeros((b_n, k, 4), np.float32),
        np.zeros((b_n, k), np.float32),
        np.full((b_n, k), -1, np.int32),
        np.full((b_n, k), -1, np.int32),
    )
    for b in range(b_n):
        bx = torch.from_numpy(boxes[b])
        if bx.dim() == 2:
            bx = bx[:, None, :].expand(n, c, 4)
        sc = torch.from_numpy(scores[b])
        labels = torch.arange(c).view(1, -1).expand_as(sc)
        rows = torch.arange(n).view(-1, 1).expand_as(sc)
        keep_cls = labels != attrs.background_class
        bx, sc, labels, rows = bx[keep_cls], sc[keep_cls], labels[keep_cls], rows[keep_cls]
        inds = torch.where(sc > attrs.score_threshold)[0]
        bx, sc, labels, rows = bx[inds], sc[inds], labels[inds], rows[inds]
        keep = remove_small_boxes(bx, min_size=attrs.min_box_size)
        bx, sc, labels, rows = bx[keep], sc[keep], labels[keep], rows[keep]
        if attrs.pre_nms_top_k > 0:
            top = torch.sort(sc, descending=True, stable=True)[1][: attrs.pre_nms_top_k]
            bx, sc, labels, rows = bx[top], sc[top], labels[top], rows[top]
        keep = batched_nms(bx, sc, labels, attrs.iou_threshold)[:k]
        m = len(keep)
        out[0][b] = m
        out[1][b, :m] = bx[keep].numpy()
        out[2][b, :m] = sc[keep].numpy()
        out[3][b, :m] = labels[keep].numpy()
        out[4][b, :m] = rows[keep].numpy()
    return out
