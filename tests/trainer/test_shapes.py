"""The shapes generator: deterministic, masks that are exactly the visible painted pixels, every format used."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from trainer.shapes import (
    SHAPES_CLASSES,
    SHAPES_KEYPOINTS,
    ShapesConfig,
    cli_make_shapes,
    generate_shapes_dataset,
    image_rng,
    mask_to_polygons,
    render_image,
)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SEED = 3
NUM_TRAIN = 48


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    generate_shapes_dataset(out, num_train=NUM_TRAIN, num_val=4, seed=SEED, progress=False)
    return out


@pytest.fixture(scope="module")
def coco(shapes_dir: Path) -> COCO:
    return COCO(str(shapes_dir / "annotations" / "instances_train.json"))


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_generation_is_deterministic_from_the_seed(tmp_path: Path) -> None:
    a = generate_shapes_dataset(tmp_path / "a", num_train=5, num_val=2, seed=7, progress=False)
    b = generate_shapes_dataset(tmp_path / "b", num_train=5, num_val=2, seed=7, progress=False)
    c = generate_shapes_dataset(tmp_path / "c", num_train=5, num_val=2, seed=8, progress=False)
    for split in ("train", "val"):
        assert a[split][0].read_bytes() == b[split][0].read_bytes()
        files = sorted(p.name for p in a[split][1].iterdir())
        assert files == sorted(p.name for p in b[split][1].iterdir())
        for name in files:
            assert (a[split][1] / name).read_bytes() == (b[split][1] / name).read_bytes()
    assert a["train"][0].read_bytes() != c["train"][0].read_bytes()
    # the splits are different images, not copies
    assert (
        json.loads(a["train"][0].read_text())["annotations"]
        != json.loads(a["val"][0].read_text())["annotations"]
    )


def test_annotation_masks_are_the_painted_visible_pixels(shapes_dir: Path, coco: COCO) -> None:
    """Checked against the pixels on disk alone: inside each mask one solid color, which stops at its edge."""
    checked_png = checked_jpg = 0
    for image_id, info in coco.imgs.items():
        image = _read_rgb(shapes_dir / "train" / info["file_name"]).astype(np.int32)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
            mask = coco.annToMask(ann).astype(bool)
            assert mask.sum() == ann["area"] > 0
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            pixels = image[mask]
            color = np.median(pixels, axis=0)
            ring = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~mask
            outside = np.abs(image[ring] - color).max(axis=1)
            if info["file_name"].endswith(".png"):
                assert (pixels == color).all(), "a mask pixel is not the shape's color"
                # the shape does not extend past its mask (a ring pixel of the same color would be unmasked shape)
                assert (outside > 0).all()
                checked_png += 1
            else:
                # JPEG: a solid color up to compression noise (chroma subsampling blurs 2 px at edges)
                interior = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
                if interior.sum() >= 20:
                    assert np.percentile(np.abs(image[interior] - color).max(axis=1), 95) <= 12
                assert np.median(outside) > 20
                checked_jpg += 1
    assert checked_png >= 10 and checked_jpg >= 10


def test_masks_decode_to_the_rendered_visible_masks(coco: COCO) -> None:
    """Polygons and RLE both give back the generator's visible mask exactly (polygons follow pixel edges)."""
    for image_id, info in coco.imgs.items():
        rendered = render_image(image_rng(SEED, "train", image_id - 1))
        assert rendered.image.shape[:2] == (info["height"], info["width"])
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert len(anns) == len(rendered.instances)
        for ann, inst in zip(anns, rendered.instances):
            assert ann["category_id"] == inst.category_id
            np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), inst.visible_mask)


def test_occlusion_leaves_only_the_visible_part(coco: COCO) -> None:
    config = ShapesConfig()
    occluded_instances = occluded_keypoints = 0
    for image_id in coco.imgs:
        instances = render_image(image_rng(SEED, "train", image_id - 1)).instances
        for i, inst in enumerate(instances):
            on_top = np.zeros_like(inst.full_mask)
            for later in instances[i + 1 :]:
                on_top |= later.full_mask
            np.testing.assert_array_equal(inst.visible_mask, inst.full_mask & ~on_top)
            assert inst.visible_mask.sum() >= config.min_visible_fraction * inst.full_mask.sum()
            occluded_instances += int((inst.full_mask & on_top).any())
            for x, y, v in inst.keypoints:
                covered = on_top[min(int(y), on_top.shape[0] - 1), min(int(x), on_top.shape[1] - 1)]
                assert v == (1 if covered else 2)
                occluded_keypoints += int(v == 1)
    assert occluded_instances >= 3, "the sample should contain occlusions"
    assert occluded_keypoints >= 1


def test_every_storage_format_and_image_kind_is_present(shapes_dir: Path, coco: COCO) -> None:
    kinds = set()
    for ann in coco.anns.values():
        segm = ann["segmentation"]
        kinds.add("polygon" if isinstance(segm, list) else type(segm["counts"]).__name__)
        assert ann["iscrowd"] == 0
    assert kinds == {"polygon", "str", "list"}
    infos = list(coco.imgs.values())
    assert any(not coco.getAnnIds(imgIds=i["id"]) for i in infos), "some images must have no object"
    assert {Path(i["file_name"]).suffix for i in infos} == {".png", ".jpg"}
    assert any(i["width"] > i["height"] for i in infos) and any(i["width"] < i["height"] for i in infos)
    config = ShapesConfig()
    for info in infos:
        assert config.min_short_side <= min(info["height"], info["width"]) <= config.max_short_side
        assert (shapes_dir / "train" / info["file_name"]).is_file()
    counts = [len(coco.getAnnIds(imgIds=i["id"])) for i in infos]
    assert max(counts) <= config.max_objects


def test_categories_and_keypoints(coco: COCO) -> None:
    cats = coco.loadCats(coco.getCatIds())
    assert [c["id"] for c in cats] == list(range(1, len(SHAPES_CLASSES) + 1))
    assert tuple(c["name"] for c in cats) == SHAPES_CLASSES
    assert all(c["keypoints"] == list(SHAPES_KEYPOINTS) and c["skeleton"] for c in cats)
    for ann in coco.anns.values():
        kps = np.asarray(ann["keypoints"]).reshape(-1, 3)
        assert kps.shape == (len(SHAPES_KEYPOINTS), 3) and ann["num_keypoints"] == len(kps)
        x, y, w, h = ann["bbox"]
        visible = kps[kps[:, 2] == 2]
        # visible extreme points lie on the visible shape's box edge region
        assert ((visible[:, 0] >= x - 1.5) & (visible[:, 0] <= x + w + 1.5)).all()
        assert ((visible[:, 1] >= y - 1.5) & (visible[:, 1] <= y + h + 1.5)).all()
        if len(kps) == len(visible):  # an unoccluded shape: top is highest, left is leftmost, ...
            top, right, bottom, left = kps[:, :2]
            assert top[1] == pytest.approx(y, abs=1.5) and bottom[1] == pytest.approx(y + h, abs=1.5)
            assert left[0] == pytest.approx(x, abs=1.5) and right[0] == pytest.approx(x + w, abs=1.5)


def test_mask_to_polygons_is_exact_for_several_components() -> None:
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    tested = 0
    while tested < 8:
        mask = np.zeros((90, 120), np.uint8)
        for _ in range(3):
            cx, cy, r = rng.integers(15, 105), rng.integers(15, 75), rng.integers(4, 14)
            cv2.circle(mask, (int(cx), int(cy)), int(r), 1, -1)
        mask[40:50, 60:70] = 1
        mask[50:60, 70:80] = 1  # touches the square above only at a corner
        _, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        if (hierarchy[0][:, 3] >= 0).any():
            continue  # holes are stored as RLE, polygons cannot carry them
        polygons = mask_to_polygons(mask.astype(bool))
        decoded = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, 90, 120)))
        np.testing.assert_array_equal(decoded, mask)
        tested += 1


def test_cli_writes_both_splits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = ["--output", str(out), "--num-train", "3", "--num-val", "2", "--seed", "1", "--no-progress"]
    assert cli_make_shapes(argv) == 0
    for split, n in (("train", 3), ("val", 2)):
        data = json.loads((out / "annotations" / f"instances_{split}.json").read_text())
        assert len(data["images"]) == n == len(list((out / split).iterdir()))
    assert "instances_train.json" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli_make_shapes(["--output", str(out), "--num-train", "-1"])
    assert exc.value.code == 2
