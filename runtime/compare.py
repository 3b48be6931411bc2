"""Detection-level parity between two runs of a model (PyTorch vs ONNX Runtime vs TensorRT).

COCO AP hides small divergences and can even hide swapped detections; this matches detections one to one
(same label, IoU above a threshold) and reports how far each matched output moved, so an export can fail
with "boxes diverged by 0.7 px in image 2" instead of a vague AP delta. The exporter's verification,
``runtime.evaluate`` and the tests all use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from runtime.box_ops import box_iou
from runtime.postprocess import keypoint_box_sizes
from runtime.structures import RawDetections
from runtime.text_table import format_text_table

#: the outputs compared per matched pair: (key, plural for messages, unit). ``Tolerances.<key>`` bounds it,
#: ``ImageComparison.max_<key>_diff`` is its worst difference and ``pair_diffs[key]`` its per-pair ones
OUTPUTS = (
    ("box", "boxes", " px"),
    ("score", "scores", ""),
    ("mask", "masks", ""),
    ("keypoint", "keypoints", " px"),
)


@dataclass(frozen=True)
class NearTies:
    """The one rule for detections that differ because a tie inside the model was resolved the other way.

    Whether a detection exists, and which of two overlapping candidates it is, is decided by rankings and
    cuts inside the model: the RPN's top-k over objectness (a random-init or briefly trained model saturates
    its sigmoid at exactly 1.0, so whole groups of anchors tie and the sort kernel's order decides), NMS
    between overlapping candidates, the score threshold and the per-image cap. A rounding difference (another
    CPU's kernels, another backend, other images in the batch) may resolve such a tie the other way; then a
    detection is on one side only, or pairs with a neighbour beyond the tolerances. Measured: under AVX2
    code paths one proposal of a maskrcnn-benchmark checkpoint tied at objectness 1.0 swapped, and one
    0.059-score detection of 275 vanished; on a GroupNorm shapes model one 0.07-score detection of 137.

    A confident detection is backed by many overlapping proposals, so losing one ranking tie does not remove
    or move it: only low-confidence ones swap, and few of them. The rule accepts, on each side:

    * at most ``max(1, floor(max_fraction * N))`` differing detections (N: that side's detections), each
      scoring at most ``max_score``;
    * any number tied with the per-image cap: where an image's output is full, a detection scoring within the
      score tolerance of the lowest score kept may be in or out (a random-init model saturates its scores
      at 1.0 and fills the cap with ties);
    * keypoints of a matched pair decoded on different grids: the heatmap is resized to ceil(box width) x
      ceil(box height) pixels (torchvision's and maskrcnn-benchmark's decoding), so two boxes within the box
      tolerance on either side of an integer size resize it differently and the argmax may jump (measured:
      150 px on a 1-px-wide box of a full-width random-init keypoint R-50, heatmaps within 9e-4).

    Anything else is a real difference (``tests/runtime/test_compare.py`` shows a moved confident detection,
    a lost one and too many low ones rejected).
    """

    max_score: float = 0.1
    max_fraction: float = 0.01

    def allowance(self, num_detections: int) -> int:
        return max(1, int(self.max_fraction * num_detections)) if num_detections else 0

    def failures(self, differing: dict[str, list[float]], counts: dict[str, int]) -> list[str]:
        """Why the differing detections are not all near-tie swaps ([] when they are).

        ``differing`` maps a side ("reference", "candidate") to the scores of its detections that are
        unmatched or matched beyond the tolerances, less those tied with a cut (see the class);
        ``counts`` to that side's number of detections.
        """
        out = []
        for side, scores in differing.items():
            confident = sorted((s for s in scores if not s <= self.max_score), reverse=True)
            allowed = self.allowance(counts.get(side, 0))
            if confident:
                out.append(
                    f"{len(confident)} {side} detection(s) scoring above {self.max_score:g} differ "
                    f"(best {confident[0]:.3f}): not a near-tie swap"
                )
            elif len(scores) > allowed:
                out.append(
                    f"{len(scores)} {side} detections differ, more than the {allowed} near-tie swap(s) accepted "
                    f"among {counts.get(side, 0)}"
                )
        return out


#: the near-tie rule of every FP32 parity check (export verification, imported checkpoints, batching)
NEAR_TIES = NearTies()


@dataclass(frozen=True)
class Tolerances:
    """Largest acceptable differences between matched detections; ``None`` skips that output."""

    box: float | None = 0.05  # px, max abs coordinate difference
    score: float | None = 1e-4
    mask: float | None = None  # max abs difference of the M x M mask probabilities
    keypoint: float | None = None  # px, max abs x/y difference
    #: fraction of detections, in both directions, that must be matched *and* within the tolerances above.
    #: Below 1, a detection that swapped with a near-tied neighbour counts against the same allowance whether
    #: the neighbour is elsewhere (unmatched) or overlaps it (matched, but boxes and score far apart); at 1
    #: every detection must match within the tolerances
    min_matched: float = 1.0
    #: lowest acceptable :func:`agreement_ap` (AP50 of the candidate, the reference's detections taken as
    #: ground truth); for reduced precision, where low-score detections churn without costing accuracy
    min_ap: float | None = None
    #: with ``min_matched`` 1, the detections that may differ as near-tie swaps (:class:`NearTies`); None:
    #: none may
    near_ties: NearTies | None = None


class _MatchCounts(Protocol):
    @property
    def num_reference(self) -> int: ...
    @property
    def num_candidate(self) -> int: ...
    @property
    def num_matched(self) -> int: ...


class _MatchedFractions:
    """The matched fractions of both sides, for one image and for a whole report (which sums its images)."""

    @property
    def matched_reference(self: _MatchCounts) -> float:
        return self.num_matched / self.num_reference if self.num_reference else 1.0

    @property
    def matched_candidate(self: _MatchCounts) -> float:
        return self.num_matched / self.num_candidate if self.num_candidate else 1.0


@dataclass
class ImageComparison(_MatchedFractions):
    """Matching result of one image; differences are over matched pairs only (0 when there are none)."""

    index: int
    name: str  # how failures name the image (its file name, or its index)
    num_reference: int
    num_candidate: int
    pairs: np.ndarray  # [P, 2] int64 (reference index, candidate index)
    max_box_diff: float = 0.0
    mean_box_diff: float = 0.0
    max_score_diff: float = 0.0
    max_mask_diff: float | None = None
    max_keypoint_diff: float | None = None
    min_iou: float = 1.0
    #: per matched pair (in ``pairs`` order), its largest difference of each output: "box" px, "score",
    #: "mask", "keypoint" px (the last two only where both sides have them)
    pair_diffs: dict[str, np.ndarray] = field(default_factory=dict)
    #: per matched pair, the higher of its two scores (what the near-tie rule judges a differing pair by)
    pair_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: per matched pair, whether its two boxes resize keypoint heatmaps to different integer sizes
    pair_keypoint_grids_differ: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    #: each side's lowest score where its output is full (``detections_per_image`` detections), else None
    cut_reference: float | None = None
    cut_candidate: float | None = None
    unmatched_reference: list[tuple[int, float]] = field(default_factory=list)  # (label, score)
    unmatched_candidate: list[tuple[int, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # structural mismatches (e.g. masks on one side only)

    @property
    def num_matched(self) -> int:
        return int(self.pairs.shape[0])

    def pairs_beyond(self, tol: Tolerances, keys: Sequence[str] | None = None) -> np.ndarray:
        """Mask [P] of the matched pairs with some output (of ``keys``, default all) beyond its tolerance."""
        beyond = np.zeros(self.num_matched, bool)
        for key, _, _ in OUTPUTS:
            limit = getattr(tol, key)
            if limit is not None and key in self.pair_diffs and (keys is None or key in keys):
                beyond |= ~(self.pair_diffs[key] <= limit)  # NaN is beyond any tolerance
        return beyond

    def differing(self, tol: Tolerances) -> dict[str, list[float]]:
        """Each side's scores of detections unmatched or matched beyond ``tol`` that no cut or decoding grid
        explains (:class:`NearTies`)."""
        beyond = self.pairs_beyond(tol, [k for k, _, _ in OUTPUTS if k != "keypoint"])
        beyond |= self.pairs_beyond(tol, ["keypoint"]) & ~self.pair_keypoint_grids_differ
        beyond_scores = self.pair_scores[beyond].tolist()
        score_tol = tol.score or 0.0
        out = {}
        for side, unmatched, cut in (
            ("reference", self.unmatched_reference, self.cut_reference),
            ("candidate", self.unmatched_candidate, self.cut_candidate),
        ):
            scores = [s for _, s in unmatched] + beyond_scores
            out[side] = [
                s for s in scores if cut is None or not s <= cut + score_tol
            ]  # ties at the cut left out
        return out


@dataclass
class ComparisonReport(_MatchedFractions):
    images: list[ImageComparison]
    iou_threshold: float
    agreement_ap: float | None = None  # see agreement_ap(); None when not computed

    @property
    def num_reference(self) -> int:
        return sum(im.num_reference for im in self.images)

    @property
    def num_candidate(self) -> int:
        return sum(im.num_candidate for im in self.images)

    @property
    def num_matched(self) -> int:
        return sum(im.num_matched for im in self.images)

    def worst(self, attr: str) -> tuple[float | None, str | None]:
        """Largest value of an ImageComparison attribute over images, and the name of the image with it."""
        values = [
            (getattr(im, attr), -im.index, im.name) for im in self.images if getattr(im, attr) is not None
        ]
        if not values:
            return None, None
        # a NaN difference is the worst of all (and fails every tolerance): max() alone would skip it
        value, _, name = max(values, key=lambda v: (float("inf") if v[0] != v[0] else v[0], v[1]))
        return value, name

    def check(self, tol: Tolerances) -> list[str]:
        """Human-readable failures, one per diverged output; an empty list means the candidate passes.

        The differences of matched pairs fail the check only where too few detections agree (matched within
        the tolerances, :attr:`Tolerances.min_matched`); with the default of 1, that is any difference.
        """
        failures = [f"image {im.name}: {p}" for im in self.images for p in im.problems]
        if tol.near_ties is not None and tol.min_matched >= 1.0:
            tie_failures = tol.near_ties.failures(*self._differing(tol))
            if not tie_failures:
                return failures + self._ap_failures(tol)
            failures += [f"detections: {f}" for f in tie_failures]
        failures += self._unmatched_failures(tol.min_matched)
        failures += self._ap_failures(tol)
        beyond = [(im, n) for im in self.images if (n := int(im.pairs_beyond(tol).sum()))]
        agreeing = self._agreeing(sum(n for _, n in beyond))
        if agreeing >= tol.min_matched:
            return failures
        for key, output, unit in OUTPUTS:
            value, name = self.worst(f"max_{key}_diff")
            limit = getattr(tol, key)
            if limit is not None and value is not None and not value <= limit:  # NaN fails too
                failures.append(
                    f"{output}: max difference {value:.4g}{unit} exceeds tolerance {limit:.4g}{unit} (image {name})"
                )
        if tol.min_matched < 1.0 and beyond:
            where = "; ".join(f"image {im.name}: {n}" for im, n in beyond[:5])
            failures.append(
                f"detections: {agreeing:.1%} agree (matched within the tolerances; required "
                f"{tol.min_matched:.1%}): {sum(n for _, n in beyond)} matched pair(s) beyond them ({where})"
            )
        return failures

    def _ap_failures(self, tol: Tolerances) -> list[str]:
        if tol.min_ap is not None and self.agreement_ap is not None and self.agreement_ap < tol.min_ap:
            return [
                f"agreement AP50 {self.agreement_ap:.3f} (the reference's detections as ground truth) is below "
                f"{tol.min_ap:.3f}"
            ]
        return []

    def _differing(self, tol: Tolerances) -> tuple[dict[str, list[float]], dict[str, int]]:
        """Scores of each side's detections that are unmatched or matched beyond ``tol``, and each side's count."""
        differing: dict[str, list[float]] = {"reference": [], "candidate": []}
        for im in self.images:
            for side, scores in im.differing(tol).items():
                differing[side] += scores
        return differing, {"reference": self.num_reference, "candidate": self.num_candidate}

    def keypoint_grid_ties(self, tol: Tolerances) -> int:
        """Matched pairs whose keypoints differ beyond ``tol`` because their boxes' decoding grids differ."""
        return sum(
            int((im.pairs_beyond(tol, ["keypoint"]) & im.pair_keypoint_grids_differ).sum())
            for im in self.images
        )

    def near_tie_swaps(self, tol: Tolerances) -> int:
        """How many detections differ (unmatched, or matched beyond ``tol``) on the side with more of them."""
        differing, _ = self._differing(tol)
        return max(len(v) for v in differing.values())

    def num_beyond(self, tol: Tolerances) -> int:
        """How many matched pairs have an output beyond its tolerance."""
        return sum(int(im.pairs_beyond(tol).sum()) for im in self.images)

    def agreeing_fraction(self, tol: Tolerances) -> float:
        """Matched pairs within the tolerances over the detections of the side that has more (the worse side)."""
        return self._agreeing(self.num_beyond(tol))

    def _agreeing(self, num_beyond: int) -> float:
        total = max(self.num_reference, self.num_candidate)
        return (self.num_matched - num_beyond) / total if total else 1.0

    def _unmatched_failures(self, min_matched: float) -> list[str]:
        """A failure per direction (reference, candidate) where too few detections found their partner.

        Both directions read the same, but for how an image's unmatched detections are counted: the
        reference's are ones the candidate misses, the candidate's are extra.
        """
        failures = []
        for side, rate, total, count in (
            ("reference", self.matched_reference, self.num_reference, "misses {}"),
            ("candidate", self.matched_candidate, self.num_candidate, "has {} extra"),
        ):
            if rate >= min_matched:
                continue
            unmatched = [(im, dets) for im in self.images if (dets := getattr(im, f"unmatched_{side}"))]
            detail = "; ".join(
                f"image {im.name} {count.format(len(dets))} (best {_describe(dets)})"
                for im, dets in unmatched[:5]
            )
            failures.append(
                f"detections: {rate:.1%} of {total} {side} detections matched (required {min_matched:.1%}): "
                f"{detail}"
            )
        return failures

    def format_table(self) -> str:
        headers = ["image", "ref", "cand", "matched ref", "matched cand", "min IoU", "max box px",
                   "mean box px", "max score", "max mask", "max kp px"]  # fmt: skip
        rows = [
            [im.name, str(im.num_reference), str(im.num_candidate), f"{im.matched_reference:.1%}",
             f"{im.matched_candidate:.1%}", _fmt(im.min_iou if im.num_matched else None), _fmt(im.max_box_diff),
             _fmt(im.mean_box_diff), _fmt(im.max_score_diff), _fmt(im.max_mask_diff), _fmt(im.max_keypoint_diff)]
            for im in self.images
        ]  # fmt: skip
        matched = [im for im in self.images if im.num_matched]
        mean_box = (
            sum(im.mean_box_diff * im.num_matched for im in matched) / self.num_matched
            if self.num_matched
            else 0.0
        )
        min_iou = min((im.min_iou for im in matched), default=None)
        rows.append(
            ["all", str(self.num_reference), str(self.num_candidate), f"{self.matched_reference:.1%}",
             f"{self.matched_candidate:.1%}", _fmt(min_iou), _fmt(self.worst("max_box_diff")[0]), _fmt(mean_box),
             _fmt(self.worst("max_score_diff")[0]), _fmt(self.worst("max_mask_diff")[0]),
             _fmt(self.worst("max_keypoint_diff")[0])]
        )  # fmt: skip
        return format_text_table(headers, rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for ``runtime.evaluate --json``)."""
        return {
            "iou_threshold": self.iou_threshold,
            "num_reference": self.num_reference,
            "num_candidate": self.num_candidate,
            "matched_reference": self.matched_reference,
            "matched_candidate": self.matched_candidate,
            "agreement_ap": self.agreement_ap,
            "max_box_diff": self.worst("max_box_diff")[0],
            "max_score_diff": self.worst("max_score_diff")[0],
            "max_mask_diff": self.worst("max_mask_diff")[0],
            "max_keypoint_diff": self.worst("max_keypoint_diff")[0],
            "images": [
                {
                    "index": im.index,
                    "name": im.name,
                    "num_reference": im.num_reference,
                    "num_candidate": im.num_candidate,
                    "num_matched": im.num_matched,
                    "max_box_diff": im.max_box_diff,
                    "max_score_diff": im.max_score_diff,
                    "max_mask_diff": im.max_mask_diff,
                    "max_keypoint_diff": im.max_keypoint_diff,
                    "problems": list(im.problems),
                }
                for im in self.images
            ],
        }


#: how far apart (px, largest corner difference) two degenerate boxes of one label may be and still pair
DEGENERATE_PAIR_PX = 1.0


def match_detections(
    ref_boxes: np.ndarray,
    ref_labels: np.ndarray,
    cand_boxes: np.ndarray,
    cand_labels: np.ndarray,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """One-to-one pairs [P, 2] (reference, candidate) with equal labels, most-overlapping pairs first.

    Greedy on IoU rather than on score: in a parity check near-identical boxes must pair with each other
    even when the two runs order equal-score detections differently. A degenerate box (zero width or height,
    which maskrcnn-benchmark keeps and random-init models make) has IoU 0 with everything, itself included:
    left over, it pairs with the nearest unpaired box of its label within ``DEGENERATE_PAIR_PX``.
    """
    ref_boxes = np.asarray(ref_boxes).reshape(-1, 4)
    cand_boxes = np.asarray(cand_boxes).reshape(-1, 4)
    same = np.asarray(ref_labels)[:, None] == np.asarray(cand_labels)[None, :]
    iou = box_iou(ref_boxes, cand_boxes)
    iou[~same] = -1.0
    used_r = np.zeros(iou.shape[0], bool)
    used_c = np.zeros(iou.shape[1], bool)
    pairs: list[tuple[int, int]] = []
    for r, c in zip(*np.unravel_index(np.argsort(-iou, axis=None, kind="stable"), iou.shape)):
        if iou[r, c] < iou_threshold or iou[r, c] < 0 or used_r.all() or used_c.all():
            break
        if used_r[r] or used_c[c]:
            continue
        used_r[r] = used_c[c] = True
        pairs.append((int(r), int(c)))
    degenerate_r = (ref_boxes[:, 2] <= ref_boxes[:, 0]) | (ref_boxes[:, 3] <= ref_boxes[:, 1])
    degenerate_c = (cand_boxes[:, 2] <= cand_boxes[:, 0]) | (cand_boxes[:, 3] <= cand_boxes[:, 1])
    if (degenerate_r & ~used_r).any() or (degenerate_c & ~used_c).any():
        dist = np.abs(ref_boxes[:, None, :].astype(np.float64) - cand_boxes[None, :, :]).max(-1)
        dist[~same | ~(degenerate_r[:, None] | degenerate_c[None, :])] = np.inf
        for r, c in zip(*np.unravel_index(np.argsort(dist, axis=None, kind="stable"), dist.shape)):
            if not dist[r, c] <= DEGENERATE_PAIR_PX:
                break
            if used_r[r] or used_c[c]:
                continue
            used_r[r] = used_c[c] = True
            pairs.append((int(r), int(c)))
    return np.asarray(pairs, np.int64).reshape(-1, 2)


def compare_image(
    index: int,
    ref: RawDetections,
    cand: RawDetections,
    iou_threshold: float = 0.5,
    name: str | None = None,
    detections_per_image: int | None = None,
) -> ImageComparison:
    pairs = match_detections(ref.boxes, ref.labels, cand.boxes, cand.labels, iou_threshold)
    r, c = pairs[:, 0], pairs[:, 1]
    result = ImageComparison(
        index=index, name=str(index) if name is None else name, num_reference=len(ref), num_candidate=len(cand),
        pairs=pairs,
    )  # fmt: skip
    unmatched_r = np.setdiff1d(np.arange(len(ref)), r)
    unmatched_c = np.setdiff1d(np.arange(len(cand)), c)
    result.unmatched_reference = [(int(ref.labels[i]), float(ref.scores[i])) for i in unmatched_r]
    result.unmatched_candidate = [(int(cand.labels[i]), float(cand.scores[i])) for i in unmatched_c]
    if detections_per_image:
        result.cut_reference = _cut(ref, detections_per_image)
        result.cut_candidate = _cut(cand, detections_per_image)
    if len(pairs):
        box_diff = np.abs(ref.boxes[r].astype(np.float64) - cand.boxes[c])
        result.max_box_diff = float(box_diff.max())
        result.mean_box_diff = float(box_diff.mean())
        score_diff = np.abs(ref.scores[r].astype(np.float64) - cand.scores[c])
        result.max_score_diff = float(score_diff.max())
        result.min_iou = float(box_iou(ref.boxes[r], cand.boxes[c]).diagonal().min())
        result.pair_diffs = {"box": box_diff.max(axis=1), "score": score_diff}
        result.pair_scores = np.maximum(ref.scores[r], cand.scores[c]).astype(np.float64)
        grids = [np.ceil(keypoint_box_sizes(boxes)) for boxes in (ref.boxes[r], cand.boxes[c])]
        result.pair_keypoint_grids_differ = (grids[0] != grids[1]).any(1)
    for key, name in (("mask", "masks"), ("keypoint", "keypoints")):  # where both sides have them
        diffs = _pair_diffs(name, getattr(ref, name), getattr(cand, name), r, c, result.problems)
        if diffs is not None:
            result.pair_diffs[key] = diffs
        setattr(result, f"max_{key}_diff", None if diffs is None else float(diffs.max(initial=0.0)))
    return result


def compare_detections(
    reference: Sequence[RawDetections],
    candidate: Sequence[RawDetections],
    iou_threshold: float = 0.5,
    image_names: Sequence[str] | None = None,
    detections_per_image: int | None = None,
) -> ComparisonReport:
    """Match every image's detections; both lists hold the same images in the same order.

    ``image_names`` (e.g. file names with sizes) label the images in failures and tables instead of indices.
    ``detections_per_image``: the model's cap, where known (ties at it are near ties, :class:`NearTies`).
    """
    if len(reference) != len(candidate):
        raise ValueError(f"reference has {len(reference)} images but candidate has {len(candidate)}")
    if image_names is not None and len(image_names) != len(reference):
        raise ValueError(f"{len(image_names)} image names for {len(reference)} images")
    names = [str(i) for i in range(len(reference))] if image_names is None else [str(n) for n in image_names]
    images = [
        compare_image(i, r, c, iou_threshold, names[i], detections_per_image)
        for i, (r, c) in enumerate(zip(reference, candidate))
    ]
    return ComparisonReport(images, iou_threshold, agreement_ap(reference, candidate, iou_threshold))


def agreement_ap(
    reference: Sequence[RawDetections], candidate: Sequence[RawDetections], iou_threshold: float = 0.5
) -> float:
    """AP of ``candidate`` with ``reference``'s detections as the ground truth (1.0: the same detections).

    A label-free stand-in for the COCO AP delta at export time: candidate detections are taken by
    decreasing score and each claims the best-overlapping unclaimed reference detection of its label (IoU >=
    ``iou_threshold``), as COCO matching does; precision/recall are pooled over classes and images and
    integrated over all points. Unlike the matched fraction, a low-score detection that moves or swaps
    costs little, and a confident one that does costs much, which is how reduced precision should be judged.
    """
    scores: list[np.ndarray] = []
    hits: list[np.ndarray] = []
    total = 0
    for ref, cand in zip(reference, candidate):
        total += len(ref)
        order = np.argsort(-np.asarray(cand.scores), kind="stable")
        iou = (
            box_iou(cand.boxes[order], ref.boxes)
            if len(ref) and len(cand)
            else np.zeros((len(cand), len(ref)))
        )
        iou[np.asarray(cand.labels)[order][:, None] != np.asarray(ref.labels)[None, :]] = -1.0
        claimed = np.zeros(len(ref), bool)
        hit = np.zeros(len(cand), bool)
        for i in range(len(cand)):
            row = np.where(claimed, -1.0, iou[i])
            j = int(row.argmax()) if len(row) else -1
            if j >= 0 and row[j] >= iou_threshold:
                claimed[j] = hit[i] = True
        scores.append(np.asarray(cand.scores, np.float64)[order])
        hits.append(hit)
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    if total == 0 or len(all_scores) == 0:
        return 1.0 if total == len(all_scores) else 0.0
    tp = np.concatenate(hits)[np.argsort(-all_scores, kind="stable")]
    recall = np.cumsum(tp) / total
    precision = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # the best precision at this recall or beyond
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float((steps * envelope).sum())


def _pair_diffs(
    name: str,
    ref: np.ndarray | None,
    cand: np.ndarray | None,
    r: np.ndarray,
    c: np.ndarray,
    problems: list[str],
) -> np.ndarray | None:
    """Largest difference of each matched pair's ``name`` output; None where it cannot be compared."""
    if ref is None and cand is None:
        return None
    if ref is None or cand is None:
        side = "reference" if cand is None else "candidate"
        problems.append(f"{name}: only the {side} has {name}")
        return None
    if ref.shape[1:] != cand.shape[1:]:
        problems.append(f"{name}: shapes differ, reference {ref.shape[1:]} vs candidate {cand.shape[1:]}")
        return None
    if len(r) == 0:
        return np.zeros(0)
    if name == "keypoints":  # positions only: keypoint scores are unbounded heatmap logits
        diff = np.abs(ref[r, :, :2].astype(np.float64) - cand[c, :, :2])
    else:
        diff = np.abs(ref[r].astype(np.float64) - cand[c])
    return diff.reshape(len(r), -1).max(axis=1)


def _cut(dets: RawDetections, detections_per_image: int) -> float | None:
    """The lowest score kept where ``dets`` fills the per-image cap (the score a tie at the cut is at)."""
    return float(np.min(dets.scores)) if len(dets) >= detections_per_image else None


def _describe(dets: list[tuple[int, float]]) -> str:
    label, score = max(dets, key=lambda d: d[1])
    return f"label {label} score {score:.3f}"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"
