"""Small models and data for the runtime tests, made here (nothing can be downloaded).

A randomly initialized shapes-config Mask R-CNN with a low score threshold has plenty of detections, which is
all the backend, pipeline and command tests need; they check plumbing and parity, not accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from tests.common import SHAPES_CONFIG, shapes_class_names

#: a lowered score threshold so a random model detects; small sizes keep CPU runs fast
TEST_OPTS = (
    "MODEL.ROI_HEADS.SCORE_THRESH", "0.01",
    "TEST.DETECTIONS_PER_IMG", "20",
    "INPUT.MIN_SIZE_TEST", "128",
    "INPUT.MAX_SIZE_TEST", "192",
)  # fmt: skip


def save_random_shapes_checkpoint(
    out_dir: Path, seed: int = 0, name: str = "model", opts: Sequence[str] | None = None
) -> Path:
    """A checkpoint of ours (config and class names inside) of a randomly initialized shapes model; ``opts``
    replace the default architecture and test options (the shipped config plus ``opts`` then)."""
    import torch

    from tests.exporter_helpers import GOLDEN_ARCHITECTURE
    from trainer.checkpoint import save_checkpoint
    from trainer.config import config_to_yaml, load_config
    from trainer.model import build_model

    # the architecture these tests' thresholds were chosen on (random GroupNorm heads score far lower)
    cfg = load_config(SHAPES_CONFIG, [*GOLDEN_ARCHITECTURE, *TEST_OPTS] if opts is None else list(opts))
    torch.manual_seed(seed)
    model = build_model(cfg, train=False)
    return save_checkpoint(out_dir, name, model, None, None, 0, config_to_yaml(cfg),
                           shapes_class_names())  # fmt: skip


def make_image(seed: int = 0, h: int = 120, w: int = 160) -> np.ndarray:
    """A BGR picture with a few filled shapes on noise, so detectors have edges to respond to."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    for _ in range(3):
        c = tuple(int(v) for v in rng.integers(100, 255, 3))
        x, y = int(rng.integers(10, w - 40)), int(rng.integers(10, h - 40))
        cv2.rectangle(img, (x, y), (x + 30, y + 25), c, -1)
    return img


def png_header_only(w: int, h: int) -> bytes:
    """A valid 1-bit PNG of w x h, a few KB compressed; decoding it as BGR would take w*h*3 bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (w + 7) // 8)
    body = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
