"""The one drawing module: detections on images for the demo, the webcam, and evaluation pictures.

Colors are a pure function of the class id, so a class keeps its color across frames, backends and
side-by-side comparisons. Mask work is limited to each box's neighborhood (pasted masks are zero outside
the expanded box), which keeps drawing 100 full-image masks cheap enough for a live demo.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np

from runtime.box_ops import expand_boxes
from runtime.structures import Detections

#: COCO person skeleton (0-based keypoint index pairs), used when 17 keypoints come without a skeleton.
COCO_PERSON_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_color(label: int) -> tuple[int, int, int]:
    """Deterministic, well-separated BGR color of a class (golden-ratio hue steps)."""
    hue = (int(label) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_detections(
    image_bgr: np.ndarray,
    det: Detections,
    class_names: Sequence[str] | None = None,
    score_threshold: float = 0.0,
    show_masks: bool = True,
    show_boxes: bool = True,
    keypoint_skeleton: Sequence[tuple[int, int]] | None = None,
    mask_alpha: float = 0.45,
    keypoint_threshold: float | None = None,
    label_suffix: str = "",
) -> np.ndarray:
    """A copy of the image with masks (filled, translucent, outlined), boxes, ``label: score`` and keypoints.

    ``class_names`` defaults to ``det.class_names``; a missing name shows the numeric label. The skeleton
    defaults to COCO's person skeleton when there are 17 keypoints. Keypoints whose score is at most
    ``keypoint_threshold`` are hidden (None shows all). ``label_suffix`` follows every label, so that a second
    call on the result can mark a group of detections (``runtime.evaluate`` marks the unmatched ones).
    """
    out = np.ascontiguousarray(image_bgr).copy()
    if det.image_size != tuple(out.shape[:2]):
        raise ValueError(f"detections are for a {det.image_size} image but the image is {out.shape[:2]}")
    det = det.above(score_threshold) if score_threshold > 0 else det
    names = list(class_names) if class_names is not None else list(det.class_names)
    h, w = out.shape[:2]
    colors = [class_color(int(label)) for label in det.labels]

    if show_masks and det.masks is not None:
        for mask, box, color in zip(det.masks, det.boxes, colors):
            _draw_mask(out, mask, box, color, mask_alpha)
    if show_boxes:
        for box, color in zip(det.boxes, colors):
            x0, y0, x1, y1 = (int(round(float(v))) for v in box)
            cv2.rectangle(out, (x0, y0), (x1, y1), color, 2, cv2.LINE_AA)
    if det.keypoints is not None:
        skeleton = keypoint_skeleton
        if skeleton is None and det.keypoints.shape[1] == 17:
            skeleton = COCO_PERSON_SKELETON
        for kps, color in zip(det.keypoints, colors):
            _draw_keypoints(out, kps, color, skeleton or (), keypoint_threshold)
    for box, label, score, color in zip(det.boxes, det.labels, det.scores, colors):
        name = names[int(label)] if 0 <= int(label) < len(names) else str(int(label))
        x0 = int(np.clip(box[0], 0, w - 1))
        y0 = int(np.clip(box[1], 0, h - 1))
        _label(out, f"{name}: {float(score):.2f}{label_suffix}", (x0, y0), color)
    return out


def caption_bar(width: int, lines: Sequence[str], scale: float = 0.5) -> np.ndarray:
    """A white strip with dark text lines, ``width`` wide: a legend above a picture says what it shows."""
    line_h = int(round(22 * scale / 0.5))
    bar = np.full((line_h * len(lines) + 8, width, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(bar, line, (6, 4 + (i + 1) * line_h - 6), _FONT, scale, (32, 32, 32), 1, cv2.LINE_AA)
    return bar


def mask_heatmap_montage(image_bgr: np.ndarray, det: Detections, masks_per_dim: int = 2) -> np.ndarray:
    """maskrcnn-benchmark's ``show_mask_heatmaps``: the top masks' probabilities tiled in a JET grid.

    The grid has the image's size: ``masks_per_dim`` x ``masks_per_dim`` tiles, each the image shrunk by
    ``masks_per_dim``, in score order; missing detections leave black tiles.
    """
    if masks_per_dim < 1:
        raise ValueError(f"masks_per_dim must be >= 1, got {masks_per_dim}")
    h, w = image_bgr.shape[:2]
    th, tw = max(h // masks_per_dim, 1), max(w // masks_per_dim, 1)
    grid = np.zeros((th * masks_per_dim, tw * masks_per_dim), np.uint8)
    if det.masks is not None and len(det):
        order = np.argsort(-det.scores, kind="stable")[: masks_per_dim**2]
        for slot, i in enumerate(order):
            heat = (np.clip(det.masks[i], 0, 1) * 255).astype(np.uint8)
            tile = cv2.resize(heat, (tw, th), interpolation=cv2.INTER_AREA)
            r, c = divmod(slot, masks_per_dim)
            grid[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = tile
    montage = cv2.applyColorMap(grid, cv2.COLORMAP_JET)
    return (
        cv2.resize(montage, (w, h), interpolation=cv2.INTER_NEAREST)
        if montage.shape[:2] != (h, w)
        else montage
    )


def put_text_lines(
    image: np.ndarray,
    lines: Sequence[str],
    origin: tuple[int, int] = (8, 8),
    scale: float = 0.6,
    color: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Draw lines of text (FPS, latency) on a dark box at ``origin`` (top-left), in place; returns the image."""
    if not lines:
        return image
    sizes = [cv2.getTextSize(line, _FONT, scale, 1) for line in lines]
    line_h = max(s[0][1] + s[1] for s in sizes) + 6
    box_w = max(s[0][0] for s in sizes) + 12
    x, y = origin
    roi = image[y : y + line_h * len(lines) + 6, x : x + box_w]
    roi[:] = (roi.astype(np.float32) * 0.4).astype(np.uint8)  # darken for contrast on any background
    for i, line in enumerate(lines):
        baseline_y = y + 4 + (i + 1) * line_h - 6
        cv2.putText(image, line, (x + 6, baseline_y), _FONT, scale, color, 1, cv2.LINE_AA)
    return image


def side_by_side(a: np.ndarray, b: np.ndarray, titles: Sequence[str] = ("", ""), gap: int = 8) -> np.ndarray:
    """Two images next to each other at a common height, each with an optional title bar."""
    height = max(a.shape[0], b.shape[0])
    panels = []
    for img, title in zip((a, b), titles):
        img = _as_bgr(img)
        if img.shape[0] != height:
            img = cv2.resize(img, (round(img.shape[1] * height / img.shape[0]), height))
        if title:
            bar = np.full((28, img.shape[1], 3), 32, np.uint8)
            cv2.putText(bar, title, (6, 20), _FONT, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
            img = np.vstack([bar, img])
        panels.append(img)
    spacer = np.full((panels[0].shape[0], gap, 3), 255, np.uint8)
    return np.hstack([panels[0], spacer, panels[1]])


def _draw_mask(
    out: np.ndarray, mask: np.ndarray, box: np.ndarray, color: tuple[int, int, int], alpha: float
) -> None:
    h, w = out.shape[:2]
    # Pasted masks are zero outside the box expanded by (M + 2) / M; 1.5x covers every M >= 4.
    x0, y0, x1, y1 = expand_boxes(box[None], 1.5)[0]
    x0, y0 = max(int(np.floor(x0)) - 2, 0), max(int(np.floor(y0)) - 2, 0)
    x1, y1 = min(int(np.ceil(x1)) + 3, w), min(int(np.ceil(y1)) + 3, h)
    if x1 <= x0 or y1 <= y0:
        return
    binary = (mask[y0:y1, x0:x1] > 0.5).astype(np.uint8)
    if not binary.any():
        return
    roi = out[y0:y1, x0:x1]
    sel = binary.astype(bool)
    roi[sel] = (roi[sel] * (1 - alpha) + np.asarray(color, np.float32) * alpha).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(roi, contours, -1, color, 1, cv2.LINE_AA)


def _draw_keypoints(
    out: np.ndarray,
    kps: np.ndarray,
    color: tuple[int, int, int],
    skeleton: Sequence[tuple[int, int]],
    threshold: float | None,
) -> None:
    visible = np.ones(len(kps), bool) if threshold is None else kps[:, 2] > threshold
    pts = [(int(round(float(x))), int(round(float(y)))) for x, y in kps[:, :2]]
    for a, b in skeleton:
        if a < len(kps) and b < len(kps) and visible[a] and visible[b]:
            cv2.line(out, pts[a], pts[b], color, 2, cv2.LINE_AA)
    for p, v in zip(pts, visible):
        if v:
            cv2.circle(out, p, 3, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(out, p, 3, color, 1, cv2.LINE_AA)


def _label(out: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int]) -> None:
    (tw, th), base = cv2.getTextSize(text, _FONT, 0.45, 1)
    x, y = corner
    y_top = y - th - base - 2 if y - th - base - 2 >= 0 else y  # above the box unless at the image top
    cv2.rectangle(out, (x, y_top), (x + tw + 4, y_top + th + base + 2), color, -1)
    luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    text_color = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(out, text, (x + 2, y_top + th + 1), _FONT, 0.45, text_color, 1, cv2.LINE_AA)


def _as_bgr(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return img
