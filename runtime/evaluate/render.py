"""The evaluation as people read it: the text report, precision-recall curves, disagreement pictures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from runtime.coco_eval import CocoTypeResult, format_metrics_table
from runtime.compare import ComparisonReport
from runtime.evaluate.measure import EvaluationReport, LazyDetections, disagreement
from runtime.image_io import read_image
from runtime.structures import Detections


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
