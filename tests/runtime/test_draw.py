"""Drawing puts masks, boxes, labels and keypoints where the detections are, and nowhere else."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.draw import (
    class_color,
    draw_detections,
    mask_heatmap_montage,
    put_text_lines,
    side_by_side,
)
from runtime.structures import Detections

H, W = 200, 300


def _detections() -> Detections:
    masks = np.zeros((3, H, W), np.float32)
    masks[0, 40:100, 30:120] = 0.9
    masks[1, 120:180, 160:280] = 0.8
    masks[2, 10:30, 200:230] = 0.95
    kps = np.zeros((3, 17, 3), np.float32)
    kps[1, :, 0] = np.linspace(165, 275, 17)
    kps[1, :, 1] = np.linspace(125, 175, 17)
    kps[1, :, 2] = 5.0
    return Detections(
        boxes=np.array([[30, 40, 120, 100], [160, 120, 280, 180], [200, 10, 230, 30]], np.float32),
        scores=np.array([0.95, 0.8, 0.3], np.float32),
        labels=np.array([1, 2, 1], np.int64),
        image_size=(H, W),
        masks=masks,
        keypoints=kps,
        class_names=["__background__", "circle", "square"],
    )


def test_draws_only_where_detections_are(tmp_path: Path) -> None:
    image = np.full((H, W, 3), 90, np.uint8)
    det = _detections()
    out = draw_detections(image, det, score_threshold=0.5)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(image, np.full((H, W, 3), 90, np.uint8))  # input untouched
    changed = np.any(out != image, axis=2)
    assert changed[70, 75]  # inside mask 0: tinted
    tint = out[70, 75].astype(int) - 90
    expected = np.array(class_color(1)) - 90
    assert np.all(np.sign(tint) == np.sign(expected))  # tinted towards the class color
    assert not changed[20, 215]  # detection 2 is below the score threshold
    assert not changed[150, 10] and not changed[195, 150]  # background stays
    cv2.imwrite(str(tmp_path / "drawn.png"), out)

    plain = draw_detections(image, det, show_masks=False, show_boxes=False)
    assert not np.any(plain[70, 75] != 90)  # without masks the inside stays untouched
    with pytest.raises(ValueError, match="detections are for a"):
        draw_detections(np.zeros((10, 10, 3), np.uint8), det)


def test_colors_are_stable_across_processes_and_well_separated() -> None:
    import itertools
    import subprocess
    import sys

    # the same class keeps its color in another process (no hash seeds, no global state): pictures of two
    # runs, or of two backends, can be compared side by side
    here = [class_color(i) for i in range(1, 21)]
    code = "from runtime.draw import class_color; print([class_color(i) for i in range(1, 21)])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert other.strip() == str(here)
    assert all(0 <= v <= 255 for c in here for v in c)

    def min_distance(colors: list[tuple[int, int, int]]) -> float:
        return min(float(np.linalg.norm(np.subtract(a, b))) for a, b in itertools.combinations(colors, 2))

    assert min_distance(here[:6]) > 60  # a small model's classes are told apart at a glance
    assert min_distance(here) > 25  # and twenty stay distinct


def test_montage_text_and_side_by_side() -> None:
    image = np.zeros((H, W, 3), np.uint8)
    det = _detections()
    montage = mask_heatmap_montage(image, det, masks_per_dim=2)
    assert montage.shape == (H, W, 3)
    jet_zero = cv2.applyColorMap(np.zeros((1, 1), np.uint8), cv2.COLORMAP_JET)[0, 0]
    # Top-left tile holds the best-scoring mask (rows 40:100, cols 30:120 shrunk by 2); the 4th tile is empty.
    assert not np.array_equal(montage[35, 37], jet_zero)
    assert np.all(montage[H // 2 :, W // 2 :] == jet_zero)

    frame = np.zeros((H, W, 3), np.uint8)
    put_text_lines(frame, ["FPS 12.3", "latency 81 ms"])
    assert frame[:40, :120].any() and not frame[100:].any()

    pair = side_by_side(np.zeros((100, 50, 3), np.uint8), np.zeros((50, 50), np.uint8), ("a", "b"))
    assert pair.shape == (128, 50 + 8 + 100, 3)
