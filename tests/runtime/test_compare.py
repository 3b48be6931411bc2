"""compare_detections must pair equal detections and name exactly the output that diverged."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.compare import Tolerances, agreement_ap, compare_detections, match_detections
from runtime.structures import RawDetections


def _reference(seed: int = 0, n: int = 6) -> RawDetections:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 300, (n, 2))
    wh = rng.uniform(20, 80, (n, 2))
    return RawDetections(
        boxes=np.concatenate([xy, xy + wh], 1).astype(np.float32),
        scores=np.sort(rng.uniform(0.1, 1, n))[::-1].astype(np.float32),
        labels=np.arange(1, n + 1, dtype=np.int64) % 3 + 1,
        masks=rng.uniform(0, 1, (n, 28, 28)).astype(np.float32),
        keypoints=rng.uniform(0, 300, (n, 5, 3)).astype(np.float32),
    )


def _copy(d: RawDetections) -> RawDetections:
    return d.select(np.arange(len(d)))


def test_identical_and_reordered_detections_pass() -> None:
    ref = [_reference(0), _reference(1), RawDetections.empty(28, 5)]
    cand = [_copy(r) for r in ref]
    cand[1] = ref[1].select(np.array([1, 0, 2, 3, 5, 4]))  # order swapped: still the same detections
    report = compare_detections(ref, cand)
    assert report.check(Tolerances(box=0.0, score=0.0, mask=0.0, keypoint=0.0)) == []
    assert report.matched_reference == report.matched_candidate == 1.0
    assert report.num_matched == 12
    table = report.format_table()
    assert "all" in table and "100.0%" in table


def test_missing_detection_is_named() -> None:
    ref = [_reference(0)]
    cand = [ref[0].select(np.array([0, 1, 2, 4, 5]))]
    failures = compare_detections(ref, cand).check(Tolerances())
    assert len(failures) == 1
    assert "reference detections matched" in failures[0] and "image 0 misses 1" in failures[0]
    assert f"score {ref[0].scores[3]:.3f}" in failures[0]
    # A looser matching requirement accepts it.
    assert compare_detections(ref, cand).check(Tolerances(min_matched=0.8)) == []


def test_label_swap_is_not_matched() -> None:
    ref = [_reference(2)]
    cand = [_copy(ref[0])]
    cand[0].labels[[0, 1]] = cand[0].labels[[1, 0]] + 10
    report = compare_detections(ref, cand)
    assert report.images[0].num_matched == len(ref[0]) - 2
    failures = report.check(Tolerances())
    assert len(failures) == 2  # two reference detections unmatched, two candidate detections extra
    assert "reference detections matched" in failures[0] and "candidate detections matched" in failures[1]


def test_shifted_box_score_mask_and_keypoint_are_named() -> None:
    ref = [_reference(3), _reference(4)]
    cand = [_copy(r) for r in ref]
    cand[1].boxes[2] += np.float32(0.7)
    failures = compare_detections(ref, cand).check(Tolerances(box=0.05))
    assert len(failures) == 1 and failures[0].startswith("boxes:") and "(image 1)" in failures[0]
    assert "0.7" in failures[0]
    named = compare_detections(ref, cand, image_names=["a.jpg", "b.jpg"]).check(Tolerances(box=0.05))
    assert named[0].endswith("(image b.jpg)")

    cand = [_copy(r) for r in ref]
    cand[0].scores[4] -= np.float32(0.01)
    cand[0].masks[1] += np.float32(0.2)
    cand[1].keypoints[0, 3, 0] += np.float32(3.0)
    failures = compare_detections(ref, cand).check(Tolerances(mask=0.1, keypoint=1.0))
    assert [f.split(":")[0] for f in failures] == ["scores", "masks", "keypoints"]
    report = compare_detections(ref, cand)
    assert abs(report.images[0].max_score_diff - 0.01) < 1e-6
    assert abs(report.images[1].max_keypoint_diff - 3.0) < 1e-4


def test_masks_on_one_side_only_and_greedy_iou_pairs_best_overlap() -> None:
    ref = [_reference(5)]
    cand = [_copy(ref[0])]
    cand[0].masks = None
    assert any("only the reference has masks" in f for f in compare_detections(ref, cand).check(Tolerances()))

    # Two same-label boxes: the exact duplicate must pair with its twin, not with the merely overlapping one.
    ref_boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10]], np.float32)
    cand_boxes = np.array([[2, 0, 12, 10], [0, 0, 10, 10]], np.float32)
    pairs = match_detections(ref_boxes, np.array([1, 1]), cand_boxes, np.array([1, 1]))
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (1, 0)]


def test_agreement_ap_weighs_confident_divergence_over_low_score_churn() -> None:
    ref = [_reference(0, n=10), _reference(1, n=10), RawDetections.empty(28, 5)]
    assert agreement_ap(ref, [_copy(r) for r in ref]) == 1.0
    assert agreement_ap([RawDetections.empty()], [RawDetections.empty()]) == 1.0
    low_moved, top_moved = [_copy(r) for r in ref], [_copy(r) for r in ref]
    low_moved[0].boxes[9] += 500.0  # the least confident detection of image 0 lands elsewhere
    top_moved[0].boxes[0] += 500.0  # the most confident one does
    low_ap, top_ap = agreement_ap(ref, low_moved), agreement_ap(ref, top_moved)
    assert (
        compare_detections(ref, low_moved).matched_reference
        == compare_detections(ref, top_moved).matched_reference
    )
    assert low_ap == 0.95  # recall 19/20 at full precision: the false positive ranks last
    assert top_ap == pytest.approx(0.95 * 0.95)  # a confident false positive: precision 19/20 at every recall
    shifted = [_copy(r) for r in ref]
    shifted[1].boxes[:, [0, 2]] += 200.0  # every box of image 1 moved off its reference: no match
    report = compare_detections(ref, shifted)
    assert report.agreement_ap is not None and report.agreement_ap < 0.6
    failures = report.check(
        Tolerances(box=None, score=None, mask=None, keypoint=None, min_matched=0.0, min_ap=0.9)
    )
    assert len(failures) == 1 and failures[0].startswith("agreement AP50 0.")


def test_an_overlapping_swap_counts_like_an_unmatched_one() -> None:
    """Below min_matched 1, a pair beyond the tolerances uses the same allowance as a missing detection."""
    ref = [_reference(0, n=10), _reference(1, n=10)]
    fp16 = Tolerances(box=0.5, score=5e-3, mask=None, keypoint=None, min_matched=0.95)
    swapped = [_copy(r) for r in ref]
    swapped[0].boxes[9, 2:] += np.float32(8.0)  # another proposal won: overlapping, 8 px and 0.05 off
    swapped[0].scores[9] -= np.float32(0.05)
    report = compare_detections(ref, swapped)
    assert report.images[0].pairs_beyond(fp16).sum() == 1 and report.agreeing_fraction(fp16) == 19 / 20
    assert report.check(fp16) == []  # 1 of 20 is within the 5%, as a missing one would be
    missing = [swapped[0].select(np.arange(9)), swapped[1]]
    assert compare_detections(ref, missing).check(fp16) == []

    two = [_copy(s) for s in swapped]
    two[1].boxes[0] += np.float32(1.0)  # a second pair beyond: 18 of 20 agree
    failures = compare_detections(ref, two).check(fp16)
    assert [f.split(":")[0] for f in failures] == ["boxes", "scores", "detections"]
    assert (
        "90.0% agree" in failures[-1]
        and "2 matched pair(s) beyond them (image 0: 1; image 1: 1)" in failures[-1]
    )
    # at the default min_matched of 1, any pair beyond the tolerances fails, as before
    strict = Tolerances(box=0.5, score=5e-3)
    assert [f.split(":")[0] for f in compare_detections(ref, swapped).check(strict)] == ["boxes", "scores"]


def test_a_nan_difference_fails() -> None:
    """NaN compares false with every bound: it must not pass as "within tolerance"."""
    ref = [_reference(0), _reference(1)]
    cand = [_copy(r) for r in ref]
    cand[1].scores[2] = np.float32("nan")
    report = compare_detections(ref, cand)
    failures = report.check(Tolerances(box=0.05, score=1e-4))
    assert len(failures) == 1 and failures[0].startswith("scores:") and "(image 1)" in failures[0]
    assert report.images[1].pairs_beyond(Tolerances(score=1e-4)).sum() == 1


def _many(n: int = 120, seed: int = 5) -> RawDetections:
    """``n`` separated detections of one image, scores spread from 0.06 to 0.95 (the low tail is what swaps)."""
    rng = np.random.default_rng(seed)
    xy = np.stack(np.meshgrid(np.arange(12) * 100.0, np.arange(10) * 100.0), -1).reshape(-1, 2)[:n]
    return RawDetections(
        boxes=np.concatenate([xy, xy + 60], 1).astype(np.float32),
        scores=np.linspace(0.95, 0.06, n).astype(np.float32),
        labels=rng.integers(1, 4, n).astype(np.int64),
    )


def test_near_tie_rule_accepts_a_low_score_swap_and_nothing_else() -> None:
    from runtime.compare import NEAR_TIES

    exact = Tolerances(box=0.05, score=1e-4, near_ties=NEAR_TIES)
    ref = _many()
    low = int(np.argmin(ref.scores))  # 0.06: a detection a tie upstream may add or remove
    # one low-score detection missing, another (elsewhere) extra: accepted by the rule, rejected without it
    swapped = ref.select(np.setdiff1d(np.arange(len(ref)), [low]))
    extra = RawDetections(
        boxes=np.array([[5000, 5000, 5060, 5060]], np.float32), scores=np.array([0.08], np.float32),
        labels=np.array([1], np.int64),
    )  # fmt: skip
    cand = [
        RawDetections(
            boxes=np.concatenate([swapped.boxes, extra.boxes]), scores=np.concatenate([swapped.scores, extra.scores]),
            labels=np.concatenate([swapped.labels, extra.labels]),
        )
    ]  # fmt: skip
    report = compare_detections([ref], cand)
    assert report.check(exact) == []
    assert report.near_tie_swaps(exact) == 1
    assert report.check(Tolerances(box=0.05, score=1e-4)) != []
    # a real difference: a confident detection lost, or moved beyond the box tolerance
    confident = ref.select(np.arange(1, len(ref)))  # the 0.95 one gone
    failures = compare_detections([ref], [confident]).check(exact)
    assert failures and "scoring above 0.1" in failures[0] and "0.950" in failures[0]
    moved = _copy(ref)
    moved.boxes[0] += 1.0
    failures = compare_detections([ref], [moved]).check(exact)
    assert any("scoring above 0.1" in f for f in failures) and any(
        "boxes: max difference" in f for f in failures
    )
    # more low-score swaps than the allowance (1 in 120): rejected
    lows = np.argsort(ref.scores)[:2]
    failures = compare_detections([ref], [ref.select(np.setdiff1d(np.arange(len(ref)), lows))]).check(exact)
    assert failures and "more than the 1 near-tie swap(s)" in failures[0]


def test_ties_at_the_cap_degenerate_boxes_and_keypoint_grids_are_near_ties() -> None:
    from runtime.compare import NEAR_TIES

    exact = Tolerances(box=0.05, score=1e-4, keypoint=0.05, near_ties=NEAR_TIES)
    # a full image (cap 4) whose last slot holds one of two detections tied at score 1.0
    boxes = np.array(
        [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10], [80, 0, 90, 10]], np.float32
    )
    ones = np.ones(5, np.float32)
    labels = np.ones(5, np.int64)
    kps = np.zeros((5, 2, 3), np.float32)
    ref = RawDetections(boxes=boxes[:4], scores=ones[:4], labels=labels[:4], keypoints=kps[:4])
    cand = RawDetections(boxes=boxes[[0, 1, 2, 4]], scores=ones[:4], labels=labels[:4], keypoints=kps[:4])
    assert compare_detections([ref], [cand], detections_per_image=4).check(exact) == []
    assert compare_detections([ref], [cand], detections_per_image=5).check(exact) != []  # not full: no cut
    # degenerate boxes (zero width) pair with their twins although their IoU is 0
    flat = RawDetections(boxes=np.array([[5, 5, 5, 40]], np.float32), scores=ones[:1], labels=labels[:1])
    report = compare_detections([flat], [flat])
    assert report.num_matched == 1 and report.check(exact) == []
    # keypoints: a box 9.99 px against 10.01 px wide resizes the heatmap to 10 against 11 columns
    a = RawDetections(boxes=np.array([[0, 0, 9.99, 20]], np.float32), scores=ones[:1], labels=labels[:1],
                      keypoints=np.array([[[1, 1, 0], [2, 2, 0]]], np.float32))  # fmt: skip
    b = RawDetections(boxes=np.array([[0, 0, 10.01, 20]], np.float32), scores=ones[:1], labels=labels[:1],
                      keypoints=np.array([[[8, 1, 0], [2, 2, 0]]], np.float32))  # fmt: skip
    report = compare_detections([a], [b])
    assert report.check(exact) == [] and report.keypoint_grid_ties(exact) == 1
    # the same keypoint jump on one grid is a real difference
    b.boxes[0, 2] = 9.995
    failures = compare_detections([a], [b]).check(exact)
    assert any("keypoints: max difference" in f for f in failures)
