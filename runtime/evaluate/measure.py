"""Running models and their PyTorch reference over a COCO data set: an :class:`EvaluationReport` per model
(COCO AP of both, the AP deltas, detection matching), nothing printed."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from runtime.coco_eval import CocoTypeResult, evaluate_coco_detailed
from runtime.compare import ComparisonReport, ImageComparison, compare_detections
from runtime.datasets import load_coco_annotations
from runtime.image_io import ImageReadError, read_image
from runtime.postprocess import postprocess
from runtime.predictor import Predictor
from runtime.structures import Detections, RawDetections

log = logging.getLogger(__name__)


class EvaluationError(ValueError):
    """A user-facing problem with the evaluation's inputs (data set, annotations, models)."""


@dataclass
class ModelOutputs:
    """Raw outputs of one model over the evaluated images, with what pasting them needs."""

    name: str  # "reference" or "model": how tables and plots label it
    path: str
    backend: str
    raws: dict[int, RawDetections] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    output_convention: str = "torchvision"  # how its raw outputs are finished (runtime.postprocess)


@dataclass
class ImageRecord:
    image_id: int
    path: Path
    resized: tuple[int, int] = (0, 0)  # (h, w) the reference saw; candidates' boxes are rescaled to it
    original: tuple[int, int] = (0, 0)


class LazyDetections(Mapping[int, Detections]):
    """Image id -> pasted detections, pasted on access (runtime.postprocess) to keep memory flat."""

    def __init__(self, outputs: ModelOutputs, records: Mapping[int, ImageRecord]) -> None:
        self._outputs = outputs
        self._records = records

    def __getitem__(self, image_id: int) -> Detections:
        rec = self._records[image_id]
        out = self._outputs
        return postprocess(
            out.raws[image_id],
            rec.resized,
            rec.original,
            out.class_names,
            output_convention=out.output_convention,
        )

    def __iter__(self) -> Iterator[int]:
        return iter(self._outputs.raws)

    def __len__(self) -> int:
        return len(self._outputs.raws)


@dataclass
class EvaluationReport:
    model: ModelOutputs
    reference: ModelOutputs
    records: dict[int, ImageRecord]
    results: dict[str, dict[str, CocoTypeResult]]  # model name -> iou type -> result
    comparison: ComparisonReport
    skipped_images: list[str]
    max_ap_drop: float | None = None  # AP points

    @property
    def metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        return {name: {t: r.metrics for t, r in per.items()} for name, per in self.results.items()}

    def ap_deltas(self) -> dict[str, float]:
        """Candidate AP minus reference AP per IoU type, in AP points (x100)."""
        ref = self.results[self.reference.name]
        cand = self.results[self.model.name]
        return {t: 100.0 * (cand[t].metrics["AP"] - ref[t].metrics["AP"]) for t in ref if t in cand}

    def failures(self) -> list[str]:
        if self.max_ap_drop is None:
            return []
        return [
            f"{t} AP dropped by {-d:.2f} points (allowed {self.max_ap_drop:.2f})"
            for t, d in self.ap_deltas().items()
            if -d > self.max_ap_drop + 1e-9
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": {"path": self.model.path, "backend": self.model.backend},
            "reference": {"path": self.reference.path, "backend": self.reference.backend},
            "num_images": len(self.records),
            "skipped_images": self.skipped_images,
            "metrics": self.metrics,
            "ap_delta_points": self.ap_deltas(),
            "max_ap_drop": self.max_ap_drop,
            "passed": not self.failures(),
            "failures": self.failures(),
            "comparison": self.comparison.to_dict(),
        }


def run_models(
    models: Sequence[Predictor],
    reference: Predictor,
    dataset: dict[str, Any],
    img_dir: Path,
    max_images: int | None = None,
    progress: bool = True,
) -> tuple[list[ModelOutputs], ModelOutputs, dict[int, ImageRecord], list[str]]:
    """Every model and the reference on every readable image (decoded once, the reference run once).

    Several exports of one checkpoint (both flavors, FP16, INT8) share the reference's pass: it is the
    slowest model of the run. Unreadable images are named and skipped.
    """

    def outputs(name: str, p: Predictor) -> ModelOutputs:
        return ModelOutputs(
            name,
            str(p.backend.model_path),
            p.backend.name,
            class_names=p.info.class_names,
            output_convention=p.info.output_convention,
        )

    outs = [outputs("model", m) for m in models]
    out_r = outputs("reference", reference)
    records: dict[int, ImageRecord] = {}
    skipped: list[str] = []
    infos = sorted(dataset["images"], key=lambda im: int(im["id"]))
    if max_images is not None:
        infos = infos[:max_images]
    for info in tqdm(infos, desc="evaluate", unit="img", disable=not progress):
        path = img_dir / info["file_name"]
        try:
            image = read_image(path)
        except ImageReadError as e:
            log.warning("skipping image %s", e)
            skipped.append(str(e))
            continue
        image_id = int(info["id"])
        ref = reference.run([image], paste_masks=False)
        rec = ImageRecord(image_id, path, tuple(ref.batch.image_sizes[0].tolist()), image.shape[:2])  # type: ignore[arg-type]
        out_r.raws[image_id] = ref.raw[0]
        for model, out_m in zip(models, outs):
            cand = model.run([image], paste_masks=False)
            if tuple(cand.batch.image_sizes[0].tolist()) != rec.resized:
                # Different input sizes: raw boxes live in different pixels; map the candidate's to the reference's.
                cand.raw[0] = _rescale_raw(
                    cand.raw[0], tuple(cand.batch.image_sizes[0].tolist()), rec.resized
                )
            out_m.raws[image_id] = cand.raw[0]
        records[image_id] = rec
    return outs, out_r, records, skipped


def _rescale_raw(raw: RawDetections, from_hw: tuple[int, ...], to_hw: tuple[int, int]) -> RawDetections:
    from runtime.box_ops import scale_boxes, scale_keypoints

    return RawDetections(
        boxes=scale_boxes(raw.boxes, (from_hw[0], from_hw[1]), to_hw),
        scores=raw.scores,
        labels=raw.labels,
        masks=raw.masks,
        keypoints=None
        if raw.keypoints is None
        else scale_keypoints(raw.keypoints, (from_hw[0], from_hw[1]), to_hw),
    )


def evaluate_against_reference(
    model: Predictor,
    reference: Predictor,
    ann_file: Path,
    img_dir: Path,
    max_images: int | None = None,
    iou_threshold: float = 0.5,
    coco_backend: str = "pycocotools",
    max_ap_drop: float | None = None,
    progress: bool = True,
) -> EvaluationReport:
    """Run both models, score both with COCO, and match their detections image by image."""
    (report,) = evaluate_models_against_reference(
        [model], reference, ann_file, img_dir, max_images, iou_threshold, coco_backend, max_ap_drop, progress
    )
    return report


def evaluate_models_against_reference(
    models: Sequence[Predictor],
    reference: Predictor,
    ann_file: Path,
    img_dir: Path,
    max_images: int | None = None,
    iou_threshold: float = 0.5,
    coco_backend: str = "pycocotools",
    max_ap_drop: float | None = None,
    progress: bool = True,
) -> list[EvaluationReport]:
    """One report per model, against one run and one COCO evaluation of the reference."""
    if not models:
        raise EvaluationError("no model to evaluate")
    dataset = load_coco_annotations(ann_file)
    if not dataset["images"]:
        raise EvaluationError(f"{ann_file} lists no images")
    for model in models:
        if model.info.preprocess != reference.info.preprocess:
            log.warning(
                "%s pre-processes differently (%s vs reference %s): the AP delta includes that difference",
                model.backend.model_path, model.info.preprocess, reference.info.preprocess,
            )  # fmt: skip
        if model.info.num_classes != reference.info.num_classes:
            raise EvaluationError(
                f"{model.backend.model_path} has {model.info.num_classes} classes but the reference has "
                f"{reference.info.num_classes}: not an export of these weights"
            )
    outs, out_r, records, skipped = run_models(models, reference, dataset, img_dir, max_images, progress)
    if not records:
        raise EvaluationError(f"none of the images in {img_dir} could be read ({len(skipped)} skipped)")
    iou_types = ["bbox"]
    if reference.info.mask_size is not None:
        iou_types.append("segm")
    if reference.info.keypoint_names is not None:
        iou_types.append("keypoints")

    def score(out: ModelOutputs) -> dict[str, CocoTypeResult]:
        return evaluate_coco_detailed(
            dataset, LazyDetections(out, records), iou_types, coco_backend, progress=progress
        )

    ref_result = score(out_r)
    ids = list(records)
    reports = []
    for out_m in outs:
        comparison = compare_detections(
            [out_r.raws[i] for i in ids], [out_m.raws[i] for i in ids], iou_threshold,
            [records[i].path.name for i in ids],
        )  # fmt: skip
        results = {out_r.name: ref_result, out_m.name: score(out_m)}
        reports.append(EvaluationReport(out_m, out_r, records, results, comparison, skipped, max_ap_drop))
    return reports


def disagreement(im: ImageComparison) -> float:
    """How much two runs differ on one image: unmatched detections weighted by their scores, plus drift."""
    unmatched = sum(s for _, s in im.unmatched_reference) + sum(s for _, s in im.unmatched_candidate)
    drift = im.max_score_diff + min(im.max_box_diff / 10.0, 1.0)
    if im.num_matched:
        drift += 1.0 - im.min_iou
    return unmatched + drift
