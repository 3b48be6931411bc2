"""Reading images the way every tool expects them: BGR uint8, whatever the file holds.

Grayscale, RGBA, palette and 16-bit files are converted instead of crashing deep inside pre-processing,
and a missing or corrupt file raises :class:`ImageReadError` naming it; folder iteration skips such files
with a warning so one bad file does not end an evaluation or a demo. EXIF orientation is ignored, as
pycocotools and PIL-based data loaders ignore it, so pixels line up with COCO annotations.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jp2")


class ImageReadError(OSError):
    """An image file that is missing, unreadable or not an image; the message names the file."""


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read any supported image file as an HxWx3 BGR uint8 array."""
    p = Path(path)
    if not p.exists():
        raise ImageReadError(f"{p}: no such file")
    if p.is_dir():
        raise ImageReadError(f"{p}: is a directory, not an image")
    try:
        data = np.fromfile(p, dtype=np.uint8)  # works for non-ASCII paths where cv2.imread does not
    except OSError as e:
        raise ImageReadError(f"{p}: cannot read ({e.strerror or e})") from None
    if data.size == 0:
        raise ImageReadError(f"{p}: empty file")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)  # keeps 16-bit depth and alpha; ignores EXIF
    if image is None:
        raise ImageReadError(f"{p}: corrupt or not a supported image format")
    try:
        return to_bgr8(image)
    except ValueError as e:
        raise ImageReadError(f"{p}: {e}") from None


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Convert a decoded image of any depth and channel count to BGR uint8."""
    image = _to_uint8(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3:
        raise ValueError(f"unsupported image shape {image.shape}")
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if channels == 2:  # gray + alpha
        return cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return np.ascontiguousarray(image)
    if channels == 4:
        # Drop alpha rather than compositing: detectors are trained on the color content.
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise ValueError(f"unsupported number of channels {channels}")


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if image.dtype == np.int8:
        return (image.astype(np.int16) + 128).astype(np.uint8)
    if image.dtype == np.int16:
        return ((image.astype(np.int32) + 32768) >> 8).astype(np.uint8)
    if image.dtype in (np.float16, np.float32, np.float64):
        # HDR/float TIFFs: assume [0, 1] and clip, the usual convention for float images.
        return (np.clip(np.nan_to_num(image.astype(np.float32)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise ValueError(f"unsupported pixel type {image.dtype}")


def list_images(source: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Sorted image files of a directory (by extension) or of a glob pattern.

    Raises ``FileNotFoundError`` with the source in the message when nothing is found, since every caller
    (benchmark, evaluation, demo) would otherwise go on with an empty list and fail obscurely.
    """
    text = os.fspath(source)
    p = Path(text)
    if p.is_dir():
        pattern = "**/*" if recursive else "*"
        files = [f for f in p.glob(pattern) if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            raise FileNotFoundError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in directory {p}")
        return sorted(files)
    if p.is_file():
        return [p]
    if glob.has_magic(text):
        files = [Path(f) for f in glob.glob(text, recursive=recursive) if Path(f).is_file()]
        if not files:
            raise FileNotFoundError(f"no files match {text}")
        return sorted(files)
    raise FileNotFoundError(f"{text}: no such file or directory")


def iter_images(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], recursive: bool = False
) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield (path, BGR image) for a directory, glob, single file or list of files, skipping bad files.

    Each skipped file is logged as a warning naming it and the reason.
    """
    if isinstance(source, (str, os.PathLike)):
        paths = list_images(source, recursive=recursive)
    else:
        paths = [Path(s) for s in source]
    for path in paths:
        try:
            image = read_image(path)
        except ImageReadError as e:
            log.warning("skipping unreadable image %s", e)
            continue
        yield path, image
