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


#: the largest image read by default, in pixels: a 40-megapixel photo decodes to 120 MB of BGR and about
#: 0.5 GB of float32 before the resize; ``MRD_MAX_IMAGE_PIXELS`` (or ``max_pixels``) raises or lowers it
DEFAULT_MAX_PIXELS = 40_000_000
ENV_MAX_PIXELS = "MRD_MAX_IMAGE_PIXELS"
#: the formats whose headers :func:`encoded_image_size` reads: no other bytes reach a decoder
FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WebP", "PPM/PGM/PBM/PAM", "JPEG 2000", "GIF")


def max_pixels_limit() -> int:
    """``MRD_MAX_IMAGE_PIXELS`` when set (a positive integer), else :data:`DEFAULT_MAX_PIXELS`."""
    text = os.environ.get(ENV_MAX_PIXELS, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{ENV_MAX_PIXELS} must be a positive number of pixels, got {text!r}")
    return value


def read_image(path: str | os.PathLike[str], max_pixels: int | None = None) -> np.ndarray:
    """Read any supported image file as an HxWx3 BGR uint8 array (see :func:`decode_image` for the limits)."""
    p = Path(path)
    if not p.exists():
        raise ImageReadError(f"{p}: no such file")
    if p.is_dir():
        raise ImageReadError(f"{p}: is a directory, not an image")
    try:
        data = np.fromfile(p, dtype=np.uint8)  # works for non-ASCII paths where cv2.imread does not
    except OSError as e:
        raise ImageReadError(f"{p}: cannot read ({e.strerror or e})") from None
    return decode_image(data, str(p), max_pixels)


def decode_image(data: bytes | np.ndarray, name: str = "image", max_pixels: int | None = None) -> np.ndarray:
    """The bytes of an image file (as read from disk or received by a server) as an HxWx3 BGR uint8 array.

    Only the :data:`FORMATS` whose headers are read are decoded, and only when the header's size is within
    ``max_pixels`` (default :func:`max_pixels_limit`): nothing is decoded before its size is known. Errors,
    the decoder's included, are :class:`ImageReadError` naming ``name``.
    """
    buf = (
        np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else np.asarray(data, np.uint8)
    )
    buf = buf.reshape(-1)
    if buf.size == 0:
        raise ImageReadError(f"{name}: empty file")
    limit = max_pixels_limit() if max_pixels is None else int(max_pixels)
    view = memoryview(buf)
    kind = image_format(view)
    if kind is None:
        raise ImageReadError(
            f"{name}: corrupt or not a supported image format (supported: {', '.join(FORMATS)})"
        )
    size = _header_size(kind, view)
    if size is None or size[0] < 1 or size[1] < 1:
        raise ImageReadError(f"{name}: corrupt {kind} file (its header does not give a valid image size)")
    _check_pixels(size, name, limit)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)  # keeps 16-bit depth and alpha; ignores EXIF
    except cv2.error as e:
        raise ImageReadError(f"{name}: corrupt {kind} file ({_opencv_message(str(e))})") from None
    if image is None:
        raise ImageReadError(f"{name}: corrupt or not a supported image format")
    _check_pixels((int(image.shape[0]), int(image.shape[1])), name, limit)
    try:
        return to_bgr8(image)
    except ValueError as e:
        raise ImageReadError(f"{name}: {e}") from None


def _opencv_message(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text  # OpenCV's message is its last line, after the file and function


def _bytes_view(data: bytes | bytearray | memoryview | np.ndarray) -> memoryview:
    """The bytes of ``data`` without a copy (the header readers only slice and index them)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return memoryview(data)
    return memoryview(np.ascontiguousarray(data, np.uint8).reshape(-1))


def image_format(data: bytes | memoryview | np.ndarray) -> str | None:
    """The name of the format in :data:`FORMATS` that ``data`` starts like, or None."""
    b = bytes(_bytes_view(data)[:16])
    if b.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if b.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if b.startswith(b"BM"):
        return "BMP"
    if b[:4] in (b"II*\0", b"MM\0*"):
        return "TIFF"
    if b[:4] == b"RIFF" and b[8:12] == b"WEBP":
        return "WebP"
    if len(b) >= 3 and b[0:1] == b"P" and b[1:2] in b"1234567" and b[2:3] in b" \t\r\n#":
        return "PPM/PGM/PBM/PAM"
    if b.startswith(b"\0\0\0\x0cjP  \r\n\x87\n") or b.startswith(b"\xff\x4f\xff\x51"):
        return "JPEG 2000"
    if b[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def encoded_image_size(data: bytes | memoryview | np.ndarray) -> tuple[int, int] | None:
    """(height, width) from the header of an image of :data:`FORMATS` without decoding it; None otherwise."""
    view = _bytes_view(data)
    return _header_size(image_format(view), view)


def _header_size(kind: str | None, b: memoryview) -> tuple[int, int] | None:
    """The size the header of a ``kind`` file says (the format already sniffed), None when it says none."""
    reader = _SIZE_READERS.get(kind or "")
    if reader is None:
        return None
    try:
        return reader(b)
    except (IndexError, ValueError):
        return None


def _png_size(b: memoryview) -> tuple[int, int] | None:
    if len(b) < 24 or b[12:16] != b"IHDR":
        return None
    return int.from_bytes(b[20:24], "big"), int.from_bytes(b[16:20], "big")


def _jpeg_size(b: memoryview) -> tuple[int, int] | None:
    """The first start-of-frame's size, walking the marker segments (fill bytes 0xFF allowed before a marker)."""
    i = 2
    while i + 1 < len(b):
        if b[i] != 0xFF:
            return None
        while i + 1 < len(b) and b[i + 1] == 0xFF:  # fill bytes
            i += 1
        if i + 1 >= len(b):
            return None
        marker = b[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(b):
                return None
            return int.from_bytes(b[i + 5 : i + 7], "big"), int.from_bytes(b[i + 7 : i + 9], "big")
        if i + 4 > len(b):
            return None
        i += 2 + int.from_bytes(b[i + 2 : i + 4], "big")
    return None


def _bmp_size(b: memoryview) -> tuple[int, int] | None:
    if len(b) < 26:
        return None
    if int.from_bytes(b[14:18], "little") == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return int.from_bytes(b[20:22], "little"), int.from_bytes(b[18:20], "little")
    w = int.from_bytes(b[18:22], "little", signed=True)
    h = int.from_bytes(b[22:26], "little", signed=True)
    return abs(h), abs(w)


def _tiff_size(b: memoryview) -> tuple[int, int] | None:
    """ImageLength and ImageWidth of the first IFD (the page OpenCV decodes)."""
    order = "little" if b[:2] == b"II" else "big"
    offset = int.from_bytes(b[4:8], order)
    count = int.from_bytes(b[offset : offset + 2], order)
    values: dict[int, int] = {}
    for k in range(count):
        e = offset + 2 + 12 * k
        if e + 12 > len(b):
            return None
        tag, kind = int.from_bytes(b[e : e + 2], order), int.from_bytes(b[e + 2 : e + 4], order)
        if tag in (256, 257):
            width = 2 if kind == 3 else 4  # SHORT or LONG
            values[tag] = int.from_bytes(b[e + 8 : e + 8 + width], order)
    if 256 not in values or 257 not in values:
        return None
    return values[257], values[256]


def _webp_size(b: memoryview) -> tuple[int, int] | None:
    chunk = b[12:16]
    if chunk == b"VP8X" and len(b) >= 30:
        return 1 + int.from_bytes(b[27:30], "little"), 1 + int.from_bytes(b[24:27], "little")
    if chunk == b"VP8L" and len(b) >= 25 and b[20] == 0x2F:
        bits = int.from_bytes(b[21:25], "little")
        return 1 + ((bits >> 14) & 0x3FFF), 1 + (bits & 0x3FFF)
    if chunk == b"VP8 " and len(b) >= 30 and b[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(b[28:30], "little") & 0x3FFF, int.from_bytes(b[26:28], "little") & 0x3FFF
    return None


def _pnm_size(b: memoryview) -> tuple[int, int] | None:
    """Width and height of a Netpbm header (P1-P6: after the magic, comments allowed; P7: WIDTH/HEIGHT lines)."""
    head = bytes(b[:4096])
    if head[1:2] == b"7":
        fields: dict[bytes, int] = {}
        for line in head.split(b"\n")[1:]:
            parts = line.split()
            if len(parts) == 2 and parts[0] in (b"WIDTH", b"HEIGHT") and parts[1].isdigit():
                fields[parts[0]] = int(parts[1])
            if parts[:1] == [b"ENDHDR"]:
                break
        if len(fields) != 2:
            return None
        return fields[b"HEIGHT"], fields[b"WIDTH"]
    tokens: list[bytes] = []
    for line in head[2:].split(b"\n"):
        tokens += line.split(b"#", 1)[0].split()
        if len(tokens) >= 2:
            break
    if (
        len(tokens) < 2
        or not (tokens[0].isdigit() and tokens[1].isdigit())
        or max(len(t) for t in tokens[:2]) > 10
    ):
        return None
    return int(tokens[1]), int(tokens[0])


def _jp2_size(b: memoryview) -> tuple[int, int] | None:
    if bytes(b[:4]) == b"\xff\x4f\xff\x51":  # a raw codestream: the SIZ segment follows the SOC marker
        xsiz, ysiz = int.from_bytes(b[8:12], "big"), int.from_bytes(b[12:16], "big")
        xo, yo = int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")
        return ysiz - yo, xsiz - xo
    at = bytes(b).find(b"ihdr")  # the image header box inside the jp2h super box
    if at < 0 or at + 12 > len(b):
        return None
    return int.from_bytes(b[at + 4 : at + 8], "big"), int.from_bytes(b[at + 8 : at + 12], "big")


def _gif_size(b: memoryview) -> tuple[int, int] | None:
    if len(b) < 10:
        return None
    return int.from_bytes(b[8:10], "little"), int.from_bytes(b[6:8], "little")


_SIZE_READERS = {
    "PNG": _png_size,
    "JPEG": _jpeg_size,
    "BMP": _bmp_size,
    "TIFF": _tiff_size,
    "WebP": _webp_size,
    "PPM/PGM/PBM/PAM": _pnm_size,
    "JPEG 2000": _jp2_size,
    "GIF": _gif_size,
}


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
