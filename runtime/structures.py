"""The result types every backend returns, so pre/post-processing, evaluation and drawing exist once.

A backend produces :class:`RawDetections` per image: exactly the ONNX contract's outputs, unpadded, in the
coordinates of the resized (network input) image, with M x M mask probabilities. ``runtime.postprocess``
turns them into :class:`Detections` in the original image's pixels with pasted masks. Keeping the two apart
is what lets the ONNX Runtime, TensorRT and PyTorch backends share one host-side post-processing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RawDetections:
    """One image's network output, in network-input pixels (before undoing the resize)."""

    boxes: np.ndarray  # [N, 4] float32, x1 y1 x2 y2
    scores: np.ndarray  # [N] float32, descending
    labels: np.ndarray  # [N] int64, 1-based class ids (0 is background)
    masks: np.ndarray | None = None  # [N, M, M] float32 probabilities, relative to each box
    keypoints: np.ndarray | None = None  # [N, K, 3] float32 (x, y, score)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls, mask_size: int | None = None, num_keypoints: int | None = None) -> RawDetections:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            labels=np.zeros((0,), np.int64),
            masks=None if mask_size is None else np.zeros((0, mask_size, mask_size), np.float32),
            keypoints=None if num_keypoints is None else np.zeros((0, num_keypoints, 3), np.float32),
        )

    def select(self, keep: np.ndarray) -> RawDetections:
        return RawDetections(
            boxes=self.boxes[keep],
            scores=self.scores[keep],
            labels=self.labels[keep],
            masks=None if self.masks is None else self.masks[keep],
            keypoints=None if self.keypoints is None else self.keypoints[keep],
        )


@dataclass
class Detections:
    """One image's detections in its original pixels: what users, evaluation and drawing consume."""

    boxes: np.ndarray  # [N, 4] float32, x1 y1 x2 y2 in original image pixels
    scores: np.ndarray  # [N] float32
    labels: np.ndarray  # [N] int64, 1-based class ids
    image_size: tuple[int, int]  # (height, width) of the original image
    masks: np.ndarray | None = None  # [N, H, W] float32 pasted mask probabilities (threshold 0.5 for binary)
    keypoints: np.ndarray | None = None  # [N, K, 3] float32 (x, y, score) in original pixels
    class_names: list[str] = field(default_factory=list)  # index 0 is "__background__"

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def binary_masks(self, threshold: float = 0.5) -> np.ndarray | None:
        return None if self.masks is None else self.masks > threshold

    def select(self, keep: np.ndarray) -> Detections:
        return Detections(
            boxes=self.boxes[keep],
            scores=self.scores[keep],
            labels=self.labels[keep],
            image_size=self.image_size,
            masks=None if self.masks is None else self.masks[keep],
            keypoints=None if self.keypoints is None else self.keypoints[keep],
            class_names=self.class_names,
        )

    def above(self, score_threshold: float) -> Detections:
        return self.select(np.nonzero(self.scores >= score_threshold)[0])
