"""The one host-side post-processing: undo the resize and paste M x M mask probabilities into the image.

Exported graphs stop at per-box mask probabilities because pasting in the graph is a per-detection loop
(a traced paste cost 3 s); here it is a numpy loop that touches only each box's visible pixels, and it
reproduces torchvision's ``paste_masks_in_image`` (same box expansion and int64 truncation, same bilinear
weights) so PyTorch, ONNX Runtime and TensorRT results are pasted identically.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from runtime.box_ops import expand_boxes, scale_boxes, scale_keypoints
from runtime.preprocess import PreprocessedBatch, linear_taps
from runtime.structures import Detections, RawDetections


def paste_masks(
    masks: np.ndarray, boxes: np.ndarray, image_size: tuple[int, int], padding: int = 1
) -> np.ndarray:
    """Paste [N, M, M] (or [N, 1, M, M]) mask probabilities at [N, 4] boxes in original pixels -> [N, h, w].

    Equal to torchvision's ``paste_masks_in_image`` for boxes overlapping the image; a box entirely outside
    gives an empty mask (torchvision's slicing misbehaves there, which never happens for clipped boxes).
    """
    masks = np.asarray(masks, np.float32)
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, M, M] or [N, 1, M, M], got shape {masks.shape}")
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if len(boxes) != len(masks):
        raise ValueError(f"{len(masks)} masks but {len(boxes)} boxes")
    im_h, im_w = int(image_size[0]), int(image_size[1])
    out = np.zeros((len(masks), im_h, im_w), np.float32)
    if len(masks) == 0:
        return out

    m = masks.shape[-1]
    padded = np.pad(masks, ((0, 0), (padding, padding), (padding, padding)))
    src_h, src_w = padded.shape[1:]
    # Truncation toward zero, like torchvision's `.to(torch.int64)`.
    int_boxes = expand_boxes(boxes, float(m + 2 * padding) / m).astype(np.int64)
    for i, (bx0, by0, bx1, by1) in enumerate(int_boxes.tolist()):
        w = max(bx1 - bx0 + 1, 1)
        h = max(by1 - by0 + 1, 1)
        x0, x1 = max(bx0, 0), min(bx1 + 1, im_w)
        y0, y1 = max(by0, 0), min(by1 + 1, im_h)
        if x1 <= x0 or y1 <= y0:
            continue
        # Resize only the visible window of the box: output columns x0-bx0..x1-bx0, rows likewise.
        c0, c1, cw0, cw1 = linear_taps(src_w, w, x0 - bx0, x1 - bx0)
        r0, r1, rw0, rw1 = linear_taps(src_h, h, y0 - by0, y1 - by0)
        src = padded[i]
        cols = src[:, c0] * cw0 + src[:, c1] * cw1
        out[i, y0:y1, x0:x1] = cols[r0] * rw0[:, None] + cols[r1] * rw1[:, None]
    return out


def postprocess(
    raw: RawDetections,
    resized_size: tuple[int, int],
    original_size: tuple[int, int],
    class_names: Sequence[str] | None = None,
    score_threshold: float = 0.0,
) -> Detections:
    """Network output of one image -> detections in its original pixels, as torchvision's ``postprocess``.

    The score filter runs first so low-scoring masks are never pasted (the costly part).
    """
    if score_threshold > 0.0:
        raw = raw.select(np.nonzero(raw.scores >= score_threshold)[0])
    resized = (int(resized_size[0]), int(resized_size[1]))
    original = (int(original_size[0]), int(original_size[1]))
    boxes = scale_boxes(raw.boxes, resized, original)
    return Detections(
        boxes=boxes,
        scores=np.asarray(raw.scores, np.float32),
        labels=np.asarray(raw.labels, np.int64),
        image_size=original,
        masks=None if raw.masks is None else paste_masks(raw.masks, boxes, original),
        keypoints=None if raw.keypoints is None else scale_keypoints(raw.keypoints, resized, original),
        class_names=list(class_names) if class_names is not None else [],
    )


def postprocess_batch(
    raws: Sequence[RawDetections],
    batch: PreprocessedBatch,
    class_names: Sequence[str] | None = None,
    score_threshold: float = 0.0,
) -> list[Detections]:
    """:func:`postprocess` for every image of a batch made by ``runtime.preprocess.preprocess``."""
    if len(raws) != len(batch):
        raise ValueError(f"{len(raws)} results for a batch of {len(batch)} images")
    return [
        postprocess(raw, tuple(rs), tuple(os_), class_names, score_threshold)
        for raw, rs, os_ in zip(raws, batch.image_sizes.tolist(), batch.original_sizes.tolist())
    ]
