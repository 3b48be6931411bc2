"""COCO-format loading, the data set catalog, augmentation and iteration-based sampling."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from runtime.datasets import DatasetCatalog, DatasetError
from trainer import datasets as datasets_module
from trainer.datasets import (
    COCODetection,
    IterationBatchSampler,
    aspect_ratio_groups,
    build_test_loader,
    build_train_loader,
    collate_fn,
)
from trainer.transforms import RandomHorizontalFlip, hflip, keypoint_flip_map

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W = 40, 60


def _square_mask(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def _uncompressed(mask: np.ndarray) -> dict:
    flat = mask.ravel(order="F")
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    return {"size": [H, W], "counts": ([0] if flat[0] else []) + counts}


def _write_coco(tmp_path: Path, annotations: list[dict], images: list[dict] | None = None, **extra) -> Path:
    img_dir = tmp_path / "images"
    img_dir.mkdir(exist_ok=True)
    if images is None:
        images = [{"id": 1, "file_name": "a.png", "height": H, "width": W}]
    for info in images:
        path = img_dir / info["file_name"]
        if not path.exists():
            color = np.full((info["height"], info["width"], 3), (10, 20, 30), np.uint8)
            cv2.imwrite(str(path), color)
    categories = extra.pop("categories", [{"id": 1, "name": "thing"}, {"id": 3, "name": "other"}])
    for i, ann in enumerate(annotations, start=1):
        ann.setdefault("id", i)
        ann.setdefault("image_id", 1)
        ann.setdefault("category_id", 1)
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", 1.0)
    ann_file = tmp_path / "ann.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann_file


def test_polygon_and_both_rle_formats_decode_to_the_same_masks(tmp_path: Path) -> None:
    masks = [_square_mask(5, 5, 20, 15), _square_mask(30, 10, 50, 35), _square_mask(0, 20, 12, 40)]
    compressed = mask_utils.encode(np.asfortranarray(masks[1]))
    anns = [
        {"bbox": [5, 5, 15, 10], "segmentation": [[5, 5, 20, 5, 20, 15, 5, 15]]},
        {"bbox": [30, 10, 20, 25], "segmentation": {"size": [H, W], "counts": compressed["counts"].decode()}},
        {"bbox": [0, 20, 12, 20], "segmentation": _uncompressed(masks[2]), "category_id": 3},
    ]
    ds = COCODetection(_write_coco(tmp_path, anns), tmp_path / "images", train=True)
    image, target = ds[0]
    assert image.shape == (3, H, W) and image.dtype == torch.float32
    # RGB order, in [0, 1]: the file was written as BGR (10, 20, 30)
    torch.testing.assert_close(image[:, 0, 0], torch.tensor([30, 20, 10]) / 255.0)
    np.testing.assert_array_equal(target["masks"].numpy(), np.stack(masks))
    assert target["masks"].dtype == torch.uint8
    torch.testing.assert_close(
        target["boxes"],
        torch.tensor([[5, 5, 20, 15], [30, 10, 50, 35], [0, 20, 12, 40]], dtype=torch.float32),
    )
    assert target["labels"].tolist() == [1, 1, 3]  # COCO category ids, not contiguous indices
    assert int(target["image_id"]) == 1 and target["iscrowd"].tolist() == [0, 0, 0]
    assert ds.class_names == ["__background__", "thing", "N/A", "other"]
    assert "keypoints" not in target and ds.keypoint_names == []


def test_crowd_ignored_and_degenerate_dropped_with_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = {"bbox": [5, 5, 15, 10], "segmentation": [[5, 5, 20, 5, 20, 15, 5, 15]]}
    anns = [
        dict(good),
        {**good, "iscrowd": 1, "segmentation": _uncompressed(_square_mask(5, 5, 20, 15))},
        {**good, "bbox": [5, 5, 0, 10]},  # zero width
        {**good, "bbox": [70, 5, 10, 10]},  # entirely outside the image
        {**good, "segmentation": [[5, 5, 20, 5]]},  # two points
        {**good, "segmentation": [[5, 5, 10, 10, 15, 15]]},  # collinear: no area
        {**good, "segmentation": [[5, 5, 20, 5, 20, 15, 5, 15], [1, 1, 2, 2]]},  # one good part is enough
    ]
    ann_file = _write_coco(tmp_path, anns)
    with caplog.at_level(logging.INFO, logger="trainer.datasets"):
        train = COCODetection(ann_file, tmp_path / "images", train=True)
    assert len(train.load_target(0)["boxes"]) == 2
    assert train.dropped == {
        "crowd (ignored in training)": 1,
        "degenerate box (under 1 px inside the image)": 2,
        "degenerate polygon": 2,
    }
    lines = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert (
        len(lines) == 1
        and "degenerate polygon: 2" in lines[0]
        and "crowd (ignored in training): 1" in lines[0]
    )
    # the kept multi-part annotation lost only its broken part, and the COCO index (used for eval) is untouched
    assert train.coco.anns[7]["segmentation"][1] == [1, 1, 2, 2]

    test = COCODetection(ann_file, tmp_path / "images", train=False)
    target = test.load_target(0)
    assert target["iscrowd"].tolist() == [0, 1, 0]  # evaluation keeps crowd regions
    assert "crowd (ignored in training)" not in test.dropped


def test_images_without_annotations_kept_or_dropped_by_flag(tmp_path: Path) -> None:
    images = [
        {"id": 1, "file_name": "a.png", "height": H, "width": W},
        {"id": 2, "file_name": "b.png", "height": W, "width": H},
    ]
    anns = [{"bbox": [5, 5, 15, 10], "segmentation": [[5, 5, 20, 5, 20, 15, 5, 15]]}]
    ann_file = _write_coco(tmp_path, anns, images)
    kept = COCODetection(ann_file, tmp_path / "images", train=True)
    assert kept.ids == [1, 2]
    _, empty_target = kept[1]
    assert empty_target["boxes"].shape == (0, 4) and empty_target["masks"].shape == (0, W, H)
    dropped = COCODetection(ann_file, tmp_path / "images", train=True, keep_empty_images=False)
    assert dropped.ids == [1] and dropped.dropped == {"images without annotations": 1}
    assert kept.aspect_ratios() == [W / H, H / W]
    assert aspect_ratio_groups(kept.aspect_ratios()) == [0, 1]


def test_keypoints_loaded_with_names(tmp_path: Path) -> None:
    cats = [{"id": 1, "name": "person", "keypoints": ["nose", "left_eye", "right_eye"], "skeleton": [[1, 2]]}]
    anns = [
        {
            "bbox": [5, 5, 15, 10],
            "segmentation": [[5, 5, 20, 5, 20, 15, 5, 15]],
            "keypoints": [10, 8, 2, 7, 6, 1, 0, 0, 0],
        },
        {"bbox": [30, 10, 20, 25], "segmentation": [[30, 10, 50, 10, 50, 35]]},  # no keypoints labeled
    ]
    ds = COCODetection(_write_coco(tmp_path, anns, categories=cats), tmp_path / "images", train=True)
    kps = ds.load_target(0)["keypoints"]
    assert ds.keypoint_names == ["nose", "left_eye", "right_eye"]
    assert kps.shape == (2, 3, 3) and kps.dtype == torch.float32
    assert kps[0].tolist() == [[10, 8, 2], [7, 6, 1], [0, 0, 0]] and not kps[1].any()


@pytest.mark.parametrize("kind", ["gray", "gray16", "rgba", "palette", "rgb16"])
def test_image_modes_are_converted_to_rgb(tmp_path: Path, kind: str) -> None:
    from PIL import Image

    path = tmp_path / "img.png"
    if kind == "gray":
        cv2.imwrite(str(path), np.full((H, W), 100, np.uint8))
        expected = (100, 100, 100)
    elif kind == "gray16":
        cv2.imwrite(str(path), np.full((H, W), 65535 // 2, np.uint16))
        expected = (127, 127, 127)
    elif kind == "rgba":
        cv2.imwrite(
            str(path), np.dstack([np.full((H, W, 3), (10, 20, 30), np.uint8), np.zeros((H, W), np.uint8)])
        )
        expected = (30, 20, 10)
    elif kind == "palette":
        Image.fromarray(np.full((H, W, 3), (200, 50, 25), np.uint8)).convert("P").save(path)
        expected = tuple(Image.open(path).convert("RGB").getpixel((0, 0)))
    else:
        cv2.imwrite(str(path), np.full((H, W, 3), (0, 257 * 20, 65535), np.uint16))  # BGR
        expected = (255, 20, 0)
    assert Image.open(path).mode != "RGB" or kind == "rgb16"

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "img.png").write_bytes(path.read_bytes())
    ann_file = _write_coco(tmp_path, [], [{"id": 1, "file_name": "img.png", "height": H, "width": W}])
    ds = COCODetection(ann_file, tmp_path / "images", train=False)
    image, _ = ds[0]
    assert image.shape == (3, H, W)
    torch.testing.assert_close(image[:, 5, 5], torch.tensor(expected, dtype=torch.float32) / 255.0)
    bgr = ds.load_image_bgr(0)
    assert bgr.dtype == np.uint8 and bgr.shape == (H, W, 3) and tuple(bgr[5, 5, ::-1].tolist()) == expected


def test_missing_and_broken_files_are_clear_errors(tmp_path: Path) -> None:
    ann_file = _write_coco(tmp_path, [], [{"id": 1, "file_name": "a.png", "height": H, "width": W}])
    with pytest.raises(DatasetError, match="annotation file not found: .*nope.json"):
        COCODetection(tmp_path / "nope.json", tmp_path / "images", train=True)
    with pytest.raises(DatasetError, match="image folder not found: .*nodir"):
        COCODetection(ann_file, tmp_path / "nodir", train=True)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not a valid COCO annotation file: .*bad.json"):
        COCODetection(tmp_path / "bad.json", tmp_path / "images", train=True)

    ds = COCODetection(ann_file, tmp_path / "images", train=True)
    (tmp_path / "images" / "a.png").unlink()
    with pytest.raises(DatasetError, match="a.png: no such file"):
        ds[0]
    (tmp_path / "images" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetError, match="a.png: corrupt"):
        ds[0]
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((H + 1, W, 3), np.uint8))
    with pytest.raises(DatasetError, match="a.png is 60x41 .* says 60x40"):
        ds.load_image_bgr(0)


def test_catalog_names_explicit_paths_and_on_demand_shapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    spec = DatasetCatalog.get("coco_2017_val", tmp_path)
    assert spec.ann_file == tmp_path / "coco/annotations/instances_val2017.json"
    assert spec.img_dir == tmp_path / "coco/val2017"
    explicit = DatasetCatalog.get("some/dir/ann.json:other/images", tmp_path)
    assert (explicit.ann_file, explicit.img_dir) == (Path("some/dir/ann.json"), Path("other/images"))
    with pytest.raises(DatasetError, match="unknown data set 'coco_2017_vall'.*Did you mean coco_2017_val"):
        DatasetCatalog.get("coco_2017_vall", tmp_path)
    monkeypatch.setattr(DatasetCatalog, "_entries", dict(DatasetCatalog._entries))  # registration is global
    DatasetCatalog.register("mine_test", "x/a.json", "x/img")
    assert DatasetCatalog.get("mine_test", tmp_path).img_dir == tmp_path / "x/img"

    from trainer import shapes

    calls = []
    generate = shapes.generate_shapes_dataset

    def small(output_dir, **kwargs):
        calls.append(Path(output_dir))
        return generate(output_dir, num_train=2, num_val=1, progress=False)

    monkeypatch.setattr(shapes, "generate_shapes_dataset", small)
    with caplog.at_level(logging.INFO, logger="runtime.datasets"):
        spec = DatasetCatalog.get("shapes_val", tmp_path)
    assert calls == [tmp_path / "shapes"] and spec.ann_file.is_file()
    assert any("generating" in r.getMessage() for r in caplog.records)
    DatasetCatalog.get("shapes_train", tmp_path)
    assert len(calls) == 1, "an existing data set is not generated again"
    ds = datasets_module.build_dataset("shapes_val", tmp_path, train=True)
    assert len(ds) == 1 and ds.class_names[1] == "circle" and ds.transforms is not None


def test_keypoint_flip_map_swaps_left_and_right() -> None:
    assert keypoint_flip_map(["nose", "left_eye", "right_eye", "left_ear", "right_ear"]) == [0, 2, 1, 4, 3]
    assert keypoint_flip_map(["top", "right", "bottom", "left"]) == [0, 3, 2, 1]
    assert keypoint_flip_map(["Left", "center"]) == [0, 1]  # no partner: stays


def test_hflip_moves_boxes_masks_and_keypoints_consistently() -> None:
    mask = torch.from_numpy(_square_mask(5, 10, 20, 30))[None]
    image = torch.rand(3, H, W)
    target = {
        "boxes": torch.tensor([[5.0, 10.0, 20.0, 30.0]]),
        "masks": mask,
        "keypoints": torch.tensor(
            [[[12.0, 10.0, 2.0], [20.0, 20.0, 2.0], [12.0, 30.0, 1.0], [5.0, 20.0, 0.0]]]
        ),
    }
    flipped_image, flipped = hflip(
        image, target, torch.tensor(keypoint_flip_map(["top", "right", "bottom", "left"]))
    )
    assert torch.equal(flipped_image, image.flip(-1))
    ys, xs = torch.nonzero(flipped["masks"][0], as_tuple=True)
    # the box still encloses exactly the mask (corner coordinates: x2 is one past the last column)
    assert flipped["boxes"][0].tolist() == [
        xs.min().item(),
        ys.min().item(),
        xs.max().item() + 1,
        ys.max().item() + 1,
    ]
    kps = flipped["keypoints"][0]
    # the old "left" (unlabeled) is now "right" and stays all-zero; the old "right" is now "left", mirrored
    assert kps[1].tolist() == [0, 0, 0]
    assert kps[3].tolist() == [W - 20.0, 20.0, 2.0]
    assert kps[0].tolist() == [W - 12.0, 10.0, 2.0] and kps[2].tolist() == [W - 12.0, 30.0, 1.0]
    _, back = hflip(flipped_image, flipped, torch.tensor([0, 3, 2, 1]))
    assert torch.equal(back["boxes"], target["boxes"]) and torch.equal(back["masks"], mask)
    assert torch.equal(back["keypoints"][0, :3], target["keypoints"][0, :3])

    torch.manual_seed(0)
    always, never = RandomHorizontalFlip(1.0), RandomHorizontalFlip(0.0)
    assert torch.equal(always(image, target)[0], image.flip(-1)) and never(image, target)[0] is image


def _all_batches(**kwargs) -> list[list[int]]:
    return list(IterationBatchSampler(**kwargs))


def test_sampler_resumes_exactly_and_groups_by_aspect() -> None:
    groups = [0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1]
    common = {"num_images": len(groups), "ims_per_batch": 4, "seed": 5, "groups": groups}
    full = _all_batches(start_iter=0, max_iter=20, **common)
    assert len(full) == 20 and all(len(b) == 4 for b in full)
    assert all(len({groups[i] for i in batch}) == 1 for batch in full), "a batch mixes aspect groups"
    assert _all_batches(start_iter=7, max_iter=20, **common) == full[7:]
    assert len(IterationBatchSampler(start_iter=7, max_iter=20, **common)) == 13
    assert _all_batches(start_iter=0, max_iter=20, **common) == full  # deterministic
    assert _all_batches(start_iter=0, max_iter=20, **{**common, "seed": 6}) != full
    # over many iterations every image is used about equally (nothing dropped at epoch ends)
    uses = np.bincount(
        np.concatenate(_all_batches(start_iter=0, max_iter=110, **common)), minlength=len(groups)
    )
    assert uses.min() >= 35 and uses.max() <= 45


def test_sampler_shards_each_global_batch_across_ranks() -> None:
    common = {"num_images": 10, "ims_per_batch": 4, "start_iter": 3, "max_iter": 9, "seed": 1}
    single = _all_batches(**common)
    ranks = [_all_batches(rank=r, world_size=2, **common) for r in range(2)]
    for i, batch in enumerate(single):
        assert len(ranks[0][i]) == len(ranks[1][i]) == 2
        assert ranks[0][i] + ranks[1][i] == batch
    with pytest.raises(ValueError, match="IMS_PER_BATCH=3 must be a positive multiple .* \\(2\\)"):
        IterationBatchSampler(10, 3, 0, 5, world_size=2)


def test_loaders_yield_exact_counts(tmp_path: Path) -> None:
    images = [{"id": i, "file_name": f"{i}.png", "height": H, "width": W + i} for i in range(1, 6)]
    anns = [{"bbox": [5, 5, 15, 10], "segmentation": [[5, 5, 20, 5, 20, 15, 5, 15]], "image_id": 2}]
    ds = COCODetection(_write_coco(tmp_path, anns, images), tmp_path / "images", train=True)
    loader = build_train_loader(ds, 2, 0, True, seed=0, start_iter=3, max_iter=7)
    batches = list(loader)
    assert len(batches) == 4
    imgs, targets = batches[0]
    assert isinstance(imgs, list) and len(imgs) == len(targets) == 2 and imgs[0].shape[0] == 3
    seen = []
    for rank in range(2):
        for _, targets in build_test_loader(ds, 2, 0, rank=rank, world_size=2):
            assert len(targets) == 1
            seen += [int(t["image_id"]) for t in targets]
    assert sorted(seen) == [1, 2, 3, 4, 5]
    assert collate_fn([(torch.zeros(1), {"a": 1}), (torch.ones(1), {"b": 2})])[1] == [{"a": 1}, {"b": 2}]
