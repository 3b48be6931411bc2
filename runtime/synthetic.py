"""Synthetic BGR pictures with object-like regions: the one generator of test and benchmark images.

Nothing can be downloaded on the machines this runs on, so export verification, ``runtime.bench
--synthetic`` and the tests make their own pictures. Blocky noise with a few solid rectangles gives a
detector edges and regions to respond to, so proposals, NMS and masks are exercised, not degenerate.
"""

from __future__ import annotations

import numpy as np

from runtime.preprocess import PreprocessParams

#: (height, width) factors of the short side: sizes the resize shrinks and enlarges, both orientations
SIZE_FACTORS = ((1.5, 2.0), (0.6, 0.8), (1.25, 1.0), (0.75, 0.5), (1.0, 1.33), (0.9, 1.1))


def textured_image(rng: np.random.Generator, h: int, w: int, rectangles: int = 4) -> np.ndarray:
    """Blocky (8 px) noise with ``rectangles`` solid rectangles of a third of the image each."""
    img = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)[:h, :w]
    for _ in range(rectangles):
        y, x = rng.integers(0, max(h // 2, 1)), rng.integers(0, max(w // 2, 1))
        img[y : y + h // 3, x : x + w // 3] = rng.integers(0, 256, 3, dtype=np.uint8)
    return np.ascontiguousarray(img)


def near_blank_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Nothing to detect for a trained model; the faint noise breaks the exact score ties a perfectly flat
    image gives (tie order is float noise, not a property of an export)."""
    return (127 + rng.integers(-2, 3, (h, w, 3))).astype(np.uint8)


def images_of_size(count: int, hw: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """``count`` textured images of one size (benchmarks: every iteration does the same work)."""
    rng = np.random.default_rng(seed)
    return [textured_image(rng, hw[0], hw[1], rectangles=6) for _ in range(count)]


def images_around(count: int, params: PreprocessParams, seed: int = 0) -> list[np.ndarray]:
    """``count`` images whose sizes the model's resize shrinks and enlarges, in both orientations; with
    more than one, the last is near-blank (often zero detections)."""
    rng = np.random.default_rng(seed)
    s = params.min_size
    images = []
    for i in range(count):
        fh, fw = SIZE_FACTORS[i % len(SIZE_FACTORS)]
        h, w = max(int(s * fh), 16), max(int(s * fw), 16)
        last = i == count - 1 and count > 1
        images.append(near_blank_image(rng, h, w) if last else textured_image(rng, h, w))
    return images
