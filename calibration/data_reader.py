"""ONNX Runtime's ``CalibrationDataReader`` over our calibration feeds, so its calibrators see our pre-processing."""

from __future__ import annotations

from collections.abc import Iterator

from onnxruntime.quantization import CalibrationDataReader

from calibration.image_source import CalibrationImages
from calibration.model_inputs import Feeds, InputSpec, iter_feeds


class FeedsReader(CalibrationDataReader):
    """Yields one contract input dict per batch; ``rewind`` starts over (ORT's strided calibration uses it)."""

    def __init__(self, images: CalibrationImages, spec: InputSpec, progress: bool = True) -> None:
        self.images = images
        self.spec = spec
        self.progress = progress
        self._it: Iterator[Feeds] | None = None

    def get_next(self) -> Feeds | None:
        if self._it is None:
            self._it = iter_feeds(self.images, self.spec, self.progress)
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None

    def __len__(self) -> int:
        return -(-len(self.images) // self.spec.batch_size)
