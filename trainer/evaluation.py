"""COCO evaluation of a PyTorch model through the runtime's own pipeline.

Images go through ``runtime.preprocess``, the model's raw forward and ``runtime.postprocess``, and the
scores come from ``runtime.coco_eval``: the numbers here are the ones ``runtime.evaluate`` reports for
the same weights, because it is the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from typing import Unpack  # Python 3.11; annotations only, so 3.10 imports this module too

import numpy as np
import torch
from torch import nn
from tqdm import tqdm
from yacs.config import CfgNode

from runtime.coco_eval import evaluate_coco
from runtime.predictor import Predictor, batched
from runtime.structures import Detections

from .datasets import COCODetection
from .torch_backend import TorchBackend, model_info_for


@dataclass
class EvaluationResult:
    metrics: dict[str, dict[str, float]]
    num_images: int
    seconds_per_image: float  # pre-process + model + post-process, wall clock
    detections: dict[int, Detections] = field(default_factory=dict, repr=False)


def iou_types_for(cfg: CfgNode) -> tuple[str, ...]:
    types = ["bbox"]
    if cfg.MODEL.MASK_ON:
        types.append("segm")
    if cfg.MODEL.KEYPOINT_ON:
        types.append("keypoints")
    return tuple(types)


class InferenceOptions(TypedDict, total=False):
    """``run_inference``'s optional keywords, which ``evaluate_model`` passes through unchanged."""

    device: torch.device | str
    max_images: int | None
    progress: bool
    #: the model's class names (index = label), when they are not the data set's category names by id, as
    #: for an imported model's contiguous COCO classes; COCO evaluation then maps them to ids by name
    class_names: Sequence[str] | None


@torch.no_grad()
def run_inference(
    model: nn.Module,
    cfg: CfgNode,
    dataset: COCODetection,
    device: torch.device | str = "cpu",
    max_images: int | None = None,
    progress: bool = True,
    class_names: Sequence[str] | None = None,
) -> tuple[dict[int, Detections], float]:
    """Detections for every image of ``dataset`` (original pixels), and the mean seconds per image.

    The model runs behind the runtime's ``Predictor`` (``TorchBackend.from_model``): the loop every
    deployed model runs, so these numbers are ``runtime.evaluate``'s for the same weights.
    """
    was_training = model.training
    model.eval()
    info = model_info_for(cfg, class_names or dataset.class_names)
    predictor = Predictor(TorchBackend.from_model(model, info, str(device)), confidence_threshold=0.0)
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    batches = list(batched(range(n), cfg.TEST.IMS_PER_BATCH))
    results: dict[int, Detections] = {}
    elapsed = 0.0
    try:
        for idx in tqdm(batches, desc="inference", unit="batch", disable=not progress, leave=False):
            images = [dataset.load_image_bgr(i) for i in idx]
            prediction = predictor.run(images)
            for i, det in zip(idx, prediction.detections):
                results[int(dataset.ids[i])] = det
            elapsed += prediction.times.total
    finally:
        model.train(was_training)
    return results, elapsed / max(n, 1)


def evaluate_model(
    model: nn.Module, cfg: CfgNode, dataset: COCODetection, **options: Unpack[InferenceOptions]
) -> EvaluationResult:
    detections, spi = run_inference(model, cfg, dataset, **options)
    metrics = evaluate_coco(dataset.coco, detections, iou_types=iou_types_for(cfg))
    return EvaluationResult(metrics, len(detections), spi, detections)


def summarize(result: EvaluationResult) -> dict[str, float]:
    """Flat ``{"bbox/AP": ...}`` for logs and JSON lines."""
    flat = {f"{t}/{k}": float(v) for t, m in result.metrics.items() for k, v in m.items()}
    flat["seconds_per_image"] = float(result.seconds_per_image)
    return {k: (round(v, 5) if np.isfinite(v) else v) for k, v in flat.items()}
