"""What both translators share: the ResNet-FPN backbone keys of ours and the COCO class names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runtime.coco_classes import COCO_CONTIGUOUS_CLASSES

from .reader import KeyReader


def resnet_fpn_keys(
    r: KeyReader, conv_body: str, freeze_at: int, out_channels: int, width_key: str, res2_key: str, stem_key: str,
    stride_in_1x1_key: str,
) -> dict[str, Any]:  # fmt: skip
    """Our MODEL.BACKBONE for a FrozenBN ResNet-FPN whose bottleneck expands 4x (the sources' own check)."""
    width, res2 = int(r.get(width_key)), int(r.get(res2_key))
    if res2 != 4 * width:
        raise r.unsupported(
            res2_key, res2, f"a bottleneck expansion other than 4 x WIDTH_PER_GROUP ({width})"
        )
    return {
        "MODEL.BACKBONE.CONV_BODY": conv_body,
        "MODEL.BACKBONE.NORM": "FrozenBN",
        "MODEL.BACKBONE.HEAD_NORM": "",
        "MODEL.BACKBONE.TRAINABLE_LAYERS": max(0, min(5, 5 - int(freeze_at))),
        "MODEL.BACKBONE.OUT_CHANNELS": int(out_channels),
        "MODEL.BACKBONE.BASE_WIDTH": width,
        "MODEL.BACKBONE.STEM_WIDTH": int(r.get(stem_key)),
        "MODEL.BACKBONE.STRIDE_IN_1X1": bool(r.get(stride_in_1x1_key)),
    }


def coco_names(datasets: Sequence[str], num_classes: int) -> list[str] | None:
    """COCO's 80 names (background first) for a COCO data set's catalog name and 81 classes, else None."""
    if num_classes == len(COCO_CONTIGUOUS_CLASSES) and any(str(d).startswith("coco_") for d in datasets):
        return list(COCO_CONTIGUOUS_CLASSES)
    return None
