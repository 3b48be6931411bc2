"""The one COCO evaluation (bbox, segm, keypoints) used by the trainer, ``runtime.evaluate`` and the tests.

Results are built per IoU type exactly as torchvision's reference evaluation builds them (boxes as xywh,
masks as RLE of ``prob > 0.5``, keypoints alone), because loadRes derives each detection's area from the
fields present and the area decides APs/APm/APl. Either pycocotools or faster-coco-eval scores them; the
tests check both give the same AP so the faster one can be trusted.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec

import numpy as np
from tqdm import tqdm

from runtime.box_ops import xyxy_to_xywh
from runtime.datasets import check_coco_annotations, load_coco_annotations
from runtime.structures import Detections
from runtime.text_table import format_text_table

log = logging.getLogger(__name__)

IOU_TYPES = ("bbox", "segm", "keypoints")
BACKENDS = ("pycocotools", "faster_coco_eval")
#: Names of COCOeval's ``stats`` entries, in order.
DETECTION_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KEYPOINT_METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

CocoMetrics = dict[str, dict[str, float]]
P = ParamSpec("P")


@dataclass
class CocoTypeResult:
    """Everything one IoU type's evaluation yields: summary metrics plus the curves for PR plots."""

    metrics: dict[str, float]
    precision: np.ndarray  # [T iou thresholds, R recall points, K categories, A area ranges, M max dets]
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    category_ids: list[int]


def detections_to_coco_results(
    detections: Mapping[int, Detections],
    iou_type: str,
    label_to_category: Mapping[int, int] | None = None,
    mask_threshold: float = 0.5,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """COCO result dicts of one IoU type (JSON-serializable), labels mapped to category ids.

    Without ``label_to_category`` labels are taken to be COCO category ids already (torchvision's COCO
    models predict the 91-index ids).
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"unknown IoU type {iou_type!r}; expected one of {IOU_TYPES}")
    from pycocotools import mask as mask_util

    results: list[dict[str, Any]] = []
    # Encoding full-image masks is the slow part of an evaluation; show progress on real data sets.
    items = tqdm(
        detections.items(), desc=f"COCO {iou_type} results", leave=False,
        disable=not progress or len(detections) < 50,
    )  # fmt: skip
    for image_id, det in items:
        if len(det) == 0:
            continue
        categories = _categories(det.labels, label_to_category)
        scores = det.scores.astype(float).tolist()
        if iou_type == "bbox":
            for box, cat, score in zip(xyxy_to_xywh(det.boxes).tolist(), categories, scores):
                results.append({"image_id": int(image_id), "category_id": cat, "bbox": box, "score": score})
        elif iou_type == "segm":
            if det.masks is None:
                raise ValueError(f"image {image_id}: segm evaluation needs masks, these detections have none")
            for mask, cat, score in zip(det.masks, categories, scores):
                rle = mask_util.encode(
                    np.asfortranarray((mask > mask_threshold)[:, :, None].astype(np.uint8))
                )[0]
                rle["counts"] = rle["counts"].decode("ascii")
                results.append(
                    {"image_id": int(image_id), "category_id": cat, "segmentation": rle, "score": score}
                )
        else:
            if det.keypoints is None:
                raise ValueError(
                    f"image {image_id}: keypoint evaluation needs keypoints, these detections have none"
                )
            kps = det.keypoints.astype(np.float64).copy()
            kps[..., 2] = 1.0  # COCOeval reads only x and y of predictions; torchvision writes visibility 1
            for kp, cat, score in zip(kps.reshape(len(det), -1).tolist(), categories, scores):
                results.append(
                    {"image_id": int(image_id), "category_id": cat, "keypoints": kp, "score": score}
                )
    return results


def evaluate_coco_detailed(
    coco_gt: Any,
    detections: Mapping[int, Detections],
    iou_types: Sequence[str] = IOU_TYPES,
    backend: str = "pycocotools",
    label_to_category: Mapping[int, int] | None = None,
    verbose: bool = False,
    kpt_oks_sigmas: Sequence[float] | None = None,
    progress: bool = True,
) -> dict[str, CocoTypeResult]:
    """COCO results per IoU type: the metrics (values in [0, 1]) and precision arrays (for PR plots).

    ``detections`` maps every evaluated image id to its detections (an image with none still counts: its
    ground truth becomes misses); images of the annotation file that are absent are not evaluated. IoU types
    the ground truth or the detections lack (keypoints for Mask R-CNN, segm for Faster R-CNN) are skipped,
    so they are absent from the result. -1 marks a metric without ground truth (e.g. APs with no small
    objects), as in COCOeval.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown COCO evaluation backend {backend!r}; expected one of {BACKENDS}")
    unknown = [t for t in iou_types if t not in IOU_TYPES]
    if unknown:
        raise ValueError(f"unknown IoU type(s) {unknown}; expected some of {IOU_TYPES}")
    if not detections:
        raise ValueError("no images to evaluate: the detections mapping is empty")
    dataset = _load_dataset(coco_gt)
    gt_image_ids = {int(img["id"]) for img in dataset.get("images", [])}
    missing = sorted(int(i) for i in detections if int(i) not in gt_image_ids)
    if missing:
        raise ValueError(f"image ids {missing[:10]} are not in the ground truth ({len(missing)} in all)")

    if label_to_category is None:
        label_to_category = categories_by_name(dataset, detections)
    gt = _make_coco(dataset, backend)
    out: dict[str, CocoTypeResult] = {}
    for iou_type in iou_types:
        reason = _skip_reason(iou_type, dataset, detections)
        if reason:
            log.info("skipping %s evaluation: %s", iou_type, reason)
            continue
        results = detections_to_coco_results(detections, iou_type, label_to_category, progress=progress)
        out[iou_type] = _run_cocoeval(gt, dataset, results, iou_type, sorted(detections), backend, verbose,
                                      kpt_oks_sigmas)  # fmt: skip
    return out


def evaluate_coco(
    coco_gt: Any, detections: Mapping[int, Detections], iou_types: Sequence[str] = IOU_TYPES, **options: Any
) -> CocoMetrics:
    """COCO metrics per IoU type, e.g. ``{"bbox": {"AP": 0.37, ...}, "segm": {...}}`` (values in [0, 1]).

    :func:`evaluate_coco_detailed` without the precision arrays; ``options`` are its keywords (backend,
    label_to_category, verbose, kpt_oks_sigmas), passed on rather than repeated, so the two cannot drift apart.
    """
    detailed = evaluate_coco_detailed(coco_gt, detections, iou_types, **options)
    return {iou_type: r.metrics for iou_type, r in detailed.items()}


def format_metrics_table(
    results: Mapping[str, CocoMetrics] | CocoMetrics,
    reference: str | None = None,
    metrics: Iterable[str] = ("AP", "AP50", "AP75", "APs", "APm", "APl"),
) -> str:
    """Rows per (model, IoU type), AP in points (x100); with ``reference``, delta rows against that model.

    ``results`` maps model names to :func:`evaluate_coco` outputs; a single output is accepted as is.
    """
    metrics = list(metrics)
    if results and all(isinstance(v, (int, float)) for per in results.values() for v in per.values()):
        results = {"model": results}  # one evaluate_coco() output: {iou_type: {metric: value}}
    if reference is not None and reference not in results:
        raise ValueError(f"reference {reference!r} is not among the results {list(results)}")
    rows: list[list[str]] = []
    for name, per_type in results.items():
        for iou_type, values in per_type.items():
            rows.append([name, iou_type, *(_points(values.get(m)) for m in metrics)])
            if reference is not None and name != reference and iou_type in results[reference]:
                ref_values = results[reference][iou_type]
                rows.append(
                    [f"  delta vs {reference}", iou_type,
                     *(_delta(values.get(m), ref_values.get(m)) for m in metrics)]
                )  # fmt: skip
    return format_text_table(["model", "type", *metrics], rows)


def _run_cocoeval(
    gt: Any,
    dataset: dict[str, Any],
    results: list[dict[str, Any]],
    iou_type: str,
    image_ids: list[int],
    backend: str,
    verbose: bool,
    kpt_oks_sigmas: Sequence[float] | None,
) -> CocoTypeResult:
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        if results:
            dt = gt.loadRes(results)
        else:  # loadRes cannot take an empty list (pycocotools indexes results[0])
            dt = _make_coco({**dataset, "annotations": []}, backend)
        if backend == "pycocotools":
            from pycocotools.cocoeval import COCOeval

            ev = COCOeval(gt, dt, iou_type)
        else:
            from faster_coco_eval import COCOeval_faster

            ev = COCOeval_faster(
                gt, dt, iou_type, print_function=print if verbose else (lambda *a, **k: None)
            )
        ev.params.imgIds = [int(i) for i in image_ids]
        if iou_type == "keypoints":
            ev.params.kpt_oks_sigmas = _oks_sigmas(dataset, kpt_oks_sigmas, ev.params.kpt_oks_sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    names = KEYPOINT_METRICS if iou_type == "keypoints" else DETECTION_METRICS
    return CocoTypeResult(
        metrics={n: float(v) for n, v in zip(names, ev.stats)},
        precision=np.asarray(ev.eval["precision"]),
        iou_thresholds=np.asarray(ev.params.iouThrs),
        recall_thresholds=np.asarray(ev.params.recThrs),
        category_ids=[int(c) for c in ev.params.catIds],
    )


def _load_dataset(coco_gt: Any) -> dict[str, Any]:
    """The annotation dict from a path, a dict, or a pycocotools/faster-coco-eval COCO object, checked by
    ``runtime.datasets`` (the one reader of annotation files)."""
    if isinstance(coco_gt, (str, os.PathLike)):
        return load_coco_annotations(coco_gt)
    if isinstance(coco_gt, Mapping):
        dataset = dict(coco_gt)
    elif hasattr(coco_gt, "dataset"):
        dataset = coco_gt.dataset
    else:
        raise TypeError(f"expected an annotation path, dict or COCO object, got {type(coco_gt).__name__}")
    check_coco_annotations(dataset)
    return dataset


def _make_coco(dataset: dict[str, Any], backend: str) -> Any:
    if backend == "pycocotools":
        from pycocotools.coco import COCO
    else:
        try:
            from faster_coco_eval import COCO
        except ImportError:
            raise ValueError(
                "the faster_coco_eval backend needs the faster-coco-eval package (pip install faster-coco-eval); "
                "or use backend='pycocotools'"
            ) from None
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        # COCOeval (pycocotools) and loadRes mutate annotations ("ignore", "area"); keep the caller's intact.
        coco.dataset = copy.deepcopy(dataset)
        coco.createIndex()
    return coco


def _skip_reason(iou_type: str, dataset: dict[str, Any], detections: Mapping[int, Detections]) -> str | None:
    anns = dataset["annotations"]
    if iou_type == "segm":
        if all(d.masks is None for d in detections.values()):
            return "the detections have no masks"
        if anns and not any("segmentation" in a for a in anns):
            return "the ground truth has no segmentations"
    if iou_type == "keypoints":
        if all(d.keypoints is None for d in detections.values()):
            return "the detections have no keypoints"
        if not any(a.get("num_keypoints", 0) > 0 for a in anns):
            return "the ground truth has no keypoints"
    return None


def _oks_sigmas(dataset: dict[str, Any], given: Sequence[float] | None, default: np.ndarray) -> np.ndarray:
    """COCO's person sigmas fit 17 keypoints only; other skeletons need theirs (or a uniform guess)."""
    if given is not None:
        return np.asarray(given, np.float64)
    num = max((len(c.get("keypoints", [])) for c in dataset["categories"]), default=0)
    if num in (0, len(default)):
        return default
    log.warning("no OKS sigmas given for %d keypoints; using 0.05 for each", num)
    return np.full(num, 0.05)


def categories_by_name(
    dataset: Mapping[str, Any], detections: Mapping[int, Detections]
) -> dict[int, int] | None:
    """Label -> category id when the model's labels are not the data set's ids but its class names match.

    torchvision's COCO models predict COCO's category ids (91 labels with gaps), maskrcnn-benchmark's and
    detectron2's the 80 categories numbered 1..80: the same data set, other ids. None (labels are ids)
    when every named label already is its category's id, or when the names are not the data set's.
    """
    names = next((list(d.class_names) for d in detections.values() if d.class_names), None)
    if not names:
        return None
    by_name = {str(c["name"]): int(c["id"]) for c in dataset.get("categories", [])}
    by_id = {int(c["id"]): str(c["name"]) for c in dataset.get("categories", [])}
    named = {label: n for label, n in enumerate(names) if label > 0 and n not in ("__background__", "N/A")}
    if not named or all(by_id.get(label) == n for label, n in named.items()):
        return None
    if not all(n in by_name for n in named.values()):
        return None
    return {label: by_name[n] for label, n in named.items()}


def _categories(labels: np.ndarray, label_to_category: Mapping[int, int] | None) -> list[int]:
    labels = [int(v) for v in labels]
    if label_to_category is None:
        return labels
    unknown = sorted({v for v in labels if v not in label_to_category})
    if unknown:
        raise ValueError(f"labels {unknown} have no COCO category id in label_to_category")
    return [int(label_to_category[v]) for v in labels]


def _points(v: float | None) -> str:
    return "-" if v is None or v < 0 else f"{100 * v:.2f}"


def _delta(v: float | None, ref: float | None) -> str:
    if v is None or ref is None or v < 0 or ref < 0:
        return "-"
    return f"{100 * (v - ref):+.2f}"
