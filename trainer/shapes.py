"""The embedded default data set: solid shapes on textured backgrounds, written in COCO format.

It exists so the whole pipeline (training, export, accuracy checks, demo) runs on a fresh machine with no
download. The data must be learnable by a small Mask R-CNN trained from scratch on a CPU in minutes (solid
colors far from the background, crisp edges, moderate sizes and counts, partial occlusion only) and still
exercise what real data does: textures, occlusion (every mask is the *visible* part), several image sizes and
aspect ratios, images with no object, polygon and RLE (compressed and uncompressed) masks, and keypoints.

Keypoints are each shape's four extreme points (top, right, bottom, left). Corners would not work: a circle has
none and the classes have 3, 4, 5 and 6 of them, while Keypoint R-CNN needs one fixed count per instance.
Extreme points are defined for every class, are visually well-localized (a corner, or the tip of a curve), and
their names have a left/right pair, so horizontal-flip augmentation has a real flip map to exercise.

Each image is drawn from its own random generator seeded by (seed, split, index): the output is deterministic
from the seed, and one image can be re-rendered alone (the tests do this to compare masks with pixels).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from runtime.atomic_files import write_bytes_atomic

logger = logging.getLogger(__name__)

# Distinct silhouettes even at 30 px: a hexagon was tried and is a circle at that size.
SHAPES_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
SHAPES_KEYPOINTS: tuple[str, ...] = ("top", "right", "bottom", "left")
# 1-based keypoint indices, as COCO stores them: the outline through the four extreme points.
SHAPES_SKELETON: tuple[tuple[int, int], ...] = ((1, 2), (2, 3), (3, 4), (4, 1))

_SPLIT_CODES = {"train": 0, "val": 1}
# Fixed-point bits for cv2.fillPoly: sub-pixel vertex positions give smoother shapes without anti-aliasing,
# so every painted pixel is exactly the shape's color and exactly in its mask.
_SHIFT = 4
# Polygons are traced on an upscaled mask so that they follow pixel edges, not pixel centers: decoding them
# with pycocotools then gives back the visible mask exactly (tested) instead of one that is half a pixel thin.
_TRACE_SCALE = 4
_TRACE_EPSILON = 0.25  # polygon simplification tolerance, in original pixels


@dataclass(frozen=True)
class ShapesConfig:
    """Everything that shapes the distribution; defaults tuned for a from-scratch CPU training run."""

    min_short_side: int = 160
    max_short_side: int = 320
    min_aspect: float = 0.6  # width / height
    max_aspect: float = 1.8
    # diameter of the shape's circumscribed circle, in pixels: large enough that the classes stay distinct
    min_size: float = 40.0
    max_size: float = 130.0
    max_objects: int = 5
    empty_fraction: float = 0.08  # images with no object at all
    min_visible_fraction: float = 0.5  # occlusion stays partial: each instance keeps this much of its area
    min_color_distance: float = 100.0  # RGB distance from every background color
    rle_fraction: float = 0.25  # instances stored as RLE (the rest as polygons, except masks with holes)
    # Images written as JPEG (the rest as PNG, whose pixels are exact): most, as noisy PNGs are large.
    jpeg_fraction: float = 0.7


@dataclass
class RenderedInstance:
    """One painted shape: the mask is what remains visible after later shapes are painted on top."""

    category_id: int
    color: tuple[int, int, int]  # RGB
    full_mask: np.ndarray  # bool [H, W], the whole shape
    visible_mask: np.ndarray  # bool [H, W]
    keypoints: np.ndarray  # float32 [K, 3]: x, y, visibility (2 visible, 1 occluded)


@dataclass
class RenderedImage:
    image: np.ndarray  # uint8 [H, W, 3] RGB
    instances: list[RenderedInstance]


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """One independent generator per image, so any image can be re-rendered alone."""
    return np.random.default_rng([seed, _SPLIT_CODES[split], index])


def render_image(rng: np.random.Generator, config: ShapesConfig = ShapesConfig()) -> RenderedImage:
    """Draw one image: a textured background, then shapes painted in order (later ones on top)."""
    height, width = _sample_image_size(rng, config)
    background, background_colors = _make_background(rng, height, width)
    image = background.copy()
    num_objects = 0 if rng.random() < config.empty_fraction else int(rng.integers(1, config.max_objects + 1))

    placed: list[
        tuple[int, tuple[int, int, int], np.ndarray, np.ndarray]
    ] = []  # class, color, mask, extremes
    for _ in range(num_objects):
        category_id = int(rng.integers(1, len(SHAPES_CLASSES) + 1))
        color = _sample_color(rng, background_colors, [p[1] for p in placed], config.min_color_distance)
        for _attempt in range(20):
            vertices = _shape_vertices(rng, category_id, height, width, config)
            mask = _fill(vertices, height, width)
            if _keeps_occlusion_partial([p[2] for p in placed], mask, config.min_visible_fraction):
                placed.append((category_id, color, mask, _extreme_points(vertices)))
                break

    instances: list[RenderedInstance] = []
    covered_later = np.zeros((height, width), bool)
    for category_id, color, mask, extremes in reversed(placed):
        visible = mask & ~covered_later
        if visible.any():  # always true given the occlusion limit; kept so a hidden shape can never leak in
            keypoints = np.zeros((len(SHAPES_KEYPOINTS), 3), np.float32)
            keypoints[:, :2] = extremes
            cols = np.clip(np.floor(extremes[:, 0]).astype(int), 0, width - 1)
            rows = np.clip(np.floor(extremes[:, 1]).astype(int), 0, height - 1)
            keypoints[:, 2] = np.where(covered_later[rows, cols], 1, 2)
            instances.append(RenderedInstance(category_id, color, mask, visible, keypoints))
        covered_later |= mask
    instances.reverse()
    for inst in instances:
        image[inst.full_mask] = inst.color
    return RenderedImage(image=image, instances=instances)


def generate_shapes_dataset(
    output_dir: str | os.PathLike[str],
    num_train: int = 1500,
    num_val: int = 200,
    seed: int = 0,
    config: ShapesConfig = ShapesConfig(),
    progress: bool = True,
) -> dict[str, tuple[Path, Path]]:
    """Write the train and val splits; returns split -> (annotation file, image folder).

    The annotation file of a split is written last and atomically, so its presence means the split is complete
    (the dataset catalog relies on this to decide whether to generate).
    """
    if num_train < 0 or num_val < 0:
        raise ValueError(f"image counts must be >= 0, got num_train={num_train}, num_val={num_val}")
    output_dir = Path(output_dir)
    result: dict[str, tuple[Path, Path]] = {}
    for split, count in (("train", num_train), ("val", num_val)):
        result[split] = _write_split(output_dir, split, count, seed, config, progress)
    return result


def shapes_categories() -> list[dict]:
    """COCO ``categories`` entries, ids 1..K in SHAPES_CLASSES order."""
    return [
        {
            "id": i,
            "name": name,
            "supercategory": "shape",
            "keypoints": list(SHAPES_KEYPOINTS),
            "skeleton": [list(edge) for edge in SHAPES_SKELETON],
        }
        for i, name in enumerate(SHAPES_CLASSES, start=1)
    ]


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons following the pixel edges of a mask's outer boundaries (holes are not representable)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return []
    x0, y0 = int(xs.min()), int(ys.min())
    crop = mask[y0 : ys.max() + 1, x0 : xs.max() + 1].astype(np.uint8)
    up = cv2.resize(crop, None, fx=_TRACE_SCALE, fy=_TRACE_SCALE, interpolation=cv2.INTER_NEAREST)
    up = cv2.copyMakeBorder(up, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    polygons = []
    for contour in contours:
        contour = cv2.approxPolyDP(contour.astype(np.float32), _TRACE_EPSILON * _TRACE_SCALE, True)
        points = (contour.reshape(-1, 2) - 1 + 0.5) / _TRACE_SCALE + np.array([x0, y0])
        if len(points) >= 3:
            polygons.append([round(float(v), 3) for v in points.ravel()])
    return polygons


def cli_make_shapes(argv: list[str]) -> int:
    """``python -m trainer make-shapes``: generate the embedded data set."""
    parser = argparse.ArgumentParser(
        prog="python -m trainer make-shapes",
        description="Generate the COCO-format shapes instance segmentation data set (train and val splits).",
    )
    parser.add_argument("--output", default="datasets/shapes", help="output folder (default: %(default)s)")
    parser.add_argument("--num-train", type=int, default=1500, help="train images (default: %(default)s)")
    parser.add_argument("--num-val", type=int, default=200, help="val images (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--max-objects", type=int, default=ShapesConfig.max_objects, help="per image")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.num_train < 0 or args.num_val < 0:
        parser.error("--num-train and --num-val must be >= 0")
    if args.max_objects < 1:
        parser.error("--max-objects must be >= 1")
    try:
        paths = generate_shapes_dataset(
            args.output,
            num_train=args.num_train,
            num_val=args.num_val,
            seed=args.seed,
            config=ShapesConfig(max_objects=args.max_objects),
            progress=not args.no_progress,
        )
    except OSError as exc:
        print(f"error: cannot write the shapes data set to {args.output}: {exc}")
        return 1
    for split, (ann_file, img_dir) in paths.items():
        print(f"{split}: {ann_file} (images in {img_dir})")
    return 0


# --- writing ---------------------------------------------------------------------------------------------


def _write_split(
    output_dir: Path, split: str, count: int, seed: int, config: ShapesConfig, progress: bool
) -> tuple[Path, Path]:
    img_dir = output_dir / split
    ann_file = output_dir / "annotations" / f"instances_{split}.json"
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    images: list[dict] = []
    annotations: list[dict] = []
    for index in tqdm(range(count), desc=f"shapes {split}", unit="img", disable=not progress):
        rng = image_rng(seed, split, index)
        rendered = render_image(rng, config)
        # Storage choices come from the same per-image generator, after rendering: still deterministic.
        extension = "jpg" if rng.random() < config.jpeg_fraction else "png"
        file_name = f"{index:06d}.{extension}"
        bgr = cv2.cvtColor(rendered.image, cv2.COLOR_RGB2BGR)
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if extension == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
        if not cv2.imwrite(str(img_dir / file_name), bgr, params):
            raise OSError(f"cannot write image {img_dir / file_name}")
        height, width = rendered.image.shape[:2]
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for inst in rendered.instances:
            annotations.append(_annotation(inst, rng, config, image_id, len(annotations) + 1))
    coco = {
        "info": {"description": f"maskrcnn-deploy shapes, split {split}, seed {seed}", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": shapes_categories(),
    }
    write_bytes_atomic(ann_file, json.dumps(coco, separators=(",", ":")).encode())
    return ann_file, img_dir


def _annotation(
    inst: RenderedInstance, rng: np.random.Generator, config: ShapesConfig, image_id: int, ann_id: int
) -> dict:
    rle = mask_utils.encode(np.asfortranarray(inst.visible_mask.astype(np.uint8)))
    segmentation: list[list[float]] | dict
    draw = rng.random()
    polygons = [] if _has_holes(inst.visible_mask) else mask_to_polygons(inst.visible_mask)
    if draw >= config.rle_fraction and polygons:
        segmentation = polygons
    elif draw < config.rle_fraction / 3:
        segmentation = _uncompressed_rle(inst.visible_mask)
    else:
        segmentation = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": inst.category_id,
        "segmentation": segmentation,
        "area": float(mask_utils.area(rle)),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        "iscrowd": 0,
        "keypoints": [round(float(v), 2) for v in inst.keypoints.ravel()],
        "num_keypoints": int((inst.keypoints[:, 2] > 0).sum()),
    }


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths of the column-major mask, starting with a run of zeros."""
    flat = mask.astype(np.uint8).ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def _has_holes(mask: np.ndarray) -> bool:
    contours, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return hierarchy is not None and bool((hierarchy[0][:, 3] >= 0).any())


# --- drawing ---------------------------------------------------------------------------------------------


def _sample_image_size(rng: np.random.Generator, config: ShapesConfig) -> tuple[int, int]:
    short = int(rng.integers(config.min_short_side, config.max_short_side + 1))
    aspect = math.exp(rng.uniform(math.log(config.min_aspect), math.log(config.max_aspect)))
    if aspect >= 1:
        return short, int(round(short * aspect))
    return int(round(short / aspect)), short


def _random_color(rng: np.random.Generator, low: int = 0, high: int = 256) -> np.ndarray:
    return rng.integers(low, high, size=3).astype(np.float32)


def _make_background(
    rng: np.random.Generator, height: int, width: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """A textured background and the colors it is made of (shape colors are kept away from them)."""
    kind = rng.choice(["noise", "gradient", "stripes", "checker"])
    c1, c2 = _random_color(rng, 30, 226), _random_color(rng, 30, 226)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "noise":
        small = rng.random((max(2, height // 24), max(2, width // 24))).astype(np.float32)
        t = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        proj = xx * math.cos(angle) + yy * math.sin(angle)
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
    elif kind == "stripes":
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(8, 40)
        proj = xx * math.cos(angle) + yy * math.sin(angle)
        t = (np.sin(2 * math.pi * proj / period) > 0).astype(np.float32)
        t = cv2.GaussianBlur(t, (0, 0), rng.uniform(0.5, 2.0))
    else:
        cell = int(rng.integers(10, 40))
        t = (((xx // cell) + (yy // cell)) % 2).astype(np.float32)
    background = c1 + (c2 - c1) * t[..., None]
    sigma = np.float32(rng.uniform(1.0, 6.0))
    background += sigma * rng.standard_normal((height, width, 3), dtype=np.float32)
    return background.clip(0, 255).astype(np.uint8), [c1, c2]


def _sample_color(
    rng: np.random.Generator,
    background_colors: Sequence[np.ndarray],
    shape_colors: Sequence[tuple[int, int, int]],
    min_distance: float,
) -> tuple[int, int, int]:
    """A color far from the background (and from other shapes, so overlapping shapes have visible edges)."""
    best, best_distance = None, -1.0
    for _ in range(50):
        color = _random_color(rng)
        distance = min(
            [float(np.linalg.norm(color - c)) for c in background_colors]
            + [float(np.linalg.norm(color - np.array(c))) * 1.5 for c in shape_colors]
        )
        if distance > best_distance:
            best, best_distance = color, distance
        if distance >= min_distance:
            break
    assert best is not None
    return int(best[0]), int(best[1]), int(best[2])


def _shape_vertices(
    rng: np.random.Generator, category_id: int, height: int, width: int, config: ShapesConfig
) -> np.ndarray:
    """Vertices (float [N, 2], x y) of one randomly sized, rotated and placed shape, inside the image."""
    name = SHAPES_CLASSES[category_id - 1]
    max_size = min(config.max_size, 0.7 * min(height, width))
    diameter = math.exp(rng.uniform(math.log(config.min_size), math.log(max(max_size, config.min_size))))
    radius = diameter / 2
    rotation = rng.uniform(0, 2 * math.pi)
    if name == "circle":
        angles = np.linspace(0, 2 * math.pi, 96, endpoint=False)
        radii = np.full_like(angles, radius)
    elif name == "star":
        angles = np.linspace(0, 2 * math.pi, 10, endpoint=False) + rotation
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * rng.uniform(0.4, 0.5))
    elif name == "cross":
        arm = radius * rng.uniform(0.3, 0.4)  # half-width of the bars
        local = np.array(
            [(arm, radius), (arm, arm), (radius, arm), (radius, -arm), (arm, -arm), (arm, -radius),
             (-arm, -radius), (-arm, -arm), (-radius, -arm), (-radius, arm), (-arm, arm), (-arm, radius)]
        )  # fmt: skip
        angles = np.arctan2(local[:, 1], local[:, 0]) + rotation
        radii = np.hypot(local[:, 0], local[:, 1])
    else:
        sides = {"square": 4, "triangle": 3}[name]
        angles = np.linspace(0, 2 * math.pi, sides, endpoint=False) + rotation
        radii = np.full_like(angles, radius)
    offsets = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    low = -offsets.min(axis=0) + 1
    high = np.array([width, height]) - offsets.max(axis=0) - 1
    center = rng.uniform(low, np.maximum(high, low))
    return (offsets + center).astype(np.float32)


def _fill(vertices: np.ndarray, height: int, width: int) -> np.ndarray:
    canvas = np.zeros((height, width), np.uint8)
    # fillPoly samples pixel centers; shift by half a pixel so vertices are in pixel-corner coordinates.
    points = np.round((vertices - 0.5) * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(canvas, [points], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return canvas.astype(bool)


def _extreme_points(vertices: np.ndarray, tie: float = 1.0) -> np.ndarray:
    """Top, right, bottom, left points: on a flat extreme edge (within ``tie`` pixels), its middle."""
    result = np.zeros((4, 2), np.float32)
    for i, (axis, sign) in enumerate(((1, -1), (0, 1), (1, 1), (0, -1))):
        values = sign * vertices[:, axis]
        best = values.max()
        near = vertices[values >= best - tie]
        result[i, axis] = vertices[np.argmax(values), axis]
        result[i, 1 - axis] = near[:, 1 - axis].mean()
    return result


def _keeps_occlusion_partial(masks: Sequence[np.ndarray], new_mask: np.ndarray, min_fraction: float) -> bool:
    """Would painting ``new_mask`` on top leave every earlier shape at least ``min_fraction`` visible?"""
    covered = new_mask.copy()
    for mask in reversed(masks):
        total = int(mask.sum())
        if total == 0 or int((mask & ~covered).sum()) < min_fraction * total:
            return False
        covered |= mask
    return True
