"""Which images calibrate a model: N of them, chosen with a seed from a folder or a named data set.

The choice is seeded so two runs (and the calibration cache they share) see the same images. Folders and data
set names both go through ``runtime`` (``image_io.list_images``, ``datasets.DatasetCatalog``): no torch needed.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from calibration.errors import CalibrationError
from runtime.datasets import DatasetCatalog, DatasetError, image_paths
from runtime.image_io import IMAGE_EXTENSIONS, list_images

#: fewer images than this give ranges dominated by a few pictures; ask for more rather than quantize badly
MIN_CALIBRATION_IMAGES = 8


@dataclass(frozen=True)
class CalibrationImages:
    """The chosen image files and where they came from (recorded in the cache and the model's metadata)."""

    paths: tuple[Path, ...]
    source: str
    seed: int

    def __len__(self) -> int:
        return len(self.paths)

    def describe(self) -> str:
        return f"{len(self.paths)} images from {self.source} (seed {self.seed})"


def images_in_folder(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files in ``folder`` and below it, sorted (``runtime.image_io.list_images``), so the seeded
    choice is reproducible."""
    root = Path(folder)
    if not root.is_dir():
        reason = "is not a folder" if root.exists() else "does not exist"
        raise CalibrationError(f"calibration folder {root} {reason}")
    try:
        return list_images(root, recursive=True)
    except FileNotFoundError:
        raise CalibrationError(
            f"calibration folder {root} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})"
        ) from None
    except OSError as e:
        raise CalibrationError(f"calibration folder {root} is not readable: {e.strerror or e}") from None


def images_in_dataset(name: str, root: str | os.PathLike[str] = "datasets") -> list[Path]:
    """Image files of a ``runtime.datasets`` catalog data set, in annotation-file order."""
    try:
        spec = DatasetCatalog.get(name, root=root)
        return image_paths(spec)
    except DatasetError as e:
        raise CalibrationError(f"data set {name!r}: {e}") from None


def choose_images(
    files: Sequence[Path],
    count: int,
    seed: int = 0,
    source: str = "",
    min_count: int = MIN_CALIBRATION_IMAGES,
) -> CalibrationImages:
    """``count`` files drawn without replacement with ``seed``; too few files is an error, not a silent cut."""
    if count < min_count:
        raise CalibrationError(f"--calib-count {count} is too few; calibrate on at least {min_count} images")
    if len(files) < count:
        raise CalibrationError(
            f"{source or 'the calibration source'} has {len(files)} images, fewer than the {count} asked for; "
            f"lower --calib-count or add images"
        )
    chosen = random.Random(seed).sample(list(files), count)
    return CalibrationImages(tuple(chosen), source, seed)


def calibration_images(
    images_dir: str | os.PathLike[str] | None = None,
    dataset: str | None = None,
    count: int = 100,
    seed: int = 0,
    dataset_root: str | os.PathLike[str] = "datasets",
) -> CalibrationImages:
    """The calibration images of a folder xor a data set name (what ``--calib-images`` / ``--calib-dataset`` give)."""
    if (images_dir is None) == (dataset is None):
        raise CalibrationError(
            "give exactly one calibration source: --calib-images DIR or --calib-dataset NAME"
        )
    if images_dir is not None:
        return choose_images(images_in_folder(images_dir), count, seed, source=f"folder {images_dir}")
    assert dataset is not None
    return choose_images(images_in_dataset(dataset, dataset_root), count, seed, source=f"data set {dataset}")
