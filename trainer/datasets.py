"""COCO-format data for training and evaluation: a name catalog, the dataset, and iteration-based loaders.

Targets follow torchvision's detection convention (boxes xyxy in pixels with corners at integers, labels are
COCO category ids) so torchvision's published COCO weights and ours read the same data. Bad data is handled
where it is cheapest to explain: missing files are errors naming the path; degenerate annotations are dropped
once, at construction, and counted in one log line, so a training run never crashes on them mid-way.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import DataLoader, Dataset, Sampler

from runtime.datasets import DatasetCatalog, DatasetError, DatasetSpec, check_files, load_coco_annotations
from runtime.image_io import ImageReadError, read_image
from trainer.transforms import Transform, build_train_transforms

logger = logging.getLogger(__name__)

Target = dict[str, torch.Tensor]


# --- dataset ---------------------------------------------------------------------------------------------


class COCODetection(Dataset):
    """A COCO-format instance data set, yielding ``(image [3,H,W] RGB in [0,1], torchvision target)``.

    Args:
        ann_file: COCO annotation JSON.
        img_dir: folder holding the images named by ``file_name``.
        train: ignore crowd annotations (they are ignore regions, not objects) and, unless
            ``keep_empty_images``, drop images left without annotations.
        transforms: applied to ``(image, target)`` after loading.
        keep_empty_images: in training, keep images without objects; they are valid negatives that teach the
            model not to fire on backgrounds (the shapes data has some on purpose).
    """

    def __init__(
        self,
        ann_file: str | os.PathLike[str],
        img_dir: str | os.PathLike[str],
        train: bool,
        transforms: Transform | None = None,
        keep_empty_images: bool = True,
    ) -> None:
        self.ann_file, self.img_dir = Path(ann_file), Path(img_dir)
        check_files(DatasetSpec(str(self.ann_file), self.ann_file, self.img_dir))
        self.train = train
        self.transforms = transforms
        self.coco = _load_coco(self.ann_file)

        categories = self.coco.loadCats(sorted(self.coco.getCatIds()))
        max_id = max((c["id"] for c in categories), default=0)
        self.class_names: list[str] = ["N/A"] * (max_id + 1)
        self.class_names[0] = "__background__"
        for cat in categories:
            self.class_names[cat["id"]] = cat["name"]
        with_keypoints = [c for c in categories if c.get("keypoints")]
        self.keypoint_names: list[str] = list(with_keypoints[0]["keypoints"]) if with_keypoints else []

        self._anns: dict[int, list[dict]] = {}
        dropped: Counter[str] = Counter()
        for image_id in sorted(self.coco.getImgIds()):
            info = self.coco.imgs[image_id]
            kept = []
            for ann in self.coco.imgToAnns.get(image_id, []):
                reason = self._drop_reason(ann, info)
                if reason is None:
                    kept.append(_without_degenerate_polygons(ann))
                else:
                    dropped[reason] += 1
            self._anns[image_id] = kept
        ids = sorted(self._anns)
        if train and not keep_empty_images:
            empty = [i for i in ids if not self._anns[i]]
            dropped["images without annotations"] += len(empty)
            ids = [i for i in ids if self._anns[i]]
        self.ids: list[int] = ids
        self.dropped: dict[str, int] = {k: v for k, v in dropped.items() if v}
        if self.dropped:
            counts = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.dropped.items()))
            logger.info("%s: %d images; dropped %s", self.ann_file.name, len(self.ids), counts)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        image_bgr = self.load_image_bgr(index)
        image = torch.from_numpy(np.ascontiguousarray(image_bgr[:, :, ::-1])).permute(2, 0, 1).float() / 255.0
        target = self.load_target(index)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def get_img_info(self, index: int) -> dict[str, Any]:
        """The image's COCO record (id, file_name, height, width), without decoding it."""
        return self.coco.imgs[self.ids[index]]

    def aspect_ratios(self) -> list[float]:
        """Width / height of each image, from the annotation file (grouping must not decode every image)."""
        return [info["width"] / info["height"] for info in map(self.get_img_info, range(len(self)))]

    def load_image_bgr(self, index: int) -> np.ndarray:
        """The image as uint8 BGR [H, W, 3], the input type of the runtime's pre-processing."""
        info = self.get_img_info(index)
        try:  # the one image reader: converts grayscale, alpha, palette and 16-bit files to BGR uint8
            image = read_image(self.img_dir / info["file_name"])
        except ImageReadError as exc:
            raise DatasetError(f"image of {self.ann_file.name} (id {info['id']}): {exc}") from None
        if image.shape[:2] != (info["height"], info["width"]):
            raise DatasetError(
                f"image {self.img_dir / info['file_name']} is {image.shape[1]}x{image.shape[0]} (WxH) but "
                f"{self.ann_file.name} says {info['width']}x{info['height']}: wrong image folder?"
            )
        return image

    def load_target(self, index: int) -> Target:
        """The torchvision detection target of one image (no image decoding)."""
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        height, width = info["height"], info["width"]
        anns = self._anns[image_id]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2].clamp_(0, width)
        boxes[:, 1::2].clamp_(0, height)
        masks = np.zeros((len(anns), height, width), np.uint8)
        for i, ann in enumerate(anns):
            masks[i] = _decode_segmentation(ann["segmentation"], height, width)
        target: Target = {
            "boxes": boxes,
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "masks": torch.from_numpy(masks),
            "image_id": torch.tensor(image_id, dtype=torch.int64),
            "area": torch.tensor([float(a.get("area", 0.0)) for a in anns], dtype=torch.float32),
            "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a in anns], dtype=torch.int64),
        }
        if self.keypoint_names:
            num = len(self.keypoint_names)
            keypoints = torch.zeros((len(anns), num, 3), dtype=torch.float32)
            for i, ann in enumerate(anns):
                values = ann.get("keypoints")
                if values:
                    keypoints[i] = torch.tensor(values, dtype=torch.float32).reshape(num, 3)
            target["keypoints"] = keypoints
        return target

    def _drop_reason(self, ann: dict, info: dict) -> str | None:
        """Why an annotation cannot be a training target, or None to keep it."""
        if self.train and ann.get("iscrowd", 0):
            return "crowd (ignored in training)"
        if ann.get("category_id") not in self.coco.cats:
            return "unknown category"
        bbox = ann.get("bbox")
        if bbox is None or len(bbox) != 4:
            return "missing box"
        x, y, w, h = bbox
        x1, y1 = min(max(x, 0.0), info["width"]), min(max(y, 0.0), info["height"])
        x2, y2 = min(max(x + w, 0.0), info["width"]), min(max(y + h, 0.0), info["height"])
        if x2 - x1 < 1.0 or y2 - y1 < 1.0:
            return "degenerate box (under 1 px inside the image)"
        segm = ann.get("segmentation")
        if segm is None:
            return "missing segmentation"
        if isinstance(segm, list):
            if not any(_valid_polygon(p) for p in segm):
                return "degenerate polygon"
        elif isinstance(segm, dict):
            if list(segm.get("size", [])) != [info["height"], info["width"]]:
                return "RLE size differs from image size"
        else:
            return "unknown segmentation format"
        if (
            self.keypoint_names
            and ann.get("keypoints")
            and len(ann["keypoints"]) != 3 * len(self.keypoint_names)
        ):
            return "wrong number of keypoints"
        return None


def _load_coco(ann_file: Path) -> COCO:
    """pycocotools' COCO of a checked annotation file (``runtime.datasets``), without its prints."""
    data = load_coco_annotations(ann_file)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
    return coco


def _without_degenerate_polygons(ann: dict) -> dict:
    """Keeps the usable parts of a multi-part polygon mask; a copy, as ``coco.anns`` also serves evaluation."""
    segm = ann["segmentation"]
    if isinstance(segm, list) and not all(_valid_polygon(p) for p in segm):
        return {**ann, "segmentation": [p for p in segm if _valid_polygon(p)]}
    return ann


def _valid_polygon(polygon: Any) -> bool:
    if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
        return False
    xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    area = 0.5 * abs(np.dot(xy[:, 0], np.roll(xy[:, 1], 1)) - np.dot(xy[:, 1], np.roll(xy[:, 0], 1)))
    return bool(area > 0.0)


def _decode_segmentation(segm: list | dict, height: int, width: int) -> np.ndarray:
    """Polygons, uncompressed RLE (list counts) or compressed RLE (string counts) -> uint8 [H, W]."""
    if isinstance(segm, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    elif isinstance(segm["counts"], list):
        rle = mask_utils.frPyObjects(segm, height, width)
    else:
        counts = segm["counts"]
        rle = {"size": segm["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(rle)


def build_dataset(
    name: str,
    root: str | os.PathLike[str],
    train: bool,
    flip_prob: float = 0.5,
    keep_empty_images: bool = True,
) -> COCODetection:
    """A catalog name (or explicit ``ann.json:images``) -> dataset, with training augmentation if ``train``."""
    spec = DatasetCatalog.get(name, root)
    dataset = COCODetection(spec.ann_file, spec.img_dir, train=train, keep_empty_images=keep_empty_images)
    if train:
        dataset.transforms = build_train_transforms(dataset.keypoint_names, flip_prob)
    return dataset


# --- sampling and loading --------------------------------------------------------------------------------


def aspect_ratio_groups(aspect_ratios: Sequence[float]) -> list[int]:
    """Group 0 for landscape or square images (w >= h), 1 for portrait: batches then pad little."""
    return [0 if ratio >= 1.0 else 1 for ratio in aspect_ratios]


class IterationBatchSampler(Sampler[list[int]]):
    """Yields this rank's share of batches ``start_iter .. max_iter - 1`` of one endless, seeded stream.

    The stream is a sequence of global batches of ``ims_per_batch`` indices: epochs are reshuffled with
    ``seed + epoch``, and with grouping, each batch is filled from one aspect-ratio group (leftovers carry into
    the next epoch, nothing is dropped). Every rank computes the same stream and takes its slice of each
    global batch, so ranks never share an image within an iteration, and resuming at ``start_iter`` replays
    exactly the batches an uninterrupted run would have seen.
    """

    def __init__(
        self,
        num_images: int,
        ims_per_batch: int,
        start_iter: int,
        max_iter: int,
        seed: int = 0,
        groups: Sequence[int] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        _check_sharding(ims_per_batch, rank, world_size, "SOLVER.IMS_PER_BATCH")
        if num_images <= 0:
            raise DatasetError("the training data set has no images")
        if not 0 <= start_iter <= max_iter:
            raise ValueError(
                f"need 0 <= start_iter <= max_iter, got start_iter={start_iter}, max_iter={max_iter}"
            )
        if groups is not None and len(groups) != num_images:
            raise ValueError(f"{len(groups)} group ids for {num_images} images")
        self.num_images = num_images
        self.ims_per_batch = ims_per_batch
        self.start_iter, self.max_iter = start_iter, max_iter
        self.seed = seed
        self.groups = list(groups) if groups is not None else None
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.max_iter - self.start_iter

    def __iter__(self) -> Iterator[list[int]]:
        per_rank = self.ims_per_batch // self.world_size
        lo = self.rank * per_rank
        for iteration, batch in enumerate(self._global_batches()):
            if iteration >= self.max_iter:
                return
            if iteration >= self.start_iter:
                yield batch[lo : lo + per_rank]

    def _global_batches(self) -> Iterator[list[int]]:
        buffers: dict[int, list[int]] = {}
        epoch = 0
        while True:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            for index in torch.randperm(self.num_images, generator=generator).tolist():
                group = self.groups[index] if self.groups is not None else 0
                buffer = buffers.setdefault(group, [])
                buffer.append(index)
                if len(buffer) == self.ims_per_batch:
                    yield buffer
                    buffers[group] = []
            epoch += 1


def collate_fn(batch: Sequence[tuple[torch.Tensor, Target]]) -> tuple[list[torch.Tensor], list[Target]]:
    """Lists, not stacked tensors: images differ in size, and the model batches them itself."""
    return [image for image, _ in batch], [target for _, target in batch]


def build_train_loader(
    dataset: COCODetection,
    ims_per_batch: int,
    num_workers: int,
    aspect_ratio_grouping: bool,
    seed: int,
    start_iter: int,
    max_iter: int,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """Exactly ``max_iter - start_iter`` batches of ``(images, targets)``; ``ims_per_batch`` is the total
    over all ranks (maskrcnn-benchmark's SOLVER.IMS_PER_BATCH), each rank gets ``ims_per_batch / world_size``.

    Augmentation randomness is seeded from ``(seed, start_iter, rank)``: deterministic for a given run, and a
    resumed run does not replay the flips of the iterations it already did.
    """
    groups = aspect_ratio_groups(dataset.aspect_ratios()) if aspect_ratio_grouping else None
    sampler = IterationBatchSampler(
        len(dataset),
        ims_per_batch,
        start_iter,
        max_iter,
        seed=seed,
        groups=groups,
        rank=rank,
        world_size=world_size,
    )
    generator = torch.Generator().manual_seed(seed * 1_000_003 + start_iter * 1_009 + rank)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        generator=generator,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        persistent_workers=False,
    )


def build_test_loader(
    dataset: COCODetection, ims_per_batch: int, num_workers: int, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """Every image once, in order; rank r takes images r, r + world_size, ... (results are gathered by id).

    ``ims_per_batch`` is the total over all ranks (TEST.IMS_PER_BATCH).
    """
    _check_sharding(ims_per_batch, rank, world_size, "TEST.IMS_PER_BATCH")
    indices = list(range(rank, len(dataset), world_size))
    per_rank = ims_per_batch // world_size
    batches = [indices[i : i + per_rank] for i in range(0, len(indices), per_rank)]
    return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, collate_fn=collate_fn)


def _check_sharding(ims_per_batch: int, rank: int, world_size: int, key: str) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    if ims_per_batch < 1 or ims_per_batch % world_size:
        raise ValueError(
            f"{key}={ims_per_batch} must be a positive multiple of the number of processes ({world_size})"
        )


def _seed_worker(worker_id: int) -> None:
    """numpy and OpenCV in workers follow torch's per-worker seed (torch seeds only itself)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    cv2.setRNGSeed(seed % 2**31)
