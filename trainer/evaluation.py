"""COCO evaluation of a PyTorch model through the runtime's own pipeline.

Images go through ``runtime.preprocess``, the model's raw forward and ``runtime.postprocess``, and the
scores come from ``runtime.coco_eval``: the numbers here are the ones ``runtime.evaluate`` reports for
the same weights, because it is the same code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm
from yacs.config import CfgNode

from runtime.coco_eval import evaluate_coco
from runtime.postprocess import postprocess
from runtime.preprocess import preprocess
from runtime.structures import Detections

from .datasets import COCODetection
from .inference import preprocess_params, raw_forward_batch


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


@torch.no_grad()
def run_inference(
    model: nn.Module,
    cfg: CfgNode,
    dataset: COCODetection,
    device: torch.device | str = "cpu",
    max_images: int | None = None,
    progress: bool = True,
) -> tuple[dict[int, Detections], float]:
    """Detections for every image of ``dataset`` (original pixels), and the mean seconds per image."""
    was_training = model.training
    model.eval()
    params = preprocess_params(cfg)
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    bs = cfg.TEST.IMS_PER_BATCH
    results: dict[int, Detections] = {}
    elapsed = 0.0
    try:
        for start in tqdm(range(0, n, bs), desc="inference", unit="batch", disable=not progress, leave=False):
            idx = list(range(start, min(start + bs, n)))
            images = [dataset.load_image_bgr(i) for i in idx]
            t0 = time.perf_counter()
            batch = preprocess(images, params)
            raws = raw_forward_batch(model, batch, device)
            for i, raw, rs, os_ in zip(idx, raws, batch.image_sizes, batch.original_sizes):
                det = postprocess(raw, tuple(rs), tuple(os_), class_names=dataset.class_names)
                results[int(dataset.ids[i])] = det
            elapsed += time.perf_counter() - t0
    finally:
        model.train(was_training)
    return results, elapsed / max(n, 1)


def evaluate_model(
    model: nn.Module,
    cfg: CfgNode,
    dataset: COCODetection,
    device: torch.device | str = "cpu",
    max_images: int | None = None,
    progress: bool = True,
) -> EvaluationResult:
    detections, spi = run_inference(model, cfg, dataset, device, max_images, progress)
    metrics = evaluate_coco(dataset.coco, detections, iou_types=iou_types_for(cfg))
    return EvaluationResult(metrics, len(detections), spi, detections)


def summarize(result: EvaluationResult) -> dict[str, float]:
    """Flat ``{"bbox/AP": ...}`` for logs and JSON lines."""
    flat = {f"{t}/{k}": float(v) for t, m in result.metrics.items() for k, v in m.items()}
    flat["seconds_per_image"] = float(result.seconds_per_image)
    return {k: (round(v, 5) if np.isfinite(v) else v) for k, v in flat.items()}
