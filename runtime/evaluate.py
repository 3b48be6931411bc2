"""COCO accuracy of a deployed model against its PyTorch reference: ``python -m runtime.evaluate``.

The candidate models (one, or several exports of one checkpoint) and the reference see the same decoded
images and go through the same pre/post-processing, so each AP delta is the export's cost alone. AP can
hide divergence (swapped or shifted detections that score the same), so detections are also matched one to
one (``runtime.compare``) and the images where the two disagree most are drawn side by side: the first
place to look when an export loses accuracy.

Raw outputs (M x M masks) are kept per image and pasted when the evaluation reads them, not stored pasted:
full-image masks of a few hundred images would take gigabytes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from runtime.cli_common import add_backend_arguments, add_progress_argument, cli_main, user_errors
from runtime.coco_eval import CocoTypeResult, evaluate_coco_detailed, format_metrics_table
from runtime.compare import ComparisonReport, ImageComparison, compare_detections
from runtime.datasets import load_coco_annotations, resolve_dataset
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


def format_report(report: EvaluationReport, worst: int = 5) -> str:
    lines = [
        f"model:     {report.model.path} ({report.model.backend})",
        f"reference: {report.reference.path} ({report.reference.backend})",
        f"images:    {len(report.records)}",
        "",
        format_metrics_table(report.metrics, reference=report.reference.name),
        "",
    ]
    c = report.comparison
    d = c.to_dict()
    lines.append(
        f"detection matching (same label, IoU >= {c.iou_threshold}): {c.num_matched} matched; "
        f"{c.matched_reference:.1%} of {c.num_reference} reference, {c.matched_candidate:.1%} of "
        f"{c.num_candidate} model detections"
    )
    lines.append(
        "max differences of matched detections: "
        + ", ".join(
            f"{k} {_fmt(d[key])}"
            for k, key in (
                ("box px", "max_box_diff"),
                ("score", "max_score_diff"),
                ("mask", "max_mask_diff"),
                ("keypoint px", "max_keypoint_diff"),
            )  # fmt: skip
        )
    )
    ranked = sorted(c.images, key=disagreement, reverse=True)[:worst]
    ranked = [im for im in ranked if disagreement(im) > 0]
    if ranked:
        lines += ["", f"images where the two disagree most (top {len(ranked)}):"]
        lines.append(ComparisonReport(ranked, c.iou_threshold).format_table().rsplit("\n", 1)[0])
    if report.skipped_images:
        lines += [
            "",
            f"{len(report.skipped_images)} unreadable image(s) skipped:",
            *report.skipped_images[:10],
        ]
    deltas = ", ".join(f"{t} {v:+.2f}" for t, v in report.ap_deltas().items())
    lines += ["", f"AP delta (model - reference, points): {deltas}"]
    failures = report.failures()
    if report.max_ap_drop is not None:
        lines.append(
            "FAILED: " + "; ".join(failures) if failures else f"PASSED (max AP drop {report.max_ap_drop})"
        )
    return "\n".join(lines)


def plot_precision_recall(report: EvaluationReport, path: str | os.PathLike[str]) -> None:
    """Precision-recall curves of both models per IoU type, at IoU 0.5 and averaged over 0.5:0.95."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types = list(report.results[report.reference.name])
    fig, axes = plt.subplots(1, len(types), figsize=(5 * len(types), 4.2), squeeze=False)
    for ax, iou_type in zip(axes[0], types):
        for out, color in ((report.reference, "#1f77b4"), (report.model, "#d62728")):
            r = report.results[out.name].get(iou_type)
            if r is None:
                continue
            label = f"{out.name}: {Path(out.path).name} ({out.backend})"
            at50 = _mean_precision(r, iou_index=_iou_index(r, 0.5))
            mean = _mean_precision(r, iou_index=None)
            ax.plot(
                r.recall_thresholds,
                at50,
                color=color,
                label=f"{label}, IoU .50, AP50 {100 * r.metrics['AP50']:.1f}",
            )
            ax.plot(
                r.recall_thresholds,
                mean,
                color=color,
                ls="--",
                label=f"{label}, IoU .50:.95, AP {100 * r.metrics['AP']:.1f}",
            )
        ax.set(title=iou_type, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{len(report.records)} images; all areas, up to 100 detections", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _iou_index(r: CocoTypeResult, iou: float) -> int:
    return int(np.argmin(np.abs(r.iou_thresholds - iou)))


def _mean_precision(r: CocoTypeResult, iou_index: int | None) -> np.ndarray:
    """Precision per recall point, averaged over categories (and IoUs) that have ground truth."""
    p = r.precision[:, :, :, 0, -1]  # [T, R, K], all areas, max detections
    if iou_index is not None:
        p = p[iou_index : iou_index + 1]
    p = np.where(p < 0, np.nan, p)
    with np.errstate(invalid="ignore"), _quiet_nan_warnings():
        mean = np.nanmean(p, axis=(0, 2))
    return np.nan_to_num(mean, nan=0.0)


class _quiet_nan_warnings:
    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)  # type: ignore[arg-type]


def save_disagreements(
    report: EvaluationReport,
    path: str | os.PathLike[str],
    count: int = 4,
    score_threshold: float = 0.5,
    max_unmatched: int = 5,
) -> int:
    """A picture of the ``count`` images where the models disagree most, reference left, model right.

    The matching compares detections of every score, so the picture draws what was compared, not only what
    clears a display threshold: matched detections at ``score_threshold`` or above, and every unmatched one
    at or above it plus the highest-scoring unmatched ones below it (``max_unmatched`` in all), labelled
    "unmatched". A model trained for a few hundred iterations often has nothing above 0.5; the picture then
    still shows why the two runs differ. A legend above the rows states the rules and the threshold.
    Returns how many images it shows (0 writes nothing: the models agree everywhere).
    """
    import cv2

    from runtime.draw import caption_bar, draw_detections, side_by_side

    ids = list(report.records)
    ranked = sorted(zip(report.comparison.images, ids), key=lambda p: disagreement(p[0]), reverse=True)
    ranked = [(im, i) for im, i in ranked[:count] if disagreement(im) > 0]
    if not ranked:
        return 0
    rows = []
    for im, image_id in ranked:
        rec = report.records[image_id]
        image = read_image(rec.path)
        panels, counts = [], []
        for side, out in enumerate((report.reference, report.model)):
            det = LazyDetections(out, report.records)[image_id]
            matched, unmatched = split_for_drawing(det, im.pairs[:, side], score_threshold, max_unmatched)
            picture = draw_detections(image, matched)
            panels.append(draw_detections(picture, unmatched, label_suffix=" unmatched"))
            counts.append(f"{len(matched)} matched + {len(unmatched)} unmatched")
        # Short titles and captions: nothing here wraps, and data set images can be 200 px wide.
        row = side_by_side(panels[0], panels[1], ("reference", "model"))
        caption = [f"{rec.path.name}, drawn:", f"ref {counts[0]}", f"model {counts[1]}"]
        rows.append(np.vstack([caption_bar(row.shape[1], caption, scale=0.4), row]))
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    legend = caption_bar(
        width,
        [
            "left: reference, right: model",
            f"matched: same label, IoU >= {report.comparison.iou_threshold:g},",
            "  at any score",
            f"drawn: matched ones with score >= {score_threshold:.2f};",
            f"  unmatched ones (marked) >= {score_threshold:.2f},",
            f"  or the {max_unmatched} best-scoring ones",
        ],
        scale=0.4,
    )
    if not cv2.imwrite(str(path), np.vstack([legend, *padded])):
        raise OSError(f"could not write {path}")
    return len(rows)


def split_for_drawing(
    det: Detections, matched_indices: np.ndarray, score_threshold: float, max_unmatched: int
) -> tuple[Detections, Detections]:
    """(matched detections to draw, unmatched detections to draw) of one side of a comparison.

    Matched ones are drawn from ``score_threshold`` up; unmatched ones are what a comparison is about, so all
    of those above the threshold are drawn, and the best-scoring others up to ``max_unmatched`` in total.
    """
    is_matched = np.zeros(len(det), bool)
    is_matched[np.asarray(matched_indices, np.int64)] = True
    matched = np.nonzero(is_matched & (det.scores >= score_threshold))[0]
    others = np.nonzero(~is_matched)[0]
    others = others[np.argsort(-det.scores[others], kind="stable")]
    above = int(np.count_nonzero(det.scores[others] >= score_threshold))
    unmatched = others[: max(above, min(max_unmatched, len(others)))]
    return det.select(matched), det.select(np.sort(unmatched))


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runtime.evaluate",
        description="COCO AP of a model (.onnx, .xml, .engine, .pth) and its difference to the PyTorch reference.",
    )
    p.add_argument(
        "--model",
        required=True,
        action="append",
        help="the model to check; repeat it to check several exports of one checkpoint against one reference run "
        "(then --json/--plot/--disagreements need {model} in their names, the model file's stem)",
    )
    p.add_argument("--reference", required=True, help="the PyTorch weights it came from (.pth)")
    add_backend_arguments(p, backend_help="backend for every --model (default: from each file's extension)")
    data = p.add_argument_group("data (a catalog name, or explicit files)")
    data.add_argument("--dataset", help="data set name from the trainer's catalog, e.g. shapes_val")
    data.add_argument(
        "--datasets-root", default="datasets", help="root of catalog data sets (default: datasets)"
    )
    data.add_argument("--annotations", help="COCO annotation JSON")
    data.add_argument("--images", help="folder holding the annotation file's images")
    p.add_argument("--max-images", type=int, help="evaluate only the first N images")
    p.add_argument(
        "--max-ap-drop", type=float, help="exit 1 if bbox/segm/keypoint AP drops by more (AP points, 0-100)"
    )
    p.add_argument(
        "--config-file",
        help="config of every .pth --model: needed for plain state dicts; overrides their own",
    )
    p.add_argument("--reference-config-file", help="config of --reference when it is a plain state dict")
    p.add_argument(
        "--iou-threshold", type=float, default=0.5, help="IoU for matching detections (default 0.5)"
    )
    p.add_argument("--coco-backend", default="pycocotools", choices=("pycocotools", "faster_coco_eval"))
    p.add_argument("--json", help="write metrics, deltas and matching to this JSON file")
    p.add_argument("--plot", help="write a precision-recall plot (PNG)")
    p.add_argument(
        "--disagreements", help="write side-by-side pictures of the most different images (PNG/JPG)"
    )
    p.add_argument("--num-disagreements", type=int, default=4)
    p.add_argument("--vis-threshold", type=float, default=0.5, help="score threshold of the pictures")
    add_progress_argument(p)
    return p


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with user_errors():  # EvaluationError and DatasetError are ValueErrors
        spec = resolve_dataset(args.dataset, args.annotations, args.images, args.datasets_root)
        ann_file, img_dir = spec.ann_file, spec.img_dir
        common = {
            "confidence_threshold": 0.0,
            "device": args.device,
            "threads": args.threads,
            "strict_options": False,
        }
        outputs = _output_paths(args, args.model)
        reference = Predictor(
            args.reference, backend="torch", config_file=args.reference_config_file, **common
        )
        models = [
            Predictor(m, backend=args.backend, config_file=args.config_file, **common) for m in args.model
        ]
        reports = evaluate_models_against_reference(
            models, reference, ann_file, img_dir, args.max_images, args.iou_threshold, args.coco_backend,
            args.max_ap_drop, not args.no_progress,
        )  # fmt: skip
    for report, paths in zip(reports, outputs):
        if len(reports) > 1:
            print(f"\n=== {report.model.path} ===")
        print(format_report(report))
        _write_outputs(report, paths, args.num_disagreements, args.vis_threshold)
    failed = [r.model.path for r in reports if r.failures()]
    if len(reports) > 1 and args.max_ap_drop is not None:
        print(
            f"\n{len(reports) - len(failed)} of {len(reports)} models PASSED"
            + (f"; FAILED: {', '.join(failed)}" if failed else "")
        )
    return 1 if failed else 0


_OUTPUT_OPTIONS = ("json", "plot", "disagreements")


def _output_paths(args: argparse.Namespace, models: list[str]) -> list[dict[str, str]]:
    """Each model's output files: ``{model}`` in a name becomes the model file's stem (its name with the
    extension, ``model.onnx`` -> ``model_onnx``, where stems repeat: an export and its engine).

    Checked before any model loads, so a run of several minutes does not end by overwriting one file with
    another model's results.
    """
    for option in _OUTPUT_OPTIONS:
        path = getattr(args, option)
        if path and len(models) > 1 and "{model}" not in path:
            example = Path(path).with_name(Path(path).stem + "_{model}" + Path(path).suffix)
            raise EvaluationError(
                f"--{option} {path}: with {len(models)} models the name needs {{model}} "
                f"(e.g. {example}), or each model overwrites the last"
            )
    names = [Path(m).stem for m in models]
    if len(set(names)) < len(names):
        names = [Path(m).name.replace(".", "_") for m in models]
    if len(set(names)) < len(names) and any(getattr(args, o) for o in _OUTPUT_OPTIONS):
        raise EvaluationError(
            f"the models' file names {names} repeat, so {{model}} cannot tell their outputs apart; give them "
            f"different names"
        )
    return [
        {o: getattr(args, o).replace("{model}", name) for o in _OUTPUT_OPTIONS if getattr(args, o)}
        for name in names
    ]


def _write_outputs(report: EvaluationReport, paths: dict[str, str], count: int, threshold: float) -> None:
    if "json" in paths:
        Path(paths["json"]).write_text(json.dumps(report.to_dict(), indent=2))
        print(f"wrote {paths['json']}")
    if "plot" in paths:
        plot_precision_recall(report, paths["plot"])
        print(f"wrote {paths['plot']}")
    if "disagreements" in paths:
        n = save_disagreements(report, paths["disagreements"], count, threshold)
        print(
            f"wrote {paths['disagreements']} ({n} images)"
            if n
            else "no disagreements to draw: the models agree"
        )


if __name__ == "__main__":
    sys.exit(main())
