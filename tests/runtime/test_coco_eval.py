"""runtime.coco_eval: perfect detections score 1.0, and pycocotools and faster-coco-eval agree."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util

from runtime.coco_eval import detections_to_coco_results, evaluate_coco, format_metrics_table
from runtime.datasets import DatasetError
from runtime.structures import Detections

H, W = 120, 160

# pycocotools.mask.decode trips a numpy 2 deprecation inside pycocotools itself.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _dataset(seed: int = 0, num_images: int = 6, keypoints: bool = False) -> dict:
    """Ellipses of two categories (sizes spanning small/medium areas); the last image has no objects."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "width": W, "height": H, "file_name": f"{image_id}.png"})
        if image_id == num_images:
            continue
        for _ in range(rng.integers(1, 5)):
            mask = np.zeros((H, W), np.uint8)
            cx, cy = rng.uniform(20, W - 20), rng.uniform(20, H - 20)
            ax, ay = rng.uniform(3, 35), rng.uniform(3, 35)
            cv2.ellipse(
                mask, (int(cx), int(cy)), (int(ax), int(ay)), float(rng.uniform(0, 180)), 0, 360, 1, -1
            )
            rle = mask_util.encode(np.asfortranarray(mask))
            x, y, w, h = (float(v) for v in mask_util.toBbox(rle))
            rle["counts"] = rle["counts"].decode("ascii")
            ann = {"id": len(anns) + 1, "image_id": image_id, "category_id": int(rng.integers(1, 3)),
                   "segmentation": rle, "area": float(mask.sum()), "bbox": [x, y, w, h], "iscrowd": 0}  # fmt: skip
            if keypoints:
                kp = np.stack([rng.uniform(x, x + w, 17), rng.uniform(y, y + h, 17), np.full(17, 2.0)], 1)
                ann.update(keypoints=kp.reshape(-1).tolist(), num_keypoints=17)
            anns.append(ann)
    categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    if keypoints:
        for c in categories:
            c["keypoints"] = [f"k{i}" for i in range(17)]
    return {"images": images, "annotations": anns, "categories": categories}


def _perfect(dataset: dict, with_masks: bool = True, with_keypoints: bool = False) -> dict[int, Detections]:
    dets = {}
    for img in dataset["images"]:
        anns = [a for a in dataset["annotations"] if a["image_id"] == img["id"]]
        boxes = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        masks = (
            np.stack([mask_util.decode(a["segmentation"]) for a in anns]).astype(np.float32) if anns else None
        )
        dets[img["id"]] = Detections(
            boxes=boxes,
            scores=np.ones(len(anns), np.float32),
            labels=np.array([a["category_id"] for a in anns], np.int64),
            image_size=(H, W),
            masks=(masks if anns else np.zeros((0, H, W), np.float32)) if with_masks else None,
            keypoints=np.array([a["keypoints"] for a in anns], np.float32).reshape(-1, 17, 3)
            if with_keypoints
            else None,
        )
    return dets


def _perturbed(dataset: dict, seed: int = 1) -> dict[int, Detections]:
    """Shifted boxes/masks, random scores, some misses and some false positives (including on the empty image)."""
    rng = np.random.default_rng(seed)
    out = {}
    for image_id, det in _perfect(dataset).items():
        keep = rng.uniform(size=len(det)) > 0.2
        det = det.select(np.nonzero(keep)[0])
        shift = rng.integers(-4, 5, (len(det), 2))
        det.boxes = det.boxes + np.tile(shift, 2).astype(np.float32)
        rolled = [np.roll(m, tuple(s[::-1]), axis=(0, 1)) for m, s in zip(det.masks, shift)]
        det.masks = np.array(rolled, np.float32).reshape(-1, H, W)
        n_fp = int(rng.integers(0, 3))
        xy = rng.uniform(0, 100, (n_fp, 2))
        fp_boxes = np.concatenate([xy, xy + 20], 1).astype(np.float32)
        fp_masks = np.zeros((n_fp, H, W), np.float32)
        for m, b in zip(fp_masks, fp_boxes.astype(int)):
            m[b[1] : b[3], b[0] : b[2]] = 0.9
        out[image_id] = Detections(
            boxes=np.concatenate([det.boxes, fp_boxes]),
            scores=rng.uniform(0.05, 1, len(det) + n_fp).astype(np.float32),
            labels=np.concatenate([det.labels, rng.integers(1, 3, n_fp)]),
            image_size=(H, W),
            masks=np.concatenate([det.masks, fp_masks]),
        )
    return out


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_perfect_detections_score_one(backend: str, tmp_path: Path) -> None:
    dataset = _dataset(0)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(dataset))
    metrics = evaluate_coco(str(path), _perfect(dataset), backend=backend)
    assert set(metrics) == {"bbox", "segm"}  # no keypoints in this ground truth: skipped
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] == pytest.approx(1.0)
        assert metrics[iou_type]["AP75"] == pytest.approx(1.0)
        assert metrics[iou_type]["AR100"] == pytest.approx(1.0)


def test_perturbed_detections_same_ap_in_both_backends() -> None:
    dataset = _dataset(2, num_images=8)
    dets = _perturbed(dataset)
    a = evaluate_coco(dataset, dets, backend="pycocotools")
    b = evaluate_coco(dataset, dets, backend="faster_coco_eval")
    assert 0.1 < a["bbox"]["AP"] < 0.95 and 0.1 < a["segm"]["AP"] < 0.95  # really perturbed, not trivial
    for iou_type in ("bbox", "segm"):
        for name, value in a[iou_type].items():
            assert b[iou_type][name] == pytest.approx(value, abs=1e-6), (iou_type, name)
    table = format_metrics_table({"pycocotools": a, "faster": b}, reference="pycocotools")
    assert "delta vs pycocotools" in table and "+0.00" in table
    single = format_metrics_table(a)
    assert f"{100 * a['segm']['AP']:.2f}" in single and "segm" in single


def test_keypoints_zero_detections_and_skips() -> None:
    dataset = _dataset(3, keypoints=True)
    perfect = _perfect(dataset, with_masks=False, with_keypoints=True)
    metrics = evaluate_coco(dataset, perfect, backend="pycocotools")
    assert set(metrics) == {"bbox", "keypoints"}  # no masks in the detections: segm skipped
    assert metrics["keypoints"]["AP"] == pytest.approx(1.0)

    empty = {i: d.select(np.zeros(0, np.int64)) for i, d in perfect.items()}
    metrics = evaluate_coco(dataset, empty, iou_types=("bbox",), backend="faster_coco_eval")
    assert metrics["bbox"]["AP"] == 0.0

    # Evaluating a subset of images only counts their ground truth.
    subset = {i: perfect[i] for i in list(perfect)[:2]}
    assert evaluate_coco(dataset, subset, iou_types=("bbox",))["bbox"]["AR100"] == pytest.approx(1.0)


def test_results_format_and_user_errors() -> None:
    dataset = _dataset(4)
    dets = _perfect(dataset)
    results = detections_to_coco_results(dets, "segm", label_to_category={1: 11, 2: 22})
    assert {r["category_id"] for r in results} <= {11, 22}
    assert isinstance(results[0]["segmentation"]["counts"], str)
    json.dumps(results)
    bbox = detections_to_coco_results(dets, "bbox")
    first_ann = dataset["annotations"][0]
    assert bbox[0]["bbox"] == pytest.approx(first_ann["bbox"])
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate_coco(dataset, {999: dets[1]})
    with pytest.raises(ValueError, match="unknown COCO evaluation backend"):
        evaluate_coco(dataset, dets, backend="detectron")
    with pytest.raises(DatasetError, match="annotation file not found"):
        evaluate_coco("/nonexistent/gt.json", dets)


def test_contiguous_labels_map_to_category_ids_by_name() -> None:
    """maskrcnn-benchmark / detectron2 COCO models number the 80 classes 1..80, COCO's ids have gaps."""
    from runtime.coco_classes import COCO_CONTIGUOUS_CLASSES, COCO_TORCHVISION_CLASSES
    from runtime.coco_eval import categories_by_name
    from runtime.structures import Detections

    dataset = {
        "categories": [
            {"id": i, "name": n} for i, n in enumerate(COCO_TORCHVISION_CLASSES) if i and n != "N/A"
        ]
    }

    def dets(names):  # noqa: ANN001, ANN202
        return {
            1: Detections(
                np.zeros((0, 4), np.float32),
                np.zeros(0, np.float32),
                np.zeros(0, np.int64),
                (4, 4),
                class_names=list(names),
            )
        }

    mapping = categories_by_name(dataset, dets(COCO_CONTIGUOUS_CLASSES))
    assert (
        mapping is not None and mapping[1] == 1 and mapping[12] == 13 and mapping[80] == 90
    )  # stop sign, toothbrush
    assert categories_by_name(dataset, dets(COCO_TORCHVISION_CLASSES)) is None  # labels are the ids already
    assert (
        categories_by_name(dataset, dets(["__background__", "circle"])) is None
    )  # not this data set's names
