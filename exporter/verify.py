"""Export-time verification, Polygraphy-style: the ONNX model under ONNX Runtime vs PyTorch on real inputs.

The images cover what breaks exported detectors: sizes the resize shrinks and sizes it enlarges, two
aspect ratios, batches of 2 with different image sizes (padding inside a batch), and a blank image (often
zero detections). Both sides get the same ``runtime.preprocess`` output; the comparison is
``runtime.compare`` and the ONNX side runs through ``runtime``'s ONNX Runtime backend, so what is verified
is what gets deployed.

The batch check then holds the exported model to its own answers: every image in calls of up to four
(different sizes and aspect ratios, and two images of one canvas so that a real multi-image call runs)
against the same image alone, with the same tolerances (:func:`batch_report`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from torch import nn
from tqdm import tqdm

from exporter.errors import ExportError, VerificationError
from runtime import onnx_contract as contract
from runtime.atomic_files import replace_together
from runtime.compare import NEAR_TIES, OUTPUTS, ComparisonReport, Tolerances, compare_detections
from runtime.cpu_features import cpu_features
from runtime.engine_sidecar import sidecar_path
from runtime.image_io import ImageReadError, list_images, read_image
from runtime.model_file import load_backend, read_model_info, unverified_path
from runtime.openvino_ir import bin_path
from runtime.predictor import Predictor, batched
from runtime.preprocess import PreprocessParams
from runtime.structures import RawDetections
from runtime.synthetic import images_around
from trainer.torch_backend import TorchBackend

#: "the export is exact": float32 rounding only, and ties inside the model resolved either way
#: (:data:`runtime.compare.NEAR_TIES`: a few low-score detections may swap). Masks get 1e-2: a random-init R-50 mask head amplifies
#: 1e-5 feature differences to ~4e-3 in probability (pasting thresholds at 0.5). Keypoints get the box
#: tolerance: both sides decode their heatmaps with ``runtime.postprocess.heatmaps_to_keypoints``, so the
#: argmax pixel is the same and a keypoint moves only with its box
EXPORT_TOLERANCES = Tolerances(box=0.05, score=1e-4, mask=1e-2, keypoint=0.05, near_ties=NEAR_TIES)


@dataclass
class VerificationResult:
    report: ComparisonReport
    failures: list[str]
    #: the exported model batched against itself one image per call (:func:`batch_report`)
    batched: ComparisonReport | None = None
    load_warnings: list[str] = field(default_factory=list)
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    #: the CPU the numbers were measured on, with its features (INT8 results depend on VNNI)
    cpu: str = ""

    @property
    def passed(self) -> bool:
        return not self.failures


def verification_paths(source: int | str | Path) -> list[Path]:
    """The image files of ``--verify-images`` (none for ``--verify N``), checked before anything is exported:
    a wrong folder is a user's mistake to report at once, not after minutes of tracing."""
    if isinstance(source, int):
        if source < 1:
            raise ExportError(f"--verify needs at least 1 image, got {source}")
        return []
    try:
        return list_images(source)
    except FileNotFoundError as e:  # list_images never returns an empty list: it says what it did not find
        raise ExportError(f"--verify-images: {e}") from None


def load_images(source: int | str | Path, params: PreprocessParams) -> list[np.ndarray]:
    paths = verification_paths(source)
    if isinstance(source, int):
        return images_around(source, params)
    try:
        return [read_image(p) for p in paths]
    except ImageReadError as e:
        raise ExportError(f"--verify-images: {e}") from None


def onnxruntime_load_warnings(model_path: str | Path) -> list[str]:
    """Lines ONNX Runtime logs at warning level or above while loading the model (captured from fd 2)."""
    so = ort.SessionOptions()
    so.log_severity_level = 2  # warnings and errors
    info = contract.read_metadata(model_path)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            if info.flavor == "trt":
                from runtime.plugins.ort_reference import reference_session

                reference_session(model_path, so)
            else:
                ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    return [line for line in text.splitlines() if line.strip()]


def run_both(
    model_path: str | Path,
    model: nn.Module,
    images: Sequence[np.ndarray],
    progress: bool = True,
    candidate: Predictor | None = None,
) -> tuple[list[RawDetections], list[RawDetections], list[tuple[int, int]]]:
    """Reference (PyTorch) and candidate detections of every image, batched by 2.

    The candidate runs under the backend of its file type (ONNX Runtime for .onnx, OpenVINO for an IR's
    .xml), opened here unless the caller passes it open (and then closes it). Both see the batch
    pre-processed once, as the exported model's metadata says (a static model's canvas included), so any
    difference is the export's.
    """
    opened = candidate is None
    if candidate is None:
        candidate = Predictor(load_backend(model_path, threads=2), confidence_threshold=0.0)
    reference = Predictor(TorchBackend.from_model(model, candidate.info), confidence_threshold=0.0)
    ref_raws: list[RawDetections] = []
    cand_raws: list[RawDetections] = []
    sizes: list[tuple[int, int]] = []
    groups = list(batched(list(images), candidate.info.max_batch or 2))
    for group in tqdm(groups, desc="verify", unit="batch", disable=not progress):
        batch = candidate.preprocess(group)
        ref_raws.extend(reference.infer_raw(batch))
        cand_raws.extend(candidate.infer_raw(batch))
        sizes.extend(tuple(int(v) for v in s) for s in batch.image_sizes)
    if opened:
        candidate.close()
    return ref_raws, cand_raws, sizes


#: images per call of the batch check (bounded by the model's own batch limit)
BATCH_CHECK_SIZE = 4


def batch_check_images(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The verification images with a mirrored copy of the first beside it: other content on the same canvas,
    so the batched calls include a real multi-image call (images of different canvases run apart,
    ``runtime.canvas``)."""
    return [images[0], np.ascontiguousarray(images[0][:, ::-1]), *images[1:]]


def batch_report(
    predictor: Predictor,
    images: Sequence[np.ndarray],
    per_call: int = BATCH_CHECK_SIZE,
    alone: Sequence[RawDetections] | None = None,
) -> ComparisonReport:
    """Each image's outputs in calls of ``per_call`` images against its outputs alone (``alone``, when the
    caller has them): what an image gets must not depend on what it is batched with."""
    if alone is None:
        alone = [predictor.run([image], paste_masks=False).raw[0] for image in images]
    per_call = min(per_call, predictor.info.max_batch or per_call)
    together = [raw for group in batched(list(images), per_call) for raw in predictor.run(group, False).raw]
    return compare_detections(alone, together, detections_per_image=predictor.info.detections_per_image)


def verify_export(
    model_path: str | Path,
    model: nn.Module,
    source: int | str | Path,
    tolerances: Tolerances = EXPORT_TOLERANCES,
    progress: bool = True,
    raise_on_failure: bool = True,
) -> VerificationResult:
    """Compare ``model_path`` with ``model`` on ``source`` (N generated images or a directory); print the report."""
    info = read_model_info(model_path)
    images = load_images(source, info.preprocess)
    warnings = onnxruntime_load_warnings(model_path) if Path(model_path).suffix.lower() == ".onnx" else []
    with Predictor(load_backend(model_path, threads=2), confidence_threshold=0.0) as predictor:
        reference, candidate, sizes = run_both(model_path, model, images, progress, predictor)
        batched_report = batch_report(predictor, batch_check_images(images))
    report = compare_detections(reference, candidate, detections_per_image=info.detections_per_image)
    failures = report.check(tolerances)
    failures += [f"batched: {f}" for f in batched_report.check(tolerances)]
    if warnings:
        failures.append(f"ONNX Runtime warned while loading the model: {warnings[0]}")
    result = VerificationResult(report, failures, batched_report, warnings, sizes, cpu_features().describe())
    if progress:
        print(f"verification of {Path(model_path).name} against PyTorch on {len(images)} images "
              f"(network input sizes {', '.join(f'{h}x{w}' for h, w in sizes)}):")  # fmt: skip
        print(report.format_table())
        print(f"agreement AP50 (PyTorch's detections as ground truth): {report.agreement_ap:.3f}")
        if tolerances.near_ties is not None and (swaps := report.near_tie_swaps(tolerances)):
            print(f"near-tie swaps (low-score detections on one side only or beyond the tolerances): {swaps}")
        if tolerances.near_ties is not None and (grid := report.keypoint_grid_ties(tolerances)):
            print(
                f"keypoints decoded on different grids (box sizes on either side of an integer): {grid} pair(s)"
            )
        print(f"batch check: {len(images) + 1} images {BATCH_CHECK_SIZE} per call against one per call:")
        print(batched_report.format_table())
        print(f"measured on: {result.cpu}")
        if tolerances.min_matched < 1.0 and any(
            getattr(tolerances, key) is not None for key, _, _ in OUTPUTS
        ):
            print(
                f"detections that agree (matched within the tolerances): {report.agreeing_fraction(tolerances):.1%}"
                f" (required {tolerances.min_matched:.1%}; matched pairs beyond them: {report.num_beyond(tolerances)})"
            )
        print("PASSED" if result.passed else "FAILED:\n  " + "\n  ".join(failures))
    if failures and raise_on_failure:
        moved = mark_unverified(model_path)
        raise VerificationError(
            f"{Path(model_path).name} diverged from PyTorch: "
            + "; ".join(failures)
            + f". Kept for inspection as {moved} (commands load it only with --allow-unverified)"
        )
    return result


def mark_unverified(model_path: str | Path) -> Path:
    """Move a model that failed verification (with its ``.bin`` or sidecar) to ``NAME.unverified.EXT``, where
    no deployment picks it up by its name and no command loads it unless told to."""
    src = Path(model_path)
    dst = unverified_path(src)
    moves = [(src, dst)]
    companion = (
        bin_path if src.suffix.lower() == ".xml" else sidecar_path
    )  # an IR's weights, an engine's sidecar
    if companion(src).exists():
        moves.append((companion(src), companion(dst)))
    replace_together(moves)
    return dst
