"""Box arithmetic (x1, y1, x2, y2) in numpy, kept in one place for matching, pasting, evaluation and drawing.

Conventions are torchvision's: no "+1" in widths or areas (continuous coordinates), float32 in, float32 out.
"""

from __future__ import annotations

import numpy as np


def box_area(boxes: np.ndarray) -> np.ndarray:
    """[N, 4] -> [N]; degenerate (inverted) boxes have area 0, not a negative one."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU [N, M]; pairs with zero union get IoU 0 instead of NaN."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou.astype(np.float32)


def clip_boxes(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Clip to [0, w] x [0, h] like torchvision's ``clip_boxes_to_image``."""
    h, w = image_size
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    out[:, 0::2] = np.clip(out[:, 0::2], 0, w)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, h)
    return out


def nonempty_boxes(boxes: np.ndarray) -> np.ndarray:
    """[N] bool: width > 0 and height > 0, detectron2's ``Boxes.nonempty()``."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)


def scale_boxes(boxes: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Map boxes between image sizes per axis, with torchvision's float32 ratios (``resize_boxes``).

    maskrcnn-benchmark (``BoxList.resize``) and detectron2 (``detector_postprocess``) compute the ratio
    as a Python float, orig / resized, and multiply it into the float32 boxes; torch rounds that scalar to
    float32 first, and the float32 rounding of the double quotient of two integers equals the float32
    quotient (double rounding is innocuous for division), so the result is the same.
    """
    ratio_h = np.float32(to_size[0]) / np.float32(from_size[0])
    ratio_w = np.float32(to_size[1]) / np.float32(from_size[1])
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    out[:, 0::2] *= ratio_w
    out[:, 1::2] *= ratio_h
    return out


def scale_keypoints(
    keypoints: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]
) -> np.ndarray:
    """[N, K, 3] (x, y, score): scale x and y like torchvision's ``resize_keypoints``; scores untouched."""
    ratio_h = np.float32(to_size[0]) / np.float32(from_size[0])
    ratio_w = np.float32(to_size[1]) / np.float32(from_size[1])
    out = np.asarray(keypoints, np.float32).copy()
    out[..., 0] *= ratio_w
    out[..., 1] *= ratio_h
    return out


def expand_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """Scale boxes about their centers, in float32 as torchvision's ``expand_boxes`` computes it."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    s = np.float32(scale)
    half = np.float32(0.5)
    w_half = (boxes[:, 2] - boxes[:, 0]) * half * s
    h_half = (boxes[:, 3] - boxes[:, 1]) * half * s
    x_c = (boxes[:, 2] + boxes[:, 0]) * half
    y_c = (boxes[:, 3] + boxes[:, 1]) * half
    return np.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], axis=1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """COCO's box format."""
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    out[:, 2:] -= out[:, :2]
    return out


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    out[:, 2:] += out[:, :2]
    return out
