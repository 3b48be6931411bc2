"""torchvision's own operators on numpy inputs, the ground truth of the plugin tests (one copy for the host,
ONNX Runtime and float16 tests).

``torchvision_multiscale`` is ``MultiScaleRoIAlign``; ``torchvision_postprocess`` is the candidate pipeline of
``RoIHeads.postprocess_detections`` (score filter, ``remove_small_boxes``, class-aware ``batched_nms``, top K)
padded like ``MRD_BatchedNms``'s outputs. Both compute in the inputs' dtype: pass float32.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import MultiScaleRoIAlign, batched_nms, remove_small_boxes

from runtime.plugins.spec import BatchedNmsAttrs, MultiLevelRoiAlignAttrs


def torchvision_multiscale(
    rois: np.ndarray, feats: list, image: tuple[int, int], attrs: MultiLevelRoiAlignAttrs
):
    names = [str(i) for i in range(len(feats))]
    pooler = MultiScaleRoIAlign(names, (attrs.output_height, attrs.output_width), attrs.sampling_ratio)
    x = {n: torch.from_numpy(f) for n, f in zip(names, feats)}
    boxes = [torch.from_numpy(r) for r in rois]
    return pooler(x, boxes, [image] * rois.shape[0]).numpy()


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
