"""The one interface every backend implements, so pre/post-processing, timing and evaluation exist once.

A backend only runs the network: it takes the ONNX contract's inputs (a :class:`PreprocessedBatch`) and
returns :class:`RawDetections` per image. Everything before (resize, normalize, pad) and after (undo the
resize, paste masks, draw) is ``runtime``'s shared code, which is what makes PyTorch, ONNX Runtime and
TensorRT results comparable detection by detection.
"""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from runtime import onnx_contract as contract
from runtime.onnx_contract import ModelInfo
from runtime.op_profile import OpProfile
from runtime.preprocess import PreprocessedBatch
from runtime.structures import RawDetections


class BackendError(RuntimeError):
    """A model file a backend can't load or run; the message names the file and what to do."""


class BackendUnavailable(BackendError):
    """The backend's library or device is missing here (no TensorRT, no CUDA GPU, no such provider)."""


class Backend(ABC):
    """Runs one model on pre-processed batches; subclasses load the file in ``__init__``.

    ``synchronize`` exists for timing: CUDA work is asynchronous, so a clock read without it measures the
    launch, not the work. CPU backends leave it a no-op.
    """

    name: str = "base"

    def __init__(self, model_path: str | os.PathLike[str], device: str = "cpu") -> None:
        self.model_path = Path(model_path)
        self.device = device

    @property
    @abstractmethod
    def info(self) -> ModelInfo: ...

    @property
    def precision(self) -> str:
        return self.info.precision

    def warn_if_inexact_here(self) -> None:
        """Warn once when this CPU computes the model's INT8 arithmetic differently from a VNNI CPU
        (:func:`runtime.cpu_features.int8_weight_warning`); CPU backends call it after loading."""
        from runtime.cpu_features import int8_weight_warning

        message = int8_weight_warning(
            self.info.precision, self.info.extra.get(contract.META_INT8_WEIGHT_BITS)
        )
        if message is not None and self.device == "cpu":
            warnings.warn(f"{self.model_path.name}: {message}", RuntimeWarning, stacklevel=3)

    @abstractmethod
    def infer(self, batch: PreprocessedBatch) -> list[RawDetections]:
        """Network outputs of every image of ``batch``, unpadded, in network-input pixels."""

    def count_flops(self, batches: Sequence[PreprocessedBatch]) -> list[float] | None:
        """FLOPs of one run of the network on each of ``batches`` (multiply-adds counted twice), for the
        compute floor (``runtime.compute_floor``); None where this backend cannot count them."""
        return None

    def profile_ops(self, batches: Sequence[PreprocessedBatch]) -> OpProfile | None:
        """Time per run spent in each operator type over one run on each of ``batches``, from this
        backend's own profiler (``runtime.op_profile``); None where it has none."""
        return None

    def synchronize(self) -> None:
        """Wait for queued device work (CUDA); a no-op for CPU backends."""
        return None

    def close(self) -> None:
        """Release sessions, engines and device memory; the backend is unusable afterwards."""
        return None

    def describe(self) -> dict[str, Any]:
        """Facts for benchmark tables and JSON (library versions, providers, device)."""
        return {"backend": self.name, "device": self.device, "precision": self.precision}

    def __enter__(self) -> Backend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.model_path)!r}, device={self.device!r})"


def check_batch(batch: PreprocessedBatch, info: ModelInfo, model_path: Path) -> None:
    """Reject inputs a static model can't take with a message saying how to fix the call."""
    if info.static_input_size is not None:
        hw = tuple(int(v) for v in batch.images.shape[2:])
        if hw != tuple(info.static_input_size):
            raise BackendError(
                f"{model_path.name} was built for {info.static_input_size[0]}x{info.static_input_size[1]} "
                f"inputs but got {hw[0]}x{hw[1]}; pre-process with pad_to=info.static_input_size "
                f"(the Predictor does this)"
            )


def declared_static_shape(
    info: ModelInfo, dims: Sequence[int | None]
) -> tuple[tuple[int, int] | None, int | None]:
    """Fixed canvas and batch of a model: from its metadata, else from its ``images`` input's declared
    ``dims`` ([B, 3, H, W]; None where dynamic)."""
    static = info.static_input_size
    if static is None and len(dims) == 4 and dims[2] is not None and dims[3] is not None:
        static = (int(dims[2]), int(dims[3]))
    batch = info.batch
    if batch is None and dims and dims[0] is not None:
        batch = int(dims[0])
    return static, batch


def contract_feeds(batch: PreprocessedBatch, info: ModelInfo, model_path: Path) -> dict[str, np.ndarray]:
    """The contract's input tensors of ``batch`` for a file-based backend (ONNX Runtime, OpenVINO).

    A model of fixed batch gets its batch filled with copies of the last image (the caller keeps the first
    ``len(batch)`` results); a larger batch or another canvas than a static model's is refused.
    """
    check_batch(batch, info, model_path)
    n = len(batch)
    images, sizes = batch.images, batch.image_sizes
    fixed = info.batch
    if fixed is not None and n > fixed:
        raise BackendError(f"{model_path.name} takes batches of {fixed}, got {n}")
    if fixed is not None and n < fixed:
        pad = fixed - n
        images = np.concatenate([images, np.repeat(images[-1:], pad, axis=0)])
        sizes = np.concatenate([sizes, np.repeat(sizes[-1:], pad, axis=0)])
    return {
        contract.INPUT_IMAGES: np.ascontiguousarray(images, np.float32),
        contract.INPUT_IMAGE_SIZES: np.ascontiguousarray(sizes, np.int64),
    }


def split_batches(n: int, max_batch: int | None) -> Sequence[range]:
    """Index ranges of at most ``max_batch`` images (all at once when unbounded)."""
    step = n if not max_batch else max(1, int(max_batch))
    return [range(s, min(s + step, n)) for s in range(0, n, max(step, 1))]


def first_line(text: str) -> str:
    """The first non-blank line of a library's error: ONNX Runtime's and OpenVINO's carry stack dumps after it."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else text
