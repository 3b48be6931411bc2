"""The one pre-processing every backend, the exporter's verification and calibration share.

By default it reproduces torchvision's ``GeneralizedRCNNTransform`` (eval mode) on numpy/OpenCV so that a
deployed model sees bit-for-bit (to ~1e-6) what the PyTorch model saw: normalize first, then bilinear resize
with ``recompute_scale_factor=True`` semantics (output size ``floor(side * scale)``, interpolation scale
recomputed from the integer sizes, half-pixel centers), then zero padding to the size divisibility. The order
matters at the borders and for the padded zeros, which is why it is not "resize uint8, then normalize".

Models imported from maskrcnn-benchmark and detectron2 were trained and tested with those projects' own
test-time input instead (``PreprocessParams.resize``): their size rules (:func:`resized_size`), and a PIL
bilinear resize of the uint8 image (antialiased when shrinking) *before* normalization, usually of BGR
pixels in 0..255 (``input_format``, ``pixel_range``). Both pad the normalized image with 0, as here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: ImageNet statistics for RGB in [0, 1]: what torchvision's detection models are trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: channel orders of the network input (images arrive BGR, as OpenCV reads them)
INPUT_FORMATS: tuple[str, ...] = ("RGB", "BGR")
#: pixel ranges before mean/std: 1.0 = scaled to [0, 1] (torchvision), 255.0 = raw 0..255 (mrb, detectron2)
PIXEL_RANGES: tuple[float, ...] = (1.0, 255.0)
RESIZE_TORCHVISION = "torchvision"
RESIZE_MASKRCNN_BENCHMARK = "maskrcnn-benchmark"
RESIZE_DETECTRON2 = "detectron2"
#: resize algorithms and size rules (see :func:`resized_size` and :func:`normalize_and_resize`)
RESIZE_MODES: tuple[str, ...] = (RESIZE_TORCHVISION, RESIZE_MASKRCNN_BENCHMARK, RESIZE_DETECTRON2)

#: fields added after the first exports: ``to_dict`` leaves them out at their defaults, so the metadata of
#: torchvision-style models (and every golden file) stays what it was
_OPTIONAL_DEFAULTS: dict[str, Any] = {"input_format": "RGB", "pixel_range": 1.0, "resize": RESIZE_TORCHVISION}


@dataclass(frozen=True)
class PreprocessParams:
    """Pre-processing of one model; serialized into ONNX metadata and engine sidecars as ``to_dict()``."""

    min_size: int = 800
    max_size: int = 1333
    #: in ``input_format`` channel order and in ``pixel_range`` units
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD
    size_divisibility: int = 32
    input_format: str = "RGB"  # channel order of the network input: "RGB" or "BGR"
    pixel_range: float = 1.0  # 1.0: pixels / 255 before mean/std; 255.0: raw 0..255 values
    resize: str = RESIZE_TORCHVISION  # one of RESIZE_MODES

    def __post_init__(self) -> None:
        if self.min_size <= 0 or self.max_size <= 0:
            raise ValueError(f"min_size and max_size must be positive, got {self.min_size}, {self.max_size}")
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3:
            raise ValueError(
                f"pixel_mean and pixel_std need 3 values (one per channel), "
                f"got {self.pixel_mean}, {self.pixel_std}"
            )
        if any(s <= 0 for s in self.pixel_std):
            raise ValueError(f"pixel_std must be positive, got {self.pixel_std}")
        if self.size_divisibility < 0:
            raise ValueError(f"size_divisibility must be >= 0, got {self.size_divisibility}")
        if not isinstance(self.input_format, str) or self.input_format not in INPUT_FORMATS:
            raise ValueError(
                f"input_format must be one of {', '.join(INPUT_FORMATS)} (the network input's channel "
                f"order), got {self.input_format!r}"
            )
        if (
            isinstance(self.pixel_range, bool)
            or not isinstance(self.pixel_range, numbers.Real)
            or float(self.pixel_range) not in PIXEL_RANGES
        ):
            raise ValueError(
                f"pixel_range must be 1.0 (pixels scaled to [0, 1]) or 255.0 (raw 0..255 values), "
                f"got {self.pixel_range!r}"
            )
        if not isinstance(self.resize, str) or self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")
        # Lists from JSON/YAML become tuples so instances stay hashable and compare equal.
        object.__setattr__(self, "pixel_mean", tuple(float(v) for v in self.pixel_mean))
        object.__setattr__(self, "pixel_std", tuple(float(v) for v in self.pixel_std))
        object.__setattr__(self, "pixel_range", float(self.pixel_range))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; the fields added for foreign checkpoints appear only when not at their default."""
        d: dict[str, Any] = {
            "min_size": int(self.min_size),
            "max_size": int(self.max_size),
            "pixel_mean": list(self.pixel_mean),
            "pixel_std": list(self.pixel_std),
            "size_divisibility": int(self.size_divisibility),
        }
        for name, default in _OPTIONAL_DEFAULTS.items():
            value = getattr(self, name)
            if value != default:
                d[name] = value
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessParams:
        known = {"min_size", "max_size", "pixel_mean", "pixel_std", "size_divisibility", *_OPTIONAL_DEFAULTS}
        unknown = set(d) - known
        if unknown:
            raise ValueError(
                f"unknown pre-processing parameter(s) {sorted(unknown)}; expected {sorted(known)}"
            )
        missing = {"min_size", "max_size"} - set(d)
        if missing:
            raise ValueError(f"pre-processing parameters lack {sorted(missing)}")
        return cls(**{k: d[k] for k in known if k in d})


@dataclass
class PreprocessedBatch:
    """Network inputs of the ONNX contract plus the sizes post-processing needs to undo the resize."""

    images: np.ndarray  # [B, 3, Hp, Wp] float32, normalized, zero padded
    image_sizes: np.ndarray  # [B, 2] int64, (h, w) of each resized image before padding
    original_sizes: np.ndarray  # [B, 2] int64, (h, w) of each input image

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def take(self, indices: Sequence[int] | range) -> PreprocessedBatch:
        """The images at ``indices``, in that order (a copy; the canvas is unchanged)."""
        idx = np.asarray(list(indices), np.int64)
        return PreprocessedBatch(self.images[idx], self.image_sizes[idx], self.original_sizes[idx])


def resized_size(h: int, w: int, params: PreprocessParams) -> tuple[int, int]:
    """(h', w') the model's own test-time transform resizes an (h, w) image to (``params.resize``).

    * torchvision: ``floor(side * scale)``, scale = min(min_size / short, max_size / long), in double;
    * maskrcnn-benchmark (``Resize.get_size``): the short side is ``min_size``, or
      ``round(max_size * short / long)`` when min_size would put the long side over max_size; the long
      side is then truncated, ``int(size * long / short)``; an image whose short side already is that size
      is kept as it is;
    * detectron2 (``ResizeShortestEdge``): the short side exactly min_size and the long side scaled, both
      shrunk by max_size / long when the long side exceeds max_size, then rounded with ``int(x + 0.5)``.
    """
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {h}x{w}")
    h, w = int(h), int(w)
    if params.resize == RESIZE_MASKRCNN_BENCHMARK:
        nh, nw = _maskrcnn_benchmark_size(h, w, int(params.min_size), int(params.max_size))
    elif params.resize == RESIZE_DETECTRON2:
        nh, nw = _detectron2_size(h, w, int(params.min_size), int(params.max_size))
    else:
        scale = min(params.min_size / min(h, w), params.max_size / max(h, w))
        nh, nw = int(math.floor(float(h) * scale)), int(math.floor(float(w) * scale))
    # a strip thinner than max_size / min_size (2x4000 at 800/1333) would round to 0 rows, which no
    # network takes: it keeps one row (or column), so it is detected on like any image, not refused
    return max(nh, 1), max(nw, 1)


def _maskrcnn_benchmark_size(h: int, w: int, size: int, max_size: int) -> tuple[int, int]:
    short, long = float(min(h, w)), float(max(h, w))
    if long / short * size > max_size:
        size = int(round(max_size * short / long))  # Python's round: half to even, as mrb's
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    if w < h:
        return int(size * h / w), size
    return size, int(size * w / h)


def _detectron2_size(h: int, w: int, size: int, max_size: int) -> tuple[int, int]:
    scale = size * 1.0 / min(h, w)
    new_h, new_w = (float(size), scale * w) if h < w else (scale * h, float(size))
    if max(new_h, new_w) > max_size:
        shrink = max_size * 1.0 / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return int(new_h + 0.5), int(new_w + 0.5)


def padded_size(sizes: Sequence[tuple[int, int]], size_divisibility: int) -> tuple[int, int]:
    """Batch canvas size: the largest h and w rounded up to the divisibility, as torchvision batches."""
    h = max(int(s[0]) for s in sizes)
    w = max(int(s[1]) for s in sizes)
    if size_divisibility > 0:
        stride = float(size_divisibility)
        h = int(math.ceil(h / stride) * stride)
        w = int(math.ceil(w / stride) * stride)
    return h, w


def normalize_and_resize(image_bgr: np.ndarray, params: PreprocessParams) -> np.ndarray:
    """One BGR uint8 image to a normalized, resized float32 [3, h', w'] array (no padding).

    torchvision normalizes the full-size float image and then resizes it (float bilinear, no antialias);
    maskrcnn-benchmark and detectron2 resize the uint8 image with PIL and normalize the result.
    """
    _check_image(image_bgr)
    h, w = image_bgr.shape[:2]
    nh, nw = resized_size(h, w, params)
    hwc = image_bgr if params.input_format == "BGR" else image_bgr[:, :, ::-1]
    mean = np.asarray(params.pixel_mean, np.float32)[:, None, None]
    std = np.asarray(params.pixel_std, np.float32)[:, None, None]
    if params.resize != RESIZE_TORCHVISION:
        if (nh, nw) != (h, w):  # PIL's resize to the same size is the identity
            hwc = pil_bilinear_resize(hwc, nh, nw)
        chw = hwc.transpose(2, 0, 1).astype(np.float32)
        if params.pixel_range != 255.0:
            # x * range / 255: to_tensor's x / 255 for range 1; mrb's (x / 255) * 255 is exactly x
            chw = chw * np.float32(params.pixel_range) / np.float32(255.0)
        return np.ascontiguousarray((chw - mean) / std)
    # (x * range / 255 - mean) / std in float32 on the full-size image, as torchvision normalizes before
    # resizing; for range 1 the factor is float32(1 / 255), what this always multiplied by.
    # in place on one float copy: a 40-megapixel photo takes 0.5 GB here, not a temporary per operation
    chw = np.ascontiguousarray(hwc.transpose(2, 0, 1), dtype=np.float32)
    chw *= np.float32(params.pixel_range / 255.0)
    chw -= mean
    chw /= std
    if (nh, nw) == (h, w):
        return np.ascontiguousarray(chw)
    return bilinear_resize_chw(chw, nh, nw)


def pil_bilinear_resize(hwc: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """PIL's ``Image.resize((w, h), BILINEAR)`` of a uint8 HxWx3 array (antialiased when shrinking).

    What maskrcnn-benchmark (``F.resize`` of a PIL image) and detectron2 (``ResizeTransform`` of a uint8
    array) do; PIL resizes each channel alone, so the channel order does not matter. PIL is imported here
    only, so that importing the runtime stays light.
    """
    from PIL import Image  # deferred: only foreign-convention models need it

    pil = Image.fromarray(np.ascontiguousarray(hwc))
    return np.asarray(pil.resize((int(out_w), int(out_h)), Image.Resampling.BILINEAR))


def bilinear_resize_chw(chw: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """torch's ``interpolate(mode="bilinear", align_corners=False)`` on a float32 [C, H, W] array.

    Not cv2.resize: OpenCV computes source coordinates in double, torch in float32, and on noisy images
    that alone differs by 3e-4. See :func:`linear_taps`; this matches torch to ~1e-6.
    """
    _, h, w = chw.shape
    x0, x1, lx0, lx1 = linear_taps(w, out_w)
    y0, y1, ly0, ly1 = linear_taps(h, out_h)
    # Columns first, then rows: the association order of torch's kernel.
    cols = chw[:, :, x0] * lx0 + chw[:, :, x1] * lx1
    return cols[:, y0, :] * ly0[None, :, None] + cols[:, y1, :] * ly1[None, :, None]


def linear_taps(
    n_in: int, n_out: int, start: int = 0, stop: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of torch's half-pixel bilinear interpolation along one axis.

    Returns (i0, i1, w0, w1) for output positions ``start..stop``, so callers (mask pasting) can compute
    just the visible part of a resize. Coordinates are float32 like torch's, rounded once as its
    FMA-contracted x86 kernels round them; computing them in double (OpenCV) or with two float32 roundings
    differs from torch by up to 3e-4 on noisy inputs.
    """
    stop = n_out if stop is None else stop
    scale = np.float32(n_in) / np.float32(n_out)
    dst = np.arange(start, stop, dtype=np.float64) + 0.5
    src = (np.float64(scale) * dst - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    w1 = np.clip(src - i0.astype(np.float32), np.float32(0.0), np.float32(1.0))
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    return i0, i1, np.float32(1.0) - w1, w1


def preprocess(
    images: Sequence[np.ndarray],
    params: PreprocessParams,
    pad_to: tuple[int, int] | None = None,
) -> PreprocessedBatch:
    """Batch BGR uint8 images (as OpenCV reads them) into the model's ``images`` / ``image_sizes`` inputs.

    ``pad_to`` fixes the canvas (for engines and ONNX models exported with a static shape); every resized
    image must fit in it.
    """
    if len(images) == 0:
        raise ValueError("preprocess needs at least one image")
    resized = [normalize_and_resize(img, params) for img in images]
    sizes = [(r.shape[1], r.shape[2]) for r in resized]
    if pad_to is None:
        ph, pw = padded_size(sizes, params.size_divisibility)
    else:
        ph, pw = int(pad_to[0]), int(pad_to[1])
        too_big = [(i, s) for i, s in enumerate(sizes) if s[0] > ph or s[1] > pw]
        if too_big:
            i, s = too_big[0]
            raise ValueError(
                f"image {i} resizes to {s[0]}x{s[1]}, larger than the fixed input size {ph}x{pw}; "
                f"lower min_size/max_size or export with a larger static size"
            )
    batch = np.zeros((len(resized), 3, ph, pw), np.float32)
    for i, r in enumerate(resized):
        batch[i, :, : r.shape[1], : r.shape[2]] = r
    return PreprocessedBatch(
        images=batch,
        image_sizes=np.asarray(sizes, np.int64).reshape(-1, 2),
        original_sizes=np.asarray([img.shape[:2] for img in images], np.int64).reshape(-1, 2),
    )


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy BGR image, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"expected a BGR image of shape HxWx3, got shape {image.shape}; "
            f"use runtime.image_io.read_image to convert grayscale/RGBA images"
        )
    if image.dtype != np.uint8:
        raise ValueError(
            f"expected a uint8 image, got {image.dtype}; use runtime.image_io.read_image to convert it"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image of shape {image.shape}")
