"""Export-time verification, Polygraphy-style: the ONNX model under ONNX Runtime vs PyTorch on real inputs.

The images cover what breaks exported detectors: sizes the resize shrinks and sizes it enlarges, two
aspect ratios, batches of 2 with different image sizes (padding inside a batch), and a blank image (often
zero detections). Both sides get the same ``runtime.preprocess`` output; the comparison is
``runtime.compare`` and the ONNX side runs through ``runtime``'s ONNX Runtime backend, so what is verified
is what gets deployed.
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
from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from runtime.compare import ComparisonReport, Tolerances, compare_detections
from runtime.image_io import ImageReadError, list_images, read_image
from runtime.preprocess import PreprocessParams, preprocess
from runtime.structures import RawDetections
from trainer.inference import raw_forward_batch

#: "the export is exact": float32 rounding only. Masks get 1e-2: a random-init R-50 mask head amplifies
#: 1e-5 feature differences to ~4e-3 in probability (pasting thresholds at 0.5). Keypoints get the box
#: tolerance: both sides decode their heatmaps with ``runtime.postprocess.heatmaps_to_keypoints``, so the
#: argmax pixel is the same and a keypoint moves only with its box
EXPORT_TOLERANCES = Tolerances(box=0.05, score=1e-4, mask=1e-2, keypoint=0.05)


@dataclass
class VerificationResult:
    report: ComparisonReport
    failures: list[str]
    load_warnings: list[str] = field(default_factory=list)
    image_sizes: list[tuple[int, int]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def generated_images(count: int, params: PreprocessParams, seed: int = 0) -> list[np.ndarray]:
    """``count`` BGR test images: shrunk and enlarged sizes, both orientations, the last one near-blank."""
    rng = np.random.default_rng(seed)
    s = params.min_size
    factors = [(1.5, 2.0), (0.6, 0.8), (1.25, 1.0), (0.75, 0.5), (1.0, 1.33), (0.9, 1.1)]
    images = []
    for i in range(count):
        fh, fw = factors[i % len(factors)]
        h, w = max(int(s * fh), 16), max(int(s * fw), 16)
        if i == count - 1 and count > 1:
            # near-blank: nothing to detect for a trained model; the faint noise breaks the exact score
            # ties a perfectly flat image gives (tie order is float noise, not a property of the export)
            images.append((127 + rng.integers(-2, 3, (h, w, 3))).astype(np.uint8))
            continue
        img = (
            rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
            .repeat(8, 0)
            .repeat(8, 1)[:h, :w]
        )
        for _ in range(4):  # a few solid rectangles: object-like regions with edges
            y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
            img[y : y + h // 3, x : x + w // 3] = rng.integers(0, 256, 3, dtype=np.uint8)
        images.append(np.ascontiguousarray(img))
    return images


def load_images(source: int | str | Path, params: PreprocessParams) -> list[np.ndarray]:
    if isinstance(source, int):
        if source < 1:
            raise ExportError(f"--verify needs at least 1 image, got {source}")
        return generated_images(source, params)
    paths = list_images(source)
    if not paths:
        raise ExportError(f"--verify-images {source}: no images found")
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
                from runtime.ort_custom_ops import reference_session

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
    model_path: str | Path, model: nn.Module, images: Sequence[np.ndarray], progress: bool = True
) -> tuple[list[RawDetections], list[RawDetections], list[tuple[int, int]]]:
    """Reference (PyTorch) and candidate (ONNX Runtime) detections of every image, batched by 2."""
    backend = OnnxRuntimeBackend(model_path, threads=2)
    info = backend.info
    batch_size = info.max_batch or 2
    reference: list[RawDetections] = []
    candidate: list[RawDetections] = []
    sizes: list[tuple[int, int]] = []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc="verify", unit="batch", disable=not progress):
        group = list(images[start : start + batch_size])
        batch = preprocess(group, info.preprocess, pad_to=info.static_input_size)
        reference.extend(raw_forward_batch(model, batch))
        candidate.extend(backend.infer(batch))
        sizes.extend(tuple(int(v) for v in s) for s in batch.image_sizes)
    backend.close()
    return reference, candidate, sizes


def verify_export(
    model_path: str | Path,
    model: nn.Module,
    source: int | str | Path,
    tolerances: Tolerances = EXPORT_TOLERANCES,
    progress: bool = True,
    raise_on_failure: bool = True,
) -> VerificationResult:
    """Compare ``model_path`` with ``model`` on ``source`` (N generated images or a directory); print the report."""
    info = contract.read_metadata(model_path)
    images = load_images(source, info.preprocess)
    warnings = onnxruntime_load_warnings(model_path)
    reference, candidate, sizes = run_both(model_path, model, images, progress)
    report = compare_detections(reference, candidate)
    failures = report.check(tolerances)
    if warnings:
        failures.append(f"ONNX Runtime warned while loading the model: {warnings[0]}")
    result = VerificationResult(report, failures, warnings, sizes)
    if progress:
        print(f"verification of {Path(model_path).name} against PyTorch on {len(images)} images "
              f"(network input sizes {', '.join(f'{h}x{w}' for h, w in sizes)}):")  # fmt: skip
        print(report.format_table())
        print(f"agreement AP50 (PyTorch's detections as ground truth): {report.agreement_ap:.3f}")
        print("PASSED" if result.passed else "FAILED:\n  " + "\n  ".join(failures))
    if failures and raise_on_failure:
        raise VerificationError(f"{Path(model_path).name} diverged from PyTorch: " + "; ".join(failures))
    return result
