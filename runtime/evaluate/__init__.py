"""COCO accuracy of a deployed model against its PyTorch reference: ``python -m runtime.evaluate``.

The candidate models (one, or several exports of one checkpoint) and the reference see the same decoded
images and go through the same pre/post-processing, so each AP delta is the export's cost alone. AP can
hide divergence (swapped or shifted detections that score the same), so detections are also matched one to
one (``runtime.compare``) and the images where the two disagree most are drawn side by side: the first
place to look when an export loses accuracy.

Raw outputs (M x M masks) are kept per image and pasted when the evaluation reads them, not stored pasted:
full-image masks of a few hundred images would take gigabytes."""

from runtime.evaluate.cli import main
from runtime.evaluate.measure import (
    EvaluationError,
    EvaluationReport,
    ImageRecord,
    LazyDetections,
    ModelOutputs,
    disagreement,
    evaluate_against_reference,
    evaluate_models_against_reference,
    run_models,
)
from runtime.evaluate.render import (
    format_report,
    plot_precision_recall,
    save_disagreements,
    split_for_drawing,
)

__all__ = [
    "EvaluationError",
    "EvaluationReport",
    "ImageRecord",
    "LazyDetections",
    "ModelOutputs",
    "disagreement",
    "evaluate_against_reference",
    "evaluate_models_against_reference",
    "format_report",
    "main",
    "plot_precision_recall",
    "run_models",
    "save_disagreements",
    "split_for_drawing",
]
