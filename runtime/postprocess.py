"""The one host-side post-processing: paste mask probabilities, decode keypoint heatmaps, undo the resize.

Exported graphs stop at per-box mask probabilities and keypoint heatmaps because both finish with a resize
to each box's own size (data-dependent shapes: a traced paste loop cost 3 s, and TensorRT has no per-box
resize). Here they are numpy loops that reproduce torchvision exactly: ``paste_masks_in_image`` (same box
expansion and int64 truncation, same bilinear weights) and ``heatmaps_to_keypoints`` (same bicubic resize to
the box, same argmax), so PyTorch, ONNX Runtime and TensorRT results are finished identically.

Models imported from detectron2 are finished its way instead (``output_convention="detectron2"``, the
model's ``ModelInfo.output_convention``): boxes clipped to the original image and empty ones dropped after
the rescale, and masks pasted with detectron2's ``grid_sample`` algorithm (:func:`paste_masks_detectron2`).
maskrcnn-benchmark's ``Masker`` is the torchvision algorithm, so its models use the default convention.

Binarization stays with the caller (``Detections.binary_masks``, ``> 0.5``): torchvision and
maskrcnn-benchmark threshold with ``> 0.5``, detectron2 with ``>= 0.5``; a pasted probability of exactly
0.5 is a measure-zero event, so one threshold serves both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from runtime.box_ops import clip_boxes, expand_boxes, nonempty_boxes, scale_boxes, scale_keypoints
from runtime.preprocess import PreprocessedBatch, linear_taps
from runtime.structures import Detections, RawDetections

OUTPUT_TORCHVISION = "torchvision"
OUTPUT_DETECTRON2 = "detectron2"
#: torchvision's boxes and masks, keypoint heatmaps resized with OpenCV's bicubic (maskrcnn-benchmark's decoding)
OUTPUT_MASKRCNN_BENCHMARK = "maskrcnn-benchmark"
#: how a model's outputs are finished: torchvision's, maskrcnn-benchmark's or detectron2's
OUTPUT_CONVENTIONS: tuple[str, ...] = (OUTPUT_TORCHVISION, OUTPUT_DETECTRON2, OUTPUT_MASKRCNN_BENCHMARK)


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


def _grid_sample_weights(coords: np.ndarray, size: int) -> np.ndarray:
    """[len(coords), size] float32 weights of bilinear ``grid_sample`` (align_corners=False, zeros
    padding) along one axis at normalized grid coordinates ``coords`` (float32).

    The source position is ``(g + 1) * size / 2 - 0.5``; its two neighbours get 1 - frac and frac, and a
    neighbour outside [0, size) contributes 0 (the zeros padding).
    """
    f32 = np.float32
    src = (coords.astype(np.float32) + f32(1.0)) * f32(size / 2.0) - f32(0.5)
    left = np.floor(src)
    frac = src - left
    left = left.astype(np.int64)
    weights = np.zeros((len(coords), size), np.float32)
    rows = np.arange(len(coords))
    for idx, wgt in ((left, f32(1.0) - frac), (left + 1, frac)):
        inside = (idx >= 0) & (idx < size)
        weights[rows[inside], idx[inside]] = wgt[inside]
    return weights


def paste_masks_detectron2(masks: np.ndarray, boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Paste [N, M, M] (or [N, 1, M, M]) mask probabilities at [N, 4] boxes the way detectron2 does.

    detectron2's ``paste_masks_in_image``: the probability at image pixel (x, y) is the bilinear
    ``grid_sample`` (align_corners=False, zeros padding) of the M x M mask at grid coordinate
    ``((x + 0.5) - x0) / (x1 - x0) * 2 - 1`` (and likewise for y), computed over the window
    ``[max(floor(x0) - 1, 0), min(ceil(x1) + 1, w))`` x (the same in y), 0 elsewhere. That window is the
    one its CPU path uses per box; on the GPU it samples the whole image, which differs only outside the
    window, where values stay below half the mask's border value (so below 0.5: the same binary mask).

    The grid is separable, so the bilinear sampling is two interpolation matrices applied to the mask,
    in float32 (not cv2.remap: its fixed-point weights differ). Matches torch's ``grid_sample`` to ~1e-6.
    Boxes with no width or height give an empty mask (detectron2 drops them before pasting).
    """
    masks = np.asarray(masks, np.float32)
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3 or masks.shape[1] != masks.shape[2]:
        raise ValueError(f"masks must be [N, M, M] or [N, 1, M, M], got shape {masks.shape}")
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if len(boxes) != len(masks):
        raise ValueError(f"{len(masks)} masks but {len(boxes)} boxes")
    im_h, im_w = int(image_size[0]), int(image_size[1])
    out = np.zeros((len(masks), im_h, im_w), np.float32)
    m = masks.shape[-1]
    f32 = np.float32
    for i, (bx0, by0, bx1, by1) in enumerate(boxes):
        if not (bx1 > bx0 and by1 > by0):
            continue
        x_lo, x_hi = max(int(np.floor(bx0)) - 1, 0), min(int(np.ceil(bx1)) + 1, im_w)
        y_lo, y_hi = max(int(np.floor(by0)) - 1, 0), min(int(np.ceil(by1)) + 1, im_h)
        if x_hi <= x_lo or y_hi <= y_lo:
            continue
        # float32 like detectron2: (arange + 0.5 - x0) / (x1 - x0) * 2 - 1
        gx = (np.arange(x_lo, x_hi, dtype=np.float32) + f32(0.5) - bx0) / (bx1 - bx0) * f32(2.0) - f32(1.0)
        gy = (np.arange(y_lo, y_hi, dtype=np.float32) + f32(0.5) - by0) / (by1 - by0) * f32(2.0) - f32(1.0)
        wx = _grid_sample_weights(gx, m)  # [cols, M]
        wy = _grid_sample_weights(gy, m)  # [rows, M]
        out[i, y_lo:y_hi, x_lo:x_hi] = (wy @ masks[i]) @ wx.T
    return out


def cubic_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices [n_out, 4] and float32 weights [n_out, 4] of torch's bicubic resize (A = -0.75).

    Half-pixel source coordinates (not clamped at 0, as torch does for cubic), taps clamped to the border,
    weights from torch's cubic convolution polynomials in float32.
    """
    f32 = np.float32
    scale = f32(n_in) / f32(n_out)
    dst = np.arange(n_out, dtype=np.float32) + f32(0.5)
    src = (np.float64(scale) * dst - 0.5).astype(np.float32)  # one rounding, like torch's fused multiply-add
    index = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    t = np.clip(src - index.astype(np.float32), f32(0.0), f32(1.0))
    a = f32(-0.75)

    def near(x: np.ndarray) -> np.ndarray:  # |x| <= 1
        return ((a + f32(2)) * x - (a + f32(3))) * x * x + f32(1)

    def far(x: np.ndarray) -> np.ndarray:  # 1 < |x| < 2
        return ((a * x - f32(5) * a) * x + f32(8) * a) * x - f32(4) * a

    t1 = f32(1.0) - t
    weights = np.stack([far(t + f32(1.0)), near(t), near(t1), far(t1 + f32(1.0))], axis=1)
    taps = np.clip(index[:, None] + np.arange(-1, 3)[None, :], 0, n_in - 1)
    return taps, weights.astype(np.float32)


def _interpolate_axis(values: np.ndarray, taps: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """Σ_j w_j · values[taps_j] along ``axis`` (float32, taps summed in torch's order)."""
    shape = [1] * values.ndim
    shape[axis] = -1
    acc = np.take(values, taps[:, 0], axis=axis) * weights[:, 0].reshape(shape)
    for j in range(1, taps.shape[1]):
        acc += np.take(values, taps[:, j], axis=axis) * weights[:, j].reshape(shape)
    return acc


def _opencv_bicubic(maps: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """[NK, S, S] -> [NK, out_h, out_w] with ``cv2.resize(INTER_CUBIC)`` (channels last, as OpenCV wants)."""
    import cv2

    hwc = np.ascontiguousarray(maps.transpose(1, 2, 0))
    resized = cv2.resize(hwc, (out_w, out_h), interpolation=cv2.INTER_CUBIC)
    return resized.reshape(out_h, out_w, -1).transpose(2, 0, 1)  # one channel comes back 2-D


def keypoint_box_sizes(boxes: np.ndarray) -> np.ndarray:
    """[N, 2] float32 (width, height) of boxes [N, 4] as keypoint decoding takes them (at least 1 px).

    Their ceiling is the grid each heatmap is resized to, so two boxes on either side of an integer size
    decode on different grids (``runtime.compare.NearTies`` judges keypoints by this).
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.maximum(boxes[:, 2:] - boxes[:, :2], np.float32(1.0))


def heatmaps_to_keypoints(
    heatmaps: np.ndarray, boxes: np.ndarray, output_convention: str = OUTPUT_TORCHVISION
) -> np.ndarray:
    """Keypoint heatmaps [N, NK, S, S] (logits) of boxes [N, 4] -> [N, NK, 3] (x, y, score), as torchvision.

    torchvision's ``heatmaps_to_keypoints``: each heatmap is resized (bicubic) to ceil(box width) x
    ceil(box height) pixels, the argmax pixel's center maps back into the box, and the score is the
    resized logit there. Coordinates are the boxes' (network-input pixels). Positions equal torchvision's
    and scores agree to ~1e-6 (float32 rounding order); every backend, the PyTorch one included, decodes
    its heatmaps here, so backends are compared on identical decoding. With ``output_convention``
    "maskrcnn-benchmark" the resize is OpenCV's ``INTER_CUBIC`` instead, as that project decodes: its
    bicubic differs from torch's enough to move an argmax by a pixel.
    """
    heatmaps = np.asarray(heatmaps, np.float32)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if heatmaps.ndim != 4 or heatmaps.shape[0] != boxes.shape[0]:
        raise ValueError(f"heatmaps must be [N, NK, S, S] for {len(boxes)} boxes, got shape {heatmaps.shape}")
    n, num_kp, src_h, src_w = heatmaps.shape
    out = np.zeros((n, num_kp, 3), np.float32)
    sizes = keypoint_box_sizes(boxes)
    widths, heights = sizes[:, 0], sizes[:, 1]
    grid = np.ceil(sizes).astype(np.int64)
    kp = np.arange(num_kp)
    for i in range(n):
        out_w, out_h = int(grid[i, 0]), int(grid[i, 1])
        if output_convention == OUTPUT_MASKRCNN_BENCHMARK:
            resized = _opencv_bicubic(heatmaps[i], out_h, out_w)
        else:
            x_taps, x_weights = cubic_taps(src_w, out_w)
            y_taps, y_weights = cubic_taps(src_h, out_h)
            # torch sums the 4 x taps of each source row, then the 4 rows: the same order here
            rows = _interpolate_axis(heatmaps[i], x_taps, x_weights, axis=2)  # [NK, S, out_w]
            resized = _interpolate_axis(rows, y_taps, y_weights, axis=1)  # [NK, out_h, out_w]
        pos = resized.reshape(num_kp, -1).argmax(axis=1)  # first maximum, like torch.argmax
        y_int, x_int = np.divmod(pos, out_w)
        x_scale = widths[i] / np.float32(out_w)
        y_scale = heights[i] / np.float32(out_h)
        out[i, :, 0] = (x_int.astype(np.float32) + np.float32(0.5)) * x_scale + boxes[i, 0]
        out[i, :, 1] = (y_int.astype(np.float32) + np.float32(0.5)) * y_scale + boxes[i, 1]
        out[i, :, 2] = resized[kp, y_int, x_int]
    return out


def check_output_convention(output_convention: str) -> str:
    if output_convention not in OUTPUT_CONVENTIONS:
        raise ValueError(
            f"output_convention must be one of {', '.join(OUTPUT_CONVENTIONS)}, got {output_convention!r}"
        )
    return output_convention


def postprocess(
    raw: RawDetections,
    resized_size: tuple[int, int],
    original_size: tuple[int, int],
    class_names: Sequence[str] | None = None,
    score_threshold: float = 0.0,
    output_convention: str = OUTPUT_TORCHVISION,
) -> Detections:
    """Network output of one image -> detections in its original pixels.

    ``output_convention`` "torchvision" is torchvision's ``postprocess`` (boxes scaled per axis, masks
    pasted by :func:`paste_masks`); "detectron2" is its ``detector_postprocess``: boxes scaled the same
    way, clipped to [0, w] x [0, h] of the original image, detections whose clipped box is empty dropped
    (so there can be fewer than the model returned), masks pasted by :func:`paste_masks_detectron2`.
    The score filter runs first so low-scoring masks are never pasted (the costly part).
    """
    check_output_convention(output_convention)
    if score_threshold > 0.0:
        raw = raw.select(np.nonzero(raw.scores >= score_threshold)[0])
    resized = (int(resized_size[0]), int(resized_size[1]))
    original = (int(original_size[0]), int(original_size[1]))
    boxes = scale_boxes(raw.boxes, resized, original)
    detectron2 = output_convention == OUTPUT_DETECTRON2
    if detectron2:
        boxes = clip_boxes(boxes, original)
        keep = nonempty_boxes(boxes)
        if not keep.all():
            raw = raw.select(np.nonzero(keep)[0])
            boxes = boxes[keep]
    masks = None
    if raw.masks is not None:
        masks = (
            paste_masks_detectron2(raw.masks, boxes, original)
            if detectron2
            else paste_masks(raw.masks, boxes, original)
        )
    return Detections(
        boxes=boxes,
        scores=np.asarray(raw.scores, np.float32),
        labels=np.asarray(raw.labels, np.int64),
        image_size=original,
        masks=masks,
        keypoints=None if raw.keypoints is None else scale_keypoints(raw.keypoints, resized, original),
        class_names=list(class_names) if class_names is not None else [],
    )


def postprocess_batch(
    raws: Sequence[RawDetections],
    batch: PreprocessedBatch,
    class_names: Sequence[str] | None = None,
    score_threshold: float = 0.0,
    output_convention: str = OUTPUT_TORCHVISION,
) -> list[Detections]:
    """:func:`postprocess` for every image of a batch made by ``runtime.preprocess.preprocess``."""
    if len(raws) != len(batch):
        raise ValueError(f"{len(raws)} results for a batch of {len(batch)} images")
    return [
        postprocess(raw, tuple(rs), tuple(os_), class_names, score_threshold, output_convention)
        for raw, rs, os_ in zip(raws, batch.image_sizes.tolist(), batch.original_sizes.tolist())
    ]
