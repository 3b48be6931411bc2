"""Which images calibrate a model: N of them, chosen with a seed from a folder or a named data set.

The choice is seeded so two runs (and the calibration cache they share) see the same images. A folder needs
nothing but the runtime; a data set name goes through ``trainer.datasets.DatasetCatalog`` (torch-side), so
it is imported only when a name is given.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from calibration.errors import CalibrationError
from runtime.image_io import IMAGE_EXTENSIONS

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
    """Image files directly in ``folder`` or below it, sorted so the seeded choice is reproducible."""
    root = Path(folder)
    if not root.exists():
        raise CalibrationError(f"calibration folder {root} does not exist")
    if not root.is_dir():
        raise CalibrationError(f"calibration folder {root} is not a folder")
    try:
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    except OSError as e:
        raise CalibrationError(f"calibration folder {root} is not readable: {e.strerror or e}") from None
    if not files:
        raise CalibrationError(
            f"calibration folder {root} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})"
        )
    return files


def images_in_dataset(name: str, root: str | os.PathLike[str] = "datasets") -> list[Path]:
    """Image files of a ``DatasetCatalog`` data set, in annotation-file order."""
    try:
        from trainer.datasets import DatasetCatalog, DatasetError
    except ImportError as e:  # torch missing: a deployment-only install
        raise CalibrationError(
            f"calibrating from data set {name!r} needs the trainer package (torch): {e}; "
            "use --calib-images DIR instead"
        ) from None
    try:
        spec = DatasetCatalog.get(name, root=root)
    except DatasetError as e:
        raise CalibrationError(str(e)) from None
    if not spec.ann_file.is_file():
        raise CalibrationError(f"data set {name!r}: annotation file {spec.ann_file} not found")
    try:
        images = json.loads(spec.ann_file.read_text())["images"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CalibrationError(
            f"data set {name!r}: cannot read the image list of {spec.ann_file}: {e}"
        ) from None
    return [spec.img_dir / str(info["file_name"]) for info in images]


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
