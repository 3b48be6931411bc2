"""The one interface every backend implements, so pre/post-processing, timing and evaluation exist once.

A backend only runs the network: it takes the ONNX contract's inputs (a :class:`PreprocessedBatch`) and
returns :class:`RawDetections` per image. Everything before (resize, normalize, pad) and after (undo the
resize, paste masks, draw) is ``runtime``'s shared code, which is what makes PyTorch, ONNX Runtime and
TensorRT results comparable detection by detection.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from runtime.onnx_contract import ModelInfo
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

    @abstractmethod
    def infer(self, batch: PreprocessedBatch) -> list[RawDetections]:
        """Network outputs of every image of ``batch``, unpadded, in network-input pixels."""

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


def split_batches(n: int, max_batch: int | None) -> Sequence[range]:
    """Index ranges of at most ``max_batch`` images (all at once when unbounded)."""
    step = n if not max_batch else max(1, int(max_batch))
    return [range(s, min(s + step, n)) for s in range(0, n, max(step, 1))]
