"""A detector in a few lines of Python, whatever the model file: the successor of maskrcnn-benchmark's COCODemo.

    predictor = Predictor("model.onnx", confidence_threshold=0.7)
    detections = predictor.predict(cv2.imread("photo.jpg"))
    cv2.imwrite("out.jpg", predictor.run_on_opencv_image(cv2.imread("photo.jpg")))

The pipeline is ``runtime.preprocess`` -> ``backend.infer`` -> ``runtime.postprocess`` (-> ``runtime.draw``)
for every backend, with each stage timed (device work synchronized) so ``runtime.bench`` and the webcam
report the same split the user's own calls would see.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import numpy as np

from runtime.backends.base import Backend, split_batches
from runtime.canvas import split_by_canvas
from runtime.draw import draw_detections, mask_heatmap_montage
from runtime.model_file import load_backend
from runtime.onnx_contract import ModelInfo
from runtime.postprocess import postprocess_batch
from runtime.preprocess import PreprocessedBatch, preprocess
from runtime.structures import Detections, RawDetections

T = TypeVar("T")


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items: the one way every loop over images forms batches
    (training-time evaluation, export verification, the benchmark)."""
    step = max(1, int(size))
    for start in range(0, len(items), step):
        yield items[start : start + step]


@dataclass
class StageTimes:
    """Seconds spent in each stage of one call (the whole batch)."""

    preprocess: float = 0.0
    infer: float = 0.0
    postprocess: float = 0.0

    @property
    def total(self) -> float:
        return self.preprocess + self.infer + self.postprocess

    def __iadd__(self, other: StageTimes) -> StageTimes:
        self.preprocess += other.preprocess
        self.infer += other.infer
        self.postprocess += other.postprocess
        return self


@dataclass
class Prediction:
    """Everything one call produced: raw outputs (for parity checks), detections, and stage times."""

    raw: list[RawDetections]
    detections: list[Detections]
    batch: PreprocessedBatch
    times: StageTimes


class Predictor:
    """Any model file (or an opened backend) behind ``predict`` and ``run_on_opencv_image``.

    ``confidence_threshold`` filters before masks are pasted (the costly part); ``min_image_size``
    overrides the model's short side for speed, as maskrcnn-benchmark's ``--min-image-size`` did;
    models built for a fixed input canvas keep it and only the resize changes.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | Backend,
        backend: str | None = None,
        confidence_threshold: float = 0.7,
        min_image_size: int | None = None,
        device: str = "cpu",
        show_mask_heatmaps: bool = False,
        masks_per_dim: int = 2,
        **backend_options: Any,
    ) -> None:
        if not 0.0 <= confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must be in [0, 1], got {confidence_threshold}")
        if min_image_size is not None and min_image_size <= 0:
            raise ValueError(f"min_image_size must be positive, got {min_image_size}")
        t0 = time.perf_counter()
        if isinstance(model_path, Backend):
            self.backend = model_path
        else:
            self.backend = load_backend(model_path, backend, device=device, **backend_options)
        self.load_seconds = time.perf_counter() - t0
        self.confidence_threshold = float(confidence_threshold)
        self.info: ModelInfo = self.backend.info.with_min_size(min_image_size)
        self.show_mask_heatmaps = show_mask_heatmaps
        self.masks_per_dim = masks_per_dim
        self.last_times = StageTimes()

    @property
    def class_names(self) -> list[str]:
        return list(self.info.class_names)

    def preprocess(self, images: Sequence[np.ndarray]) -> PreprocessedBatch:
        return preprocess(images, self.info.preprocess, pad_to=self.info.static_input_size)

    def calls(self, batch: PreprocessedBatch) -> list[tuple[tuple[int, ...], PreprocessedBatch]]:
        """The backend calls that ``batch`` takes, with the positions of their images in it: one call per own
        canvas (``runtime.canvas``: an image's detections do not depend on what it is batched with), split
        into chunks where the model bounds the batch size."""
        info = self.info
        out = []
        for group, part in split_by_canvas(batch, info.preprocess.size_divisibility, info.static_input_size):
            for r in split_batches(len(part), info.max_batch):
                out.append((group.indices[r.start : r.stop], part if len(r) == len(part) else part.take(r)))
        return out

    def infer_raw(self, batch: PreprocessedBatch) -> list[RawDetections]:
        """Backend outputs for a batch, in its order, from the calls :meth:`calls` says."""
        raws: list[RawDetections | None] = [None] * len(batch)
        for indices, chunk in self.calls(batch):
            for i, raw in zip(indices, self.backend.infer(chunk)):
                raws[i] = raw
        assert all(r is not None for r in raws)
        return raws  # type: ignore[return-value]

    def run(self, images: Sequence[np.ndarray], paste_masks: bool = True) -> Prediction:
        """The whole pipeline on a batch of BGR images, keeping every intermediate result.

        ``paste_masks=False`` stops after the backend (``detections`` is empty, post-process time 0): for
        callers that keep only raw outputs and paste later, such as a COCO evaluation over many images.
        """
        times = StageTimes()
        t0 = time.perf_counter()
        batch = self.preprocess(images)
        t1 = time.perf_counter()
        raws = self.infer_raw(batch)
        self.backend.synchronize()
        t2 = time.perf_counter()
        dets = (
            postprocess_batch(
                raws, batch, self.info.class_names, self.confidence_threshold, self.info.output_convention
            )
            if paste_masks
            else []
        )
        t3 = time.perf_counter()
        times.preprocess, times.infer, times.postprocess = t1 - t0, t2 - t1, t3 - t2
        self.last_times = times
        return Prediction(raws, dets, batch, times)

    def predict_timed(self, images: Sequence[np.ndarray]) -> tuple[list[Detections], StageTimes]:
        """Detections of a batch of BGR images and the seconds each stage took."""
        result = self.run(images)
        return result.detections, result.times

    @overload
    def predict(self, image: np.ndarray) -> Detections: ...

    @overload
    def predict(self, image: Sequence[np.ndarray]) -> list[Detections]: ...

    def predict(self, image: np.ndarray | Sequence[np.ndarray]) -> Detections | list[Detections]:
        """Detections above the confidence threshold, in the image's pixels; a list gives a list (one batch)."""
        if isinstance(image, np.ndarray):
            return self.predict_timed([image])[0][0]
        return self.predict_timed(list(image))[0]

    def draw(self, image_bgr: np.ndarray, det: Detections) -> np.ndarray:
        """The annotated picture COCODemo drew, or the mask heatmap montage with ``show_mask_heatmaps``."""
        if self.show_mask_heatmaps:
            return mask_heatmap_montage(image_bgr, det, self.masks_per_dim)
        return draw_detections(image_bgr, det, self.info.class_names)

    def run_on_opencv_image(self, image_bgr: np.ndarray) -> np.ndarray:
        """COCODemo's one-call demo: detect and draw on a copy of a BGR image."""
        return self.draw(image_bgr, self.predict(image_bgr))

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
