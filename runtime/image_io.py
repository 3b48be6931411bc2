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
    return decode_image(data, str(p))


def decode_image(data: bytes | np.ndarray, name: str = "image", max_pixels: int | None = None) -> np.ndarray:
    """The bytes of an image file (as read from disk or received by a server) as an HxWx3 BGR uint8 array.

    ``max_pixels`` refuses larger images before decoding where the header tells the size (PNG, JPEG, GIF,
    BMP: :func:`encoded_image_size`), and after decoding otherwise. Errors are :class:`ImageReadError`
    naming ``name``.
    """
    buf = (
        np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else np.asarray(data, np.uint8)
    )
    buf = buf.reshape(-1)
    if buf.size == 0:
        raise ImageReadError(f"{name}: empty file")
    if max_pixels is not None:
        _check_pixels(encoded_image_size(buf), name, max_pixels)
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)  # keeps 16-bit depth and alpha; ignores EXIF
    if image is None:
        raise ImageReadError(f"{name}: corrupt or not a supported image format")
    if max_pixels is not None:
        _check_pixels((int(image.shape[0]), int(image.shape[1])), name, max_pixels)
    try:
        return to_bgr8(image)
    except ValueError as e:
        raise ImageReadError(f"{name}: {e}") from None


def encoded_image_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """(height, width) from the header of a PNG, JPEG, GIF or BMP file without decoding it; None otherwise."""
    head = (
        data[:65536]
        if isinstance(data, (bytes, bytearray))
        else np.asarray(data, np.uint8).reshape(-1)[:65536]
    )
    b = bytes(head)
    if b.startswith(b"\x89PNG\r\n\x1a\n") and len(b) >= 24 and b[12:16] == b"IHDR":
        return int.from_bytes(b[20:24], "big"), int.from_bytes(b[16:20], "big")
    if b[:6] in (b"GIF87a", b"GIF89a") and len(b) >= 10:
        return int.from_bytes(b[8:10], "little"), int.from_bytes(b[6:8], "little")
    if b.startswith(b"BM") and len(b) >= 26:
        w = int.from_bytes(b[18:22], "little", signed=True)
        h = int.from_bytes(b[22:26], "little", signed=True)
        return abs(h), abs(w)
    if b.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 <= len(b):  # walk the marker segments up to the first start-of-frame
            if b[i] != 0xFF:
                return None
            marker = b[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return int.from_bytes(b[i + 5 : i + 7], "big"), int.from_bytes(b[i + 7 : i + 9], "big")
            i += 2 + int.from_bytes(b[i + 2 : i + 4], "big")
    return None


def _check_pixels(size: tuple[int, int] | None, name: str, max_pixels: int) -> None:
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageReadError(
            f"{name}: a {size[1]}x{size[0]} image ({size[0] * size[1] / 1e6:.0f} megapixels) is larger than "
            f"the limit of {max_pixels / 1e6:g} megapixels"
        )


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
