"""Which images may share a call: those that would be padded to the same canvas alone.

A batched call pads its images to one canvas (the largest image, rounded up to the size divisibility), and
what a detector computes for an image depends on that canvas, not only on the image:

- GroupNorm takes its statistics over the whole canvas, padding included (about 3 AP points on the
  shapes model when four images of different sizes share a call);
- padding in a convolution's reach is zero only at the input: after a bias or a frozen BatchNorm's shift it
  is not, and it leaks into the image's border (R-50 boxes up to 0.84 px apart);
- ROIAlign clamps samples at the feature map's last row alone, and interpolates into the padding in a
  larger canvas;
- torchvision's anchor stride of the max-pooled level is ``canvas // grid`` (61 px for an 800-row
  canvas, 64 for an 832-row one).

So the loops that batch (the ``Predictor`` and everything built on it: bench, evaluate, the trainer's
evaluation, export verification; and the Triton network step) run each group of images that share an *own
canvas* (what the image is padded to alone in a call: its size rounded up to the divisibility, or the model's
fixed input size) as one call, on that canvas. Every image then gets the detections it gets alone, on every
backend and for every model, up to the order of float sums; images of one size (video frames, a camera, a
data set of one resolution) still share calls.

The alternative, a network that ignores the padding (GroupNorm statistics over each image's own canvas,
features kept at zero outside it, per-image anchor strides, ROIAlign clamped at each image's own edge), was
set aside: it changes every exported graph (the masking costs work at one image per call too, and the masked
statistics leave the dense region the FP16 and INT8 passes act on), and a padded call computes on its padding,
which grouping does not: on a 2-core EPYC under ONNX Runtime, grouping gave 1.04x, 1.09x and 1.18x the
images/s of one padded call at 1, 2 and 4 shapes_val images per call (noisy: 3 alternated rounds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from runtime.preprocess import PreprocessedBatch, PreprocessParams, padded_size


def own_canvas(
    size: Sequence[int], size_divisibility: int, static_size: Sequence[int] | None = None
) -> tuple[int, int]:
    """The canvas an image of network-input ``size`` (h, w) is padded to when it is alone in a call."""
    if static_size is not None:
        return int(static_size[0]), int(static_size[1])
    return padded_size([(int(size[0]), int(size[1]))], size_divisibility)


def largest_canvas(params: PreprocessParams, static_size: Sequence[int] | None = None) -> tuple[int, int]:
    """The largest own canvas ``params`` produce: no resized side beyond the larger of max_size and min_size,
    rounded up to the divisibility (or the fixed input size). A larger network input came from elsewhere."""
    side = max(int(params.max_size), int(params.min_size))
    return own_canvas((side, side), params.size_divisibility, static_size)


@dataclass(frozen=True)
class CanvasGroup:
    """Images of one call that share an own canvas: their positions in the call and that canvas."""

    indices: tuple[int, ...]
    canvas: tuple[int, int]


def canvas_groups(
    image_sizes: np.ndarray, size_divisibility: int, static_size: Sequence[int] | None = None
) -> list[CanvasGroup]:
    """``image_sizes`` ([B, 2] network-input sizes) grouped by own canvas, groups in order of first image."""
    members: dict[tuple[int, int], list[int]] = {}
    for i, size in enumerate(np.asarray(image_sizes).reshape(-1, 2).tolist()):
        members.setdefault(own_canvas(size, size_divisibility, static_size), []).append(i)
    return [CanvasGroup(tuple(idx), canvas) for canvas, idx in members.items()]


def on_canvas(images: np.ndarray, image_sizes: np.ndarray, canvas: Sequence[int]) -> np.ndarray:
    """``images`` [B, 3, H, W] cropped or zero-padded to ``canvas``: what pre-processing alone would give.

    Only padding is cut or added: an image larger than the canvas is a caller's error, not something to crop.
    """
    ch, cw = int(canvas[0]), int(canvas[1])
    sizes = np.asarray(image_sizes).reshape(-1, 2)
    if (sizes[:, 0] > ch).any() or (sizes[:, 1] > cw).any():
        raise ValueError(f"image sizes {sizes.tolist()} do not fit a {ch}x{cw} canvas")
    h, w = images.shape[2], images.shape[3]
    if (h, w) == (ch, cw):
        return images
    out = np.zeros((images.shape[0], images.shape[1], ch, cw), images.dtype)
    out[:, :, : min(h, ch), : min(w, cw)] = images[:, :, :ch, :cw]
    return out


def split_by_canvas(
    batch: PreprocessedBatch, size_divisibility: int, static_size: Sequence[int] | None = None
) -> list[tuple[CanvasGroup, PreprocessedBatch]]:
    """``batch`` as one batch per own canvas, each on its canvas (``batch`` itself when it is one group)."""
    groups = canvas_groups(batch.image_sizes, size_divisibility, static_size)
    if len(groups) == 1 and tuple(batch.images.shape[2:]) == groups[0].canvas:
        return [(groups[0], batch)]
    out = []
    for group in groups:
        part = batch.take(group.indices)
        part.images = on_canvas(part.images, part.image_sizes, group.canvas)
        out.append((group, part))
    return out
