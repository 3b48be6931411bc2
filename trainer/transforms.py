"""Training augmentation on (image tensor, detection target) pairs.

Only geometric augmentation that must also move the targets lives here. Resizing and normalization are done by
the model itself (torchvision's GeneralizedRCNNTransform), so that training, evaluation and the exported ONNX
graph all see the same pre-processing; doing them here too would apply them twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch

Target = dict[str, torch.Tensor]
Transform = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]

_SIDE = re.compile(r"left|right", re.IGNORECASE)
_SWAP = {"left": "right", "right": "left", "Left": "Right", "Right": "Left", "LEFT": "RIGHT", "RIGHT": "LEFT"}


def keypoint_flip_map(names: Sequence[str]) -> list[int]:
    """Index permutation for a horizontal flip: keypoint i of the flipped instance is keypoint map[i].

    A mirrored left eye is a right eye: names containing "left"/"right" swap with their counterpart (COCO's
    "left_eye" <-> "right_eye", the shapes data's "left" <-> "right"); others keep their index.
    """
    index = {name: i for i, name in enumerate(names)}
    flip = []
    for i, name in enumerate(names):
        mirrored = _SIDE.sub(lambda m: _SWAP.get(m.group(0), m.group(0)), name)
        flip.append(index.get(mirrored, i))
    return flip


class Compose:
    """Applies transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target


class RandomHorizontalFlip:
    """Mirrors the image and its boxes, masks and keypoints with probability ``prob``.

    Coordinates are continuous with pixel corners at integers (COCO's and torchvision's convention), so x maps
    to ``width - x``. Randomness comes from torch's generator, which the data loader seeds per worker.
    """

    def __init__(self, prob: float = 0.5, flip_map: Sequence[int] | None = None) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {prob}")
        self.prob = prob
        self.flip_map = None if flip_map is None else torch.as_tensor(list(flip_map), dtype=torch.int64)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        if torch.rand(()) >= self.prob:
            return image, target
        return hflip(image, target, self.flip_map)


def hflip(
    image: torch.Tensor, target: Target, flip_map: torch.Tensor | None = None
) -> tuple[torch.Tensor, Target]:
    """Deterministic horizontal flip of an image [C, H, W] and its target."""
    width = image.shape[-1]
    target = dict(target)
    if "boxes" in target:
        boxes = target["boxes"].clone()
        boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
        target["boxes"] = boxes
    if "masks" in target:
        target["masks"] = target["masks"].flip(-1)
    if "keypoints" in target:
        keypoints = target["keypoints"].clone()
        keypoints[..., 0] = width - keypoints[..., 0]
        if flip_map is not None:
            if len(flip_map) != keypoints.shape[1]:
                raise ValueError(f"flip map has {len(flip_map)} entries for {keypoints.shape[1]} keypoints")
            keypoints = keypoints[:, flip_map]
        keypoints[keypoints[..., 2] == 0] = 0  # unlabeled points stay all-zero, as COCO stores them
        target["keypoints"] = keypoints
    return image.flip(-1), target


def build_train_transforms(keypoint_names: Sequence[str] = (), flip_prob: float = 0.5) -> Compose:
    """The training augmentation: a random horizontal flip with the keypoint flip map of the data set."""
    flip_map = keypoint_flip_map(keypoint_names) if keypoint_names else None
    return Compose([RandomHorizontalFlip(flip_prob, flip_map)])
