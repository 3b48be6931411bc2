"""The one pre-processing every backend, the exporter's verification and calibration share.

It reproduces torchvision's ``GeneralizedRCNNTransform`` (eval mode) on numpy/OpenCV so that a deployed
model sees bit-for-bit (to ~1e-6) what the PyTorch model saw: normalize first, then bilinear resize with
``recompute_scale_factor=True`` semantics (output size ``floor(side * scale)``, interpolation scale
recomputed from the integer sizes, half-pixel centers), then zero padding to the size divisibility. The order
matters at the borders and for the padded zeros, which is why it is not "resize uint8, then normalize".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: ImageNet statistics for RGB in [0, 1]: what torchvision's detection models are trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessParams:
    """Pre-processing of one model; serialized into ONNX metadata and engine sidecars as ``to_dict()``."""

    min_size: int = 800
    max_size: int = 1333
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN  # RGB, for pixels scaled to [0, 1]
    pixel_std: tuple[float, float, float] = IMAGENET_STD
    size_divisibility: int = 32

    def __post_init__(self) -> None:
        if self.min_size <= 0 or self.max_size <= 0:
            raise ValueError(f"min_size and max_size must be positive, got {self.min_size}, {self.max_size}")
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3:
            raise ValueError(
                f"pixel_mean and pixel_std need 3 values (RGB), got {self.pixel_mean}, {self.pixel_std}"
            )
        if any(s <= 0 for s in self.pixel_std):
            raise ValueError(f"pixel_std must be positive, got {self.pixel_std}")
        if self.size_divisibility < 0:
            raise ValueError(f"size_divisibility must be >= 0, got {self.size_divisibility}")
        # Lists from JSON/YAML become tuples so instances stay hashable and compare equal.
        object.__setattr__(self, "pixel_mean", tuple(float(v) for v in self.pixel_mean))
        object.__setattr__(self, "pixel_std", tuple(float(v) for v in self.pixel_std))

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_size": int(self.min_size),
            "max_size": int(self.max_size),
            "pixel_mean": list(self.pixel_mean),
            "pixel_std": list(self.pixel_std),
            "size_divisibility": int(self.size_divisibility),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessParams:
        known = {"min_size", "max_size", "pixel_mean", "pixel_std", "size_divisibility"}
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


def resized_size(h: int, w: int, params: PreprocessParams) -> tuple[int, int]:
    """Size torchvision resizes an (h, w) image to: ``floor(side * scale)`` computed in double precision."""
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {h}x{w}")
    scale = min(params.min_size / min(h, w), params.max_size / max(h, w))
    return int(math.floor(float(h) * scale)), int(math.floor(float(w) * scale))


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
    """One image to a normalized, resized float32 [3, h', w'] array (no padding)."""
    _check_image(image_bgr)
    h, w = image_bgr.shape[:2]
    # (x / 255 - mean) / std in float32 on the full-size image, as torchvision normalizes before resizing.
    chw = image_bgr[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) * np.float32(1.0 / 255.0)
    mean = np.asarray(params.pixel_mean, np.float32)[:, None, None]
    std = np.asarray(params.pixel_std, np.float32)[:, None, None]
    chw = (chw - mean) / std
    nh, nw = resized_size(h, w, params)
    if (nh, nw) == (h, w):
        return np.ascontiguousarray(chw)
    return bilinear_resize_chw(chw, nh, nw)


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
