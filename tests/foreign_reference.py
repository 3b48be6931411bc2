"""The source projects' own detections (tests/data/foreign) and the issue's matching criteria against ours.

Each model directory holds a checkpoint saved by maskrcnn-benchmark's or detectron2's checkpointer, the full
config that project wrote, and ``reference_detections.json.gz``: what that project's own inference computed
on ``images/*.jpg``, one image at a time (see tests/data/foreign/README.md for how they were made).

Criteria (issue 10): every detection matched one to one (same class, IoU > 0.5), boxes within 0.5 px in
image pixels, scores within 1e-3, masks of at least 64 px with IoU >= 0.95, keypoints within 1 px. Detections
on one side only are judged by the one near-tie rule (``runtime.compare.NEAR_TIES``, the rule ``--verify``
uses): a few low-score ones may swap where a tie inside the model (an RPN objectness saturated at 1.0, a
score at the 0.05 threshold) was resolved the other way by another CPU's kernels, nothing else.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from runtime.box_ops import box_iou
from runtime.compare import NEAR_TIES
from runtime.postprocess import keypoint_box_sizes
from runtime.structures import Detections

FOREIGN = Path(__file__).resolve().parent / "data" / "foreign"
IMAGES = sorted((FOREIGN / "images").glob("*.jpg"))
MODELS = (
    "mrb_mask_rcnn_R_50_FPN_1x",
    "mrb_mask_rcnn_R_50_FPN_1x_caffe2",
    "mrb_faster_rcnn_R_50_FPN_1x",
    "mrb_keypoint_rcnn_R_50_FPN_1x",
    "d2_mask_rcnn_R_50_FPN_1x",
    "d2_mask_rcnn_R_50_FPN_3x",
    "d2_faster_rcnn_R_50_FPN_1x",
)

BOX_TOL = 0.5
SCORE_TOL = 1e-3
MASK_IOU = 0.95
MIN_MASK_AREA = 64
KEYPOINT_TOL = 1.0


def model_dir(name: str) -> Path:
    return FOREIGN / name


def config_of(name: str) -> Path:
    d = model_dir(name)
    return d / ("config.yml" if name.startswith("mrb_") else "config.yaml")


def load_reference(name: str) -> dict[str, Any]:
    with gzip.open(model_dir(name) / "reference_detections.json.gz", "rt") as f:
        return json.load(f)


def read_images() -> dict[str, np.ndarray]:
    return {p.name: cv2.imread(str(p), cv2.IMREAD_COLOR) for p in IMAGES}


@dataclass
class Match:
    image: str
    num_reference: int
    num_ours: int
    matched: int = 0
    unmatched_reference: list[float] = field(default_factory=list)  # their scores
    unmatched_ours: list[float] = field(default_factory=list)
    max_box_diff: float = 0.0
    max_score_diff: float = 0.0
    min_mask_iou: float | None = None
    masks_compared: int = 0
    max_keypoint_diff: float | None = None

    def failures(self) -> list[str]:
        """The matched pairs' differences beyond the criteria (unmatched ones: :func:`near_tie_failures`)."""
        out = []
        if self.max_box_diff > BOX_TOL:
            out.append(f"{self.image}: box difference {self.max_box_diff:.3f} px > {BOX_TOL}")
        if self.max_score_diff > SCORE_TOL:
            out.append(f"{self.image}: score difference {self.max_score_diff:.2e} > {SCORE_TOL}")
        if self.min_mask_iou is not None and self.min_mask_iou < MASK_IOU:
            out.append(f"{self.image}: mask IoU {self.min_mask_iou:.4f} < {MASK_IOU}")
        if self.max_keypoint_diff is not None and self.max_keypoint_diff > KEYPOINT_TOL:
            out.append(f"{self.image}: keypoint difference {self.max_keypoint_diff:.2f} px > {KEYPOINT_TOL}")
        return out


def _pairs(
    ref_boxes: np.ndarray, ref_labels: np.ndarray, boxes: np.ndarray, labels: np.ndarray
) -> list[tuple[int, int]]:
    """One-to-one pairs, most-overlapping first (IoU > 0.5, same class).

    maskrcnn-benchmark keeps degenerate boxes (x2 <= x1, IoU 0 with anything): such a reference box pairs
    with a box of ours of the same class whose corners are within the box tolerance.
    """
    iou = (
        box_iou(ref_boxes, boxes) if len(ref_boxes) and len(boxes) else np.zeros((len(ref_boxes), len(boxes)))
    )
    iou[ref_labels[:, None] != labels[None, :]] = -1.0
    pairs, used_r, used_c = [], set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        r, c = np.unravel_index(flat, iou.shape)
        if iou[r, c] <= 0.5:
            break
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        pairs.append((int(r), int(c)))
    for r in range(len(ref_boxes)):
        b = ref_boxes[r]
        if r in used_r or (b[2] > b[0] and b[3] > b[1]):
            continue
        close = [
            c for c in range(len(boxes))
            if c not in used_c and labels[c] == ref_labels[r] and np.abs(boxes[c] - b).max() <= BOX_TOL
        ]  # fmt: skip
        if close:
            used_r.add(r)
            used_c.add(close[0])
            pairs.append((r, close[0]))
    return pairs


def compare(ref: dict[str, Any], ours: Detections, label_offset: int, image: str) -> Match:
    """Our detections of one image (original pixels, labels 1-based) against the reference's."""
    ref_boxes = np.asarray(ref["boxes"], np.float64).reshape(-1, 4)
    ref_scores = np.asarray(ref["scores"], np.float64)
    ref_labels = np.asarray(ref["labels"], np.int64) + label_offset
    boxes = np.asarray(ours.boxes, np.float64).reshape(-1, 4)
    m = Match(image, len(ref_boxes), len(boxes))
    pairs = _pairs(ref_boxes, ref_labels, boxes, np.asarray(ours.labels))
    m.matched = len(pairs)
    r_idx = [p[0] for p in pairs]
    c_idx = [p[1] for p in pairs]
    m.unmatched_reference = sorted(float(ref_scores[i]) for i in set(range(len(ref_boxes))) - set(r_idx))
    m.unmatched_ours = sorted(float(ours.scores[i]) for i in set(range(len(boxes))) - set(c_idx))
    if pairs:
        m.max_box_diff = float(np.abs(ref_boxes[r_idx] - boxes[c_idx]).max())
        m.max_score_diff = float(np.abs(ref_scores[r_idx] - np.asarray(ours.scores, np.float64)[c_idx]).max())
    if "masks" in ref and ours.masks is not None and pairs:
        binary = ours.binary_masks()
        ious = []
        for r, c in pairs:
            theirs = mask_utils.decode(ref["masks"][r]).astype(bool)
            if theirs.sum() < MIN_MASK_AREA:
                continue
            mine = binary[c].astype(bool)
            ious.append((theirs & mine).sum() / max((theirs | mine).sum(), 1))
        m.masks_compared = len(ious)
        m.min_mask_iou = float(min(ious)) if ious else None
    if "keypoints" in ref and ours.keypoints is not None and pairs:
        theirs = np.asarray(ref["keypoints"], np.float64)[r_idx][..., :2]
        mine = np.asarray(ours.keypoints, np.float64)[c_idx][..., :2]
        # keypoints decoded on different grids (boxes on either side of an integer size in network-input
        # pixels) are a near tie of the decoding (runtime.compare.NearTies), not compared
        scale = ref["input_hw"][0] / ref["orig_hw"][0]
        grids = [
            np.ceil(keypoint_box_sizes(b[idx] * scale)) for b, idx in ((ref_boxes, r_idx), (boxes, c_idx))
        ]
        same_grid = (grids[0] == grids[1]).all(1)
        diffs = np.abs(theirs - mine).reshape(len(pairs), -1).max(1)[same_grid]
        m.max_keypoint_diff = float(diffs.max(initial=0.0))
    return m


def near_tie_failures(matches: list[Match]) -> list[str]:
    """The detections on one side only, over all images, judged by the one near-tie rule."""
    differing = {
        "reference": [s for m in matches for s in m.unmatched_reference],
        "candidate": [s for m in matches for s in m.unmatched_ours],
    }
    counts = {
        "reference": sum(m.num_reference for m in matches),
        "candidate": sum(m.num_ours for m in matches),
    }
    where = "; ".join(
        f"{m.image}: reference {m.unmatched_reference[:3]}, ours {m.unmatched_ours[:3]}"
        for m in matches
        if m.unmatched_reference or m.unmatched_ours
    )
    return [f"{f} ({where})" for f in NEAR_TIES.failures(differing, counts)]


def label_offset(reference: dict[str, Any]) -> int:
    """detectron2's classes are 0-based; ours (and maskrcnn-benchmark's) 1-based."""
    return 1 if reference["source"] == "detectron2" else 0


def summarize(matches: list[Match]) -> dict[str, Any]:
    """One row of the note's table: counts and worst differences over the images."""
    mask_ious = [m.min_mask_iou for m in matches if m.min_mask_iou is not None]
    kps = [m.max_keypoint_diff for m in matches if m.max_keypoint_diff is not None]
    return {
        "reference": sum(m.num_reference for m in matches),
        "ours": sum(m.num_ours for m in matches),
        "matched": sum(m.matched for m in matches),
        "unmatched": sum(len(m.unmatched_reference) + len(m.unmatched_ours) for m in matches),
        "max_box_diff": max(m.max_box_diff for m in matches),
        "max_score_diff": max(m.max_score_diff for m in matches),
        "min_mask_iou": min(mask_ious) if mask_ious else None,
        "masks_compared": sum(m.masks_compared for m in matches),
        "max_keypoint_diff": max(kps) if kps else None,
    }
