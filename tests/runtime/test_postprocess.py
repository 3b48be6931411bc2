"""Host mask pasting and box scaling must equal torchvision's post-processing."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.postprocess import paste_masks, postprocess
from runtime.structures import RawDetections

torch = pytest.importorskip("torch")
roi_heads = pytest.importorskip("torchvision.models.detection.roi_heads")
transform_mod = pytest.importorskip("torchvision.models.detection.transform")


def _random_boxes(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Boxes inside, partially outside and tiny; every box overlaps the image (as detector boxes do)."""
    x0 = rng.uniform(-40, w - 1, n)
    y0 = rng.uniform(-40, h - 1, n)
    bw = np.exp(rng.uniform(np.log(0.2), np.log(1.5 * w), n))
    bh = np.exp(rng.uniform(np.log(0.2), np.log(1.5 * h), n))
    boxes = np.stack([x0, y0, x0 + bw, y0 + bh], 1)
    boxes[:, 2] = np.maximum(boxes[:, 2], 1.5)
    boxes[:, 3] = np.maximum(boxes[:, 3], 1.5)
    return boxes.astype(np.float32)


@pytest.mark.parametrize("seed,mask_size", [(0, 28), (1, 14)])
def test_paste_masks_matches_torchvision(seed: int, mask_size: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = 240, 330
    boxes = _random_boxes(rng, 150, h, w)
    # Smooth-ish masks with values near 0.5 so the binarization is sensitive to small errors.
    masks = np.clip(rng.normal(0.5, 0.25, (len(boxes), mask_size, mask_size)), 0, 1).astype(np.float32)
    ours = paste_masks(masks, boxes, (h, w))
    ref = roi_heads.paste_masks_in_image(torch.from_numpy(masks)[:, None], torch.from_numpy(boxes), (h, w))
    ref = ref[:, 0].numpy()
    assert ours.shape == ref.shape == (len(boxes), h, w)
    disagreement = float(np.mean((ours > 0.5) != (ref > 0.5)))
    max_diff = float(np.abs(ours - ref).max())
    print(f"binary disagreement {disagreement:.2e}, max prob difference {max_diff:.2e}")
    assert disagreement < 1e-4
    assert max_diff < 1e-5
    assert (ours > 0).any(axis=(1, 2)).sum() > 0.9 * len(boxes)  # the test really pasted something


def test_paste_masks_empty_and_outside() -> None:
    assert paste_masks(np.zeros((0, 28, 28), np.float32), np.zeros((0, 4)), (10, 20)).shape == (0, 10, 20)
    out = paste_masks(
        np.ones((1, 28, 28), np.float32), np.array([[-50, -50, -20, -20]], np.float32), (10, 20)
    )
    assert not out.any()
    with pytest.raises(ValueError, match="2 masks but 1 boxes"):
        paste_masks(np.ones((2, 28, 28), np.float32), np.zeros((1, 4)), (10, 20))


def test_postprocess_matches_torchvision_transform() -> None:
    rng = np.random.default_rng(3)
    resized, original = (320, 427), (480, 640)
    boxes = _random_boxes(rng, 12, *resized)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, resized[1])
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, resized[0])
    scores = np.sort(rng.uniform(0, 1, 12)).astype(np.float32)[::-1].copy()
    raw = RawDetections(
        boxes=boxes,
        scores=scores,
        labels=rng.integers(1, 5, 12),
        masks=rng.uniform(0, 1, (12, 28, 28)).astype(np.float32),
        keypoints=np.concatenate([rng.uniform(0, 300, (12, 17, 2)), rng.normal(size=(12, 17, 1))], 2).astype(
            np.float32
        ),
    )
    det = postprocess(raw, resized, original, class_names=["__background__", "a", "b", "c", "d"])
    t = transform_mod.GeneralizedRCNNTransform(800, 1333, [0, 0, 0], [1, 1, 1]).eval()
    ref = t.postprocess(
        [{"boxes": torch.from_numpy(boxes), "masks": torch.from_numpy(raw.masks)[:, None],
          "keypoints": torch.from_numpy(raw.keypoints)}],
        [resized], [original],
    )[0]  # fmt: skip
    np.testing.assert_array_equal(det.boxes, ref["boxes"].numpy())
    np.testing.assert_array_equal(det.keypoints, ref["keypoints"].numpy())
    assert np.abs(det.masks - ref["masks"][:, 0].numpy()).max() < 1e-5
    assert det.image_size == original and det.class_names[1] == "a"

    kept = postprocess(raw, resized, original, score_threshold=0.5)
    assert len(kept) == int((scores >= 0.5).sum()) and np.all(kept.scores >= 0.5)
    assert kept.masks.shape == (len(kept), *original)


def test_heatmaps_to_keypoints_matches_torchvision() -> None:
    from runtime.postprocess import heatmaps_to_keypoints

    rng = np.random.default_rng(5)
    boxes = _random_boxes(rng, 40, 300, 400)
    boxes[:3, 2:] = boxes[:3, :2] + 0.4  # sub-pixel boxes: torchvision clamps their size to 1
    heatmaps = rng.normal(0, 2, (len(boxes), 5, 56, 56)).astype(np.float32)
    ours = heatmaps_to_keypoints(heatmaps, boxes)
    xy, scores = roi_heads.heatmaps_to_keypoints(torch.from_numpy(heatmaps), torch.from_numpy(boxes))
    assert ours.shape == (40, 5, 3)
    np.testing.assert_array_equal(ours[..., :2], xy[..., :2].numpy())  # the same argmax pixel, exactly
    np.testing.assert_allclose(ours[..., 2], scores.numpy(), atol=2e-5, rtol=0)  # float32 rounding order
    assert heatmaps_to_keypoints(np.zeros((0, 5, 56, 56)), np.zeros((0, 4))).shape == (0, 5, 3)
    with pytest.raises(ValueError, match="heatmaps must be"):
        heatmaps_to_keypoints(heatmaps[:2], boxes[:3])


def test_contract_outputs_decode_keypoint_heatmaps() -> None:
    from runtime import onnx_contract as contract
    from runtime.postprocess import heatmaps_to_keypoints

    rng = np.random.default_rng(6)
    boxes = np.zeros((2, 3, 4), np.float32)
    boxes[0, :2] = [[10, 20, 60, 90], [0, 0, 30, 12]]
    heatmaps = rng.normal(size=(2, 3, 4, 56, 56)).astype(np.float32)
    outputs = {
        contract.OUTPUT_NUM_DETECTIONS: np.array([2, 0]),
        contract.OUTPUT_BOXES: boxes,
        contract.OUTPUT_SCORES: np.zeros((2, 3), np.float32),
        contract.OUTPUT_LABELS: np.ones((2, 3), np.int64),
        contract.OUTPUT_KEYPOINT_HEATMAPS: heatmaps,
    }
    first, empty = contract.outputs_to_raw(outputs)
    np.testing.assert_array_equal(first.keypoints, heatmaps_to_keypoints(heatmaps[0, :2], boxes[0, :2]))
    assert empty.keypoints is not None and empty.keypoints.shape == (0, 4, 3)
