"""Pre/post-processing conventions of maskrcnn-benchmark and detectron2 checkpoints (issue 10).

Sizes are checked against what the sources' own runs recorded (``tests/data/foreign``: FINDINGS.md's table
and each reference file's ``input_hw`` / ``padded_hw``); the PIL path against PIL itself; detectron2's mask
pasting against ``torch.nn.functional.grid_sample`` on the grid detectron2 builds.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime import onnx_contract as contract
from runtime.postprocess import paste_masks, paste_masks_detectron2, postprocess, postprocess_batch
from runtime.preprocess import (
    RESIZE_DETECTRON2,
    RESIZE_MASKRCNN_BENCHMARK,
    RESIZE_TORCHVISION,
    PreprocessParams,
    normalize_and_resize,
    padded_size,
    preprocess,
    resized_size,
)
from runtime.structures import RawDetections
from tests.common import REPO

FOREIGN = REPO / "tests" / "data" / "foreign"
IMAGES = FOREIGN / "images"

MRB_MEAN = (102.9801, 115.9465, 122.7717)
D2_MEAN = (103.53, 116.28, 123.675)
D2_STD = (1.0, 1.0, 1.0)


def mrb_params(**kw: object) -> PreprocessParams:
    base = dict(min_size=800, max_size=1333, pixel_mean=MRB_MEAN, pixel_std=(1.0, 1.0, 1.0),
                input_format="BGR", pixel_range=255.0, resize=RESIZE_MASKRCNN_BENCHMARK)  # fmt: skip
    base.update(kw)
    return PreprocessParams(**base)  # type: ignore[arg-type]


def d2_params(**kw: object) -> PreprocessParams:
    base = dict(min_size=800, max_size=1333, pixel_mean=D2_MEAN, pixel_std=D2_STD,
                input_format="BGR", pixel_range=255.0, resize=RESIZE_DETECTRON2)  # fmt: skip
    base.update(kw)
    return PreprocessParams(**base)  # type: ignore[arg-type]


# --- sizes --------------------------------------------------------------------------------------------


def _hw(text: str) -> list[tuple[int, int]]:
    return [(int(h), int(w)) for h, w in re.findall(r"(\d+)x(\d+)", text)]


def _findings_size_rows() -> list[tuple[tuple[int, int], list[tuple[int, int]], list[tuple[int, int]],
                                        list[tuple[int, int]]]]:  # fmt: skip
    """FINDINGS.md, "Resized network input per image": (orig, mrb, d2, torchvision) sizes per row."""
    text = (FOREIGN / "FINDINGS.md").read_text()
    section = text.split("## Resized network input per image", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not _hw(cells[0]):
            continue  # the header, the separator and the prose
        rows.append((_hw(cells[0])[-1], _hw(cells[1]), _hw(cells[2]), _hw(cells[3])))
    return rows


FINDINGS_ROWS = _findings_size_rows()


def test_findings_table_was_read() -> None:
    assert len(FINDINGS_ROWS) == 9
    assert (611, 1999) in [r[0] for r in FINDINGS_ROWS]


@pytest.mark.parametrize("row", FINDINGS_ROWS, ids=lambda r: f"{r[0][0]}x{r[0][1]}")
def test_size_rules_match_findings_table(row: tuple) -> None:
    (h, w), mrb, d2, tv = row
    for sizes, params in ((mrb, mrb_params()), (d2, d2_params()), (tv, PreprocessParams())):
        assert resized_size(h, w, params) == sizes[0], params.resize
        if len(sizes) > 1:  # "resized -> padded" for the four real images
            assert padded_size([sizes[0]], params.size_divisibility) == sizes[1], params.resize


def _reference_files() -> list[Path]:
    return sorted(FOREIGN.glob("*/reference_detections.json.gz"))


@pytest.mark.parametrize("ref_file", _reference_files(), ids=lambda p: p.parent.name)
def test_preprocess_shapes_match_the_sources_runs(ref_file: Path) -> None:
    """Each source's own run recorded the network input size: ours, image by image, must equal it."""
    ref = json.loads(gzip.decompress(ref_file.read_bytes()))
    params = {"maskrcnn-benchmark": mrb_params(), "detectron2": d2_params()}[ref["source"]]
    assert len(ref["images"]) == 4
    for name, rec in ref["images"].items():
        image = cv2.imread(str(IMAGES / name), cv2.IMREAD_COLOR)
        assert list(image.shape[:2]) == rec["orig_hw"]
        batch = preprocess([image], params)
        assert batch.image_sizes.tolist() == [rec["input_hw"]], name
        assert list(batch.images.shape[2:]) == rec["padded_hw"], name


def test_maskrcnn_benchmark_keeps_an_image_already_at_size() -> None:
    params = mrb_params()
    assert resized_size(800, 1000, params) == (800, 1000)
    assert resized_size(1000, 800, params) == (1000, 800)
    # the short side already is the max_size-limited size round(1333 * 600 / 1334) = 600: kept, even
    # though the long side is then over max_size; detectron2 scales it down to 1333
    assert resized_size(600, 1334, params) == (600, 1334)
    assert resized_size(600, 1334, d2_params()) == (600, 1333)
    assert resized_size(800, 1000, d2_params()) == (800, 1000)


# --- pixels -------------------------------------------------------------------------------------------


def _pil_resize(hwc: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(hwc)).resize((w, h), Image.BILINEAR))


def test_maskrcnn_benchmark_input_of_the_coffee_image() -> None:
    image = cv2.imread(str(IMAGES / "coffee_480x640.jpg"), cv2.IMREAD_COLOR)
    params = mrb_params()
    batch = preprocess([image], params)
    assert batch.images.shape == (1, 3, 800, 1088)
    assert batch.image_sizes.tolist() == [[800, 1066]] and batch.original_sizes.tolist() == [[480, 640]]
    resized_bgr = _pil_resize(image, 800, 1066)
    expected = (
        resized_bgr.transpose(2, 0, 1).astype(np.float32) - np.asarray(MRB_MEAN, np.float32)[:, None, None]
    )
    np.testing.assert_array_equal(batch.images[0, :, :800, :1066], expected)  # exactly: BGR, 0..255, - mean
    assert batch.images[0, 0, 100, 200] == np.float32(resized_bgr[100, 200, 0]) - np.float32(MRB_MEAN[0])
    assert not batch.images[0, :, :, 1066:].any() and not batch.images[0, :, 800:, :].any()  # zero padding
    # PIL antialiases: not what the float bilinear path of torchvision gives
    tv = normalize_and_resize(image, replace(params, resize=RESIZE_TORCHVISION))
    assert tv.shape == (3, 800, 1066) and np.abs(tv - expected).max() > 0.5


def test_detectron2_input_shrinks_with_pil_and_divides_by_std() -> None:
    image = cv2.imread(str(IMAGES / "rocket_611x1999.jpg"), cv2.IMREAD_COLOR)
    params = d2_params(pixel_std=(57.375, 57.12, 58.395))
    chw = normalize_and_resize(image, params)
    assert chw.shape == (3, 407, 1333)
    f32 = np.float32
    expected = (
        _pil_resize(image, 407, 1333).transpose(2, 0, 1).astype(f32) - np.asarray(D2_MEAN, f32)[:, None, None]
    ) / np.asarray(params.pixel_std, f32)[:, None, None]
    np.testing.assert_array_equal(chw, expected)


def test_pil_path_rgb_unit_range() -> None:
    """RGB in [0, 1] on the PIL path: to_tensor's x / 255, then (x - mean) / std, in RGB order."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    params = PreprocessParams(min_size=150, max_size=400, resize=RESIZE_MASKRCNN_BENCHMARK)
    chw = normalize_and_resize(image, params)
    f32 = np.float32
    rgb = _pil_resize(image, 150, 200)[:, :, ::-1].transpose(2, 0, 1).astype(f32) / f32(255)
    mean = np.asarray(params.pixel_mean, f32)[:, None, None]
    std = np.asarray(params.pixel_std, f32)[:, None, None]
    np.testing.assert_array_equal(chw, (rgb - mean) / std)


def test_pil_path_without_resize_is_the_image() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)
    assert np.array_equal(_pil_resize(image, 80, 100), image)  # PIL's resize to the same size: identity
    params = d2_params(min_size=80, max_size=200)
    chw = normalize_and_resize(image, params)
    expected = image.transpose(2, 0, 1).astype(np.float32) - np.asarray(D2_MEAN, np.float32)[:, None, None]
    np.testing.assert_array_equal(chw, expected)


def test_torchvision_resize_with_bgr_255_matches_generalized_rcnn_transform() -> None:
    torch = pytest.importorskip("torch")
    transform_mod = pytest.importorskip("torchvision.models.detection.transform")
    params = PreprocessParams(min_size=256, max_size=480, pixel_mean=MRB_MEAN, pixel_std=(1.0, 2.0, 3.0),
                              input_format="BGR", pixel_range=255.0)  # fmt: skip
    image = np.random.default_rng(2).integers(0, 256, (240, 330, 3), dtype=np.uint8)
    t = transform_mod.GeneralizedRCNNTransform(256, 480, list(MRB_MEAN), [1.0, 2.0, 3.0]).eval()
    with torch.no_grad():
        ref, _ = t([torch.from_numpy(image.copy()).permute(2, 0, 1).float()])
    batch = preprocess([image], params)
    assert [tuple(s) for s in batch.image_sizes.tolist()] == [tuple(s) for s in ref.image_sizes]
    np.testing.assert_allclose(batch.images, ref.tensors.numpy(), atol=2e-3, rtol=0)  # values up to 255


# --- parameters ---------------------------------------------------------------------------------------


def test_params_defaults_are_omitted_and_round_trip() -> None:
    default = PreprocessParams(min_size=320, max_size=512)
    assert list(default.to_dict()) == ["min_size", "max_size", "pixel_mean", "pixel_std", "size_divisibility"]
    assert PreprocessParams.from_dict(default.to_dict()) == default
    for params in (mrb_params(), d2_params(), PreprocessParams(input_format="BGR"),
                   PreprocessParams(pixel_range=255), PreprocessParams(resize="detectron2")):  # fmt: skip
        d = params.to_dict()
        back = PreprocessParams.from_dict(json.loads(json.dumps(d)))
        assert back == params and back.to_dict() == d
    d = mrb_params().to_dict()
    assert d["input_format"] == "BGR" and d["pixel_range"] == 255.0 and d["resize"] == "maskrcnn-benchmark"
    assert "input_format" not in PreprocessParams(pixel_range=255.0).to_dict()
    assert PreprocessParams(pixel_range=255) == PreprocessParams(pixel_range=255.0)


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"input_format": "rgb"}, "input_format must be one of RGB, BGR"),
        ({"input_format": 3}, "input_format"),
        ({"pixel_range": 100.0}, "pixel_range must be 1.0"),
        ({"pixel_range": "255"}, "pixel_range"),
        ({"pixel_range": True}, "pixel_range"),
        ({"resize": "pil"}, "resize must be one of torchvision, maskrcnn-benchmark, detectron2"),
    ],
)
def test_params_reject_bad_values(bad: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PreprocessParams.from_dict({"min_size": 800, "max_size": 1333, **bad})


# --- detectron2 post-processing -----------------------------------------------------------------------


def _grid_sample_paste(masks: np.ndarray, boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    """detectron2's CPU paste, described in checkpoint-sources item 14, written with torch ops."""
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    out = np.zeros((len(masks), h, w), np.float32)
    for i, box in enumerate(torch.from_numpy(boxes)):
        x0, y0, x1, y1 = box
        xl = int(torch.clamp(torch.floor(x0) - 1, min=0))
        yl = int(torch.clamp(torch.floor(y0) - 1, min=0))
        xh = int(torch.clamp(torch.ceil(x1) + 1, max=w))
        yh = int(torch.clamp(torch.ceil(y1) + 1, max=h))
        if xh <= xl or yh <= yl:
            continue
        gy = (torch.arange(yl, yh, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
        gx = (torch.arange(xl, xh, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
        grid = torch.stack([gx[None, :].expand(len(gy), -1), gy[:, None].expand(-1, len(gx))], dim=2)
        sampled = f.grid_sample(torch.from_numpy(masks[i])[None, None], grid[None], align_corners=False)
        out[i, yl:yh, xl:xh] = sampled[0, 0].numpy()
    return out


@pytest.mark.parametrize("seed,mask_size", [(0, 28), (1, 14)])
def test_paste_masks_detectron2_matches_grid_sample(seed: int, mask_size: int) -> None:
    pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    h, w = 240, 330
    n = 160
    x0 = rng.uniform(-40, w - 1, n)
    y0 = rng.uniform(-40, h - 1, n)
    bw = np.exp(rng.uniform(np.log(0.1), np.log(1.5 * w), n))  # tiny (sub-pixel) to larger than the image
    bh = np.exp(rng.uniform(np.log(0.1), np.log(1.5 * h), n))
    boxes = np.stack([x0, y0, np.maximum(x0 + bw, 0.5), np.maximum(y0 + bh, 0.5)], 1).astype(np.float32)
    boxes[:4] = [
        [0, 0, w, h],
        [-30, -20, w + 25, h + 40],
        [10.3, 20.7, 10.9, 21.1],
        [w - 2.5, h - 1.2, w + 3, h],
    ]
    masks = rng.uniform(0, 1, (n, mask_size, mask_size)).astype(np.float32)
    ours = paste_masks_detectron2(masks, boxes, (h, w))
    ref = _grid_sample_paste(masks, boxes, h, w)
    assert ours.shape == ref.shape == (n, h, w) and ours.dtype == np.float32
    max_diff = float(np.abs(ours - ref).max())
    print(f"max prob difference {max_diff:.2e}")
    assert max_diff < 2e-6
    # the test really pasted something (sub-pixel boxes between pixel centres sample nothing)
    big = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    assert big.sum() > 0.5 * n and (ref > 0).any(axis=(1, 2))[big].all()
    assert np.array_equal(ours > 0, ref > 0)  # the same support (windows, zeros padding)
    # another algorithm than torchvision's
    assert np.abs(paste_masks(masks[:4], boxes[:4], (h, w)) - ours[:4]).max() > 1e-2


def test_paste_masks_detectron2_degenerate_and_errors() -> None:
    out = paste_masks_detectron2(np.ones((3, 28, 28), np.float32),
                                 np.array([[5, 5, 5, 9], [5, 5, 9, 4], [-50, -50, -20, -20]], np.float32),
                                 (10, 20))  # fmt: skip
    assert out.shape == (3, 10, 20) and not out.any()
    assert paste_masks_detectron2(np.zeros((0, 28, 28)), np.zeros((0, 4)), (10, 20)).shape == (0, 10, 20)
    with pytest.raises(ValueError, match="2 masks but 1 boxes"):
        paste_masks_detectron2(np.ones((2, 28, 28), np.float32), np.zeros((1, 4)), (10, 20))


def test_scale_boxes_equals_the_sources_python_float_ratio() -> None:
    """mrb and d2 multiply float32 boxes by orig / resized computed as a Python float."""
    torch = pytest.importorskip("torch")
    from runtime.box_ops import scale_boxes

    rng = np.random.default_rng(4)
    for _ in range(300):
        rh, rw, oh, ow = (int(v) for v in rng.integers(50, 2500, 4))
        boxes = rng.uniform(-20, 1400, (16, 4)).astype(np.float32)
        t = torch.from_numpy(boxes.copy())
        t[:, 0::2] *= ow / rw
        t[:, 1::2] *= oh / rh
        np.testing.assert_array_equal(scale_boxes(boxes, (rh, rw), (oh, ow)), t.numpy())


def test_postprocess_detectron2_clips_and_drops_empty_boxes() -> None:
    rng = np.random.default_rng(5)
    resized, original = (400, 600), (300, 450)
    boxes = np.array(
        [[10, 20, 200, 220],  # inside
         [-30, 50, 100, 450],  # crosses the left and bottom edges: clipped
         [610, 10, 700, 90],  # right of the image: zero width after the clip, dropped
         [50, 60, 50, 80],  # zero width: dropped
         [300, 100, 640, 399]],  # crosses the right edge
        np.float32,
    )  # fmt: skip
    raw = RawDetections(
        boxes=boxes,
        scores=np.array([0.9, 0.8, 0.7, 0.6, 0.5], np.float32),
        labels=np.array([1, 2, 3, 4, 5], np.int64),
        masks=rng.uniform(0, 1, (5, 28, 28)).astype(np.float32),
        keypoints=rng.uniform(0, 400, (5, 17, 3)).astype(np.float32),
    )
    det = postprocess(raw, resized, original, ["bg", "a", "b", "c", "d", "e"], output_convention="detectron2")
    assert det.labels.tolist() == [1, 2, 5] and det.scores.tolist() == pytest.approx([0.9, 0.8, 0.5])
    assert det.masks.shape == (3, *original) and det.keypoints.shape == (3, 17, 3)
    from runtime.box_ops import clip_boxes, scale_boxes

    expected = clip_boxes(scale_boxes(boxes[[0, 1, 4]], resized, original), original)
    np.testing.assert_array_equal(det.boxes, expected)
    assert det.boxes[:, 0::2].min() >= 0 and det.boxes[:, 0::2].max() == 450 and det.boxes[:, 3].max() == 300
    np.testing.assert_array_equal(det.masks, paste_masks_detectron2(raw.masks[[0, 1, 4]], expected, original))
    # torchvision keeps every box unclipped and pastes its own way
    tv = postprocess(raw, resized, original)
    assert len(tv) == 5 and tv.boxes[2, 0] > 450
    # score filter first, then the same convention; the batch entry point passes it through
    top = postprocess(raw, resized, original, score_threshold=0.65, output_convention="detectron2")
    assert top.labels.tolist() == [1, 2]
    from runtime.preprocess import PreprocessedBatch

    batch = PreprocessedBatch(
        np.zeros((1, 3, 416, 608), np.float32), np.array([resized]), np.array([original])
    )
    (via_batch,) = postprocess_batch([raw], batch, output_convention="detectron2")
    np.testing.assert_array_equal(via_batch.boxes, det.boxes)
    with pytest.raises(ValueError, match="output_convention must be one of"):
        postprocess(raw, resized, original, output_convention="mrb")


# --- ModelInfo ----------------------------------------------------------------------------------------


def _info(**kw: object) -> contract.ModelInfo:
    base = dict(class_names=("__background__", "a", "b"), preprocess=d2_params(), flavor="ort", opset=17,
                detections_per_image=100, mask_size=28)  # fmt: skip
    base.update(kw)
    return contract.ModelInfo(**base)  # type: ignore[arg-type]


def test_output_convention_metadata_round_trip() -> None:
    info = _info(output_convention="detectron2")
    props = contract.metadata_dict(info)
    assert props[contract.META_OUTPUT_CONVENTION] == "detectron2"
    assert json.loads(props[contract.META_PREPROCESS])["resize"] == "detectron2"
    back = contract.model_info_from_metadata(props)
    assert back == info and back.output_convention == "detectron2" and back.preprocess == d2_params()
    assert contract.META_OUTPUT_CONVENTION not in back.extra
    # engine sidecar: JSON file contents and back
    sidecar = json.loads(json.dumps(contract.sidecar_dict(props, {contract.SIDECAR_GPU: "x"})))
    from_sidecar = contract.model_info_from_sidecar(sidecar)
    assert from_sidecar.output_convention == "detectron2" and from_sidecar.preprocess == info.preprocess
    assert from_sidecar.extra == {contract.SIDECAR_GPU: "x"}
    # the default is not written, and absent reads as the default
    plain = _info(preprocess=PreprocessParams())
    plain_props = contract.metadata_dict(plain)
    assert contract.META_OUTPUT_CONVENTION not in plain_props
    assert contract.model_info_from_metadata(plain_props).output_convention == "torchvision"
    with pytest.raises(contract.ContractError, match="unknown output convention 'd3'"):
        contract.model_info_from_metadata({**props, contract.META_OUTPUT_CONVENTION: "d3"})
    with pytest.raises(ValueError, match="unknown output convention"):
        _info(output_convention="mrb")


def test_predictor_finishes_with_the_models_convention() -> None:
    from runtime.backends.base import Backend
    from runtime.predictor import Predictor

    class FixedBackend(Backend):
        name = "fixed"

        def __init__(self, info: contract.ModelInfo) -> None:
            super().__init__("fixed.onnx")
            self._info = info

        @property
        def info(self) -> contract.ModelInfo:
            return self._info

        def infer(self, batch):  # type: ignore[no-untyped-def]
            w = float(batch.image_sizes[0][1])
            boxes = np.array([[2, 2, 30, 30], [w + 5, 2, w + 20, 30]], np.float32)
            return [RawDetections(boxes, np.array([0.9, 0.8], np.float32), np.array([1, 2]))]

    image = np.zeros((60, 80, 3), np.uint8)
    for convention, count in (("torchvision", 2), ("detectron2", 1)):
        info = _info(preprocess=d2_params(min_size=120, max_size=200), mask_size=None,
                     output_convention=convention)  # fmt: skip
        det = Predictor(FixedBackend(info), confidence_threshold=0.5).predict(image)
        assert len(det) == count, convention


def test_pil_is_imported_only_by_the_pil_path() -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "import runtime.predictor\n"
        "from runtime.preprocess import PreprocessParams, preprocess\n"
        "img = np.zeros((20, 30, 3), np.uint8)\n"
        "preprocess([img], PreprocessParams(min_size=40, max_size=80))\n"
        "assert 'PIL' not in sys.modules, 'PIL imported by the torchvision path'\n"
        "preprocess([img], PreprocessParams(min_size=40, max_size=80, resize='detectron2'))\n"
        "assert 'PIL' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
