"""Calibration images turned into the model's own inputs: the runtime's pre-processing, the model's shapes.

Ranges are only right if calibration sees exactly what deployment feeds the network, so the pre-processing
parameters come from the ONNX metadata (what the exporter wrote), never from a config guessed again, and a
static model gets its fixed canvas and batch size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from calibration.errors import CalibrationError
from calibration.image_source import CalibrationImages
from runtime import onnx_contract as contract
from runtime.image_io import ImageReadError, read_image
from runtime.preprocess import PreprocessParams, padded_size, preprocess, resized_size

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class InputSpec:
    """What calibration must produce for one model: its pre-processing and its fixed shapes, if any."""

    preprocess: PreprocessParams
    static_size: tuple[int, int] | None = None
    batch: int | None = None

    @classmethod
    def from_onnx(cls, onnx_path: str | os.PathLike[str]) -> InputSpec:
        try:
            info = contract.read_metadata(Path(onnx_path))
        except contract.ContractError as e:
            raise CalibrationError(f"cannot calibrate: {e}") from None
        return cls(info.preprocess, info.static_input_size, info.batch)

    @property
    def batch_size(self) -> int:
        return self.batch or 1


def common_canvas(images: CalibrationImages, params: PreprocessParams) -> tuple[int, int]:
    """One padded size that holds every calibration image after resizing.

    ONNX Runtime's histogram calibrators (entropy, percentile) stack each tensor across batches, so
    every batch must have one shape; padding to the largest image is what a mixed batch gets anyway.
    """
    shapes = [_read(p).shape for p in images.paths]
    sizes = [resized_size(int(s[0]), int(s[1]), params) for s in shapes]
    return padded_size(sizes, params.size_divisibility)


def iter_feeds(images: CalibrationImages, spec: InputSpec, progress: bool = True) -> Iterator[Feeds]:
    """Contract input dicts, one per batch; a short last batch of a static-batch model is filled by repetition."""
    paths = list(images.paths)
    size = spec.batch_size
    starts = range(0, len(paths), size)
    for start in tqdm(starts, desc="calibration", unit="batch", disable=not progress):
        chunk = paths[start : start + size]
        chunk += [chunk[i % len(chunk)] for i in range(size - len(chunk))]
        batch = preprocess([_read(p) for p in chunk], spec.preprocess, pad_to=spec.static_size)
        yield {contract.INPUT_IMAGES: batch.images, contract.INPUT_IMAGE_SIZES: batch.image_sizes}


def _read(path: Path) -> np.ndarray:
    try:
        return read_image(path)
    except ImageReadError as e:
        raise CalibrationError(f"unreadable calibration image: {e}") from None
