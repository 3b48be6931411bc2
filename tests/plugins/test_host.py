"""The CPU build of the plugins' shared math (libmrd_host) against torchvision's operators.

Same inputs, same numbers: MultiScaleRoIAlign / roi_align to float rounding, and for NMS exactly the same
survivors in exactly the same order as torchvision's post-processing.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from torchvision.ops import roi_align  # noqa: E402

from runtime.plugins.library import HOST_LIBRARY, PluginCallError, PluginLibraryNotFound, load_host_library  # noqa: E402
from runtime.plugins.reference import NmsOutputs, batched_nms_reference, multilevel_roi_align_reference  # noqa: E402
from runtime.plugins.spec import BatchedNmsAttrs, MultiLevelRoiAlignAttrs  # noqa: E402
from scripts.build_plugins import BuildToolMissing, ensure_built  # noqa: E402
from tests.plugins.torchvision_reference import (  # noqa: E402
    boundary_rois,
    plus_one_levels,
    roi_align_at_levels,
    torchvision_multiscale,
    torchvision_postprocess,
)

ROI_ATOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def host_library() -> None:
    try:
        load_host_library()
    except PluginLibraryNotFound:
        try:
            ensure_built(HOST_LIBRARY)
        except BuildToolMissing as e:
            pytest.skip(f"cannot build the plugin libraries here: {e}")
        load_host_library()


# ---------------------------------------------------------------------------------------------------------------
# ROIAlign


def random_rois(rng: np.random.Generator, batch: int, num: int, image: tuple[int, int]) -> np.ndarray:
    """Boxes of all FPN levels' sizes (4 to 700 px), some partly outside the image."""
    h, w = image
    sizes = np.exp(rng.uniform(np.log(4), np.log(700), size=(batch, num, 2)))
    centers = rng.uniform(-0.1, 1.1, size=(batch, num, 2)) * np.array([w, h])
    rois = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=-1)
    rois[:, 0] = [-100, -80, 500, 520]  # coarsest level for sure
    rois[:, 1] = [3, 4, 20, 22]  # finest level for sure
    return rois.astype(np.float32)


def features_for(rng: np.random.Generator, batch: int, channels: int, image: tuple[int, int], scales) -> list:
    return [
        rng.standard_normal((batch, channels, int(image[0] * s), int(image[1] * s))).astype(np.float32)
        for s in scales
    ]


def levels_of(rois: np.ndarray, attrs: MultiLevelRoiAlignAttrs) -> np.ndarray:
    from torchvision.ops.poolers import LevelMapper

    k = -np.log2(attrs.spatial_scales)
    mapper = LevelMapper(int(k[0]), int(k[-1]), attrs.canonical_box_size, attrs.canonical_level)
    return mapper([torch.from_numpy(rois.reshape(-1, 4))]).numpy()


@pytest.mark.parametrize("sampling_ratio", [2, -1, 0])
@pytest.mark.parametrize("output_size", [7, 14])
def test_multiscale_matches_torchvision(sampling_ratio: int, output_size: int) -> None:
    rng = np.random.default_rng(sampling_ratio + 10 * output_size)
    image = (160, 192)
    attrs = MultiLevelRoiAlignAttrs(output_size, output_size, sampling_ratio)
    rois = random_rois(rng, batch=2, num=40, image=image)
    feats = features_for(rng, 2, 3, image, attrs.spatial_scales)
    expected = torchvision_multiscale(rois, feats, image, attrs)
    got = multilevel_roi_align_reference(rois, feats, attrs)
    assert set(np.unique(levels_of(rois, attrs))) == {0, 1, 2, 3}, "test rois should reach every level"
    assert got.shape == (80, 3, output_size, output_size)
    np.testing.assert_allclose(got, expected, atol=ROI_ATOL, rtol=1e-5)


def test_level_without_rois_and_degenerate_boxes() -> None:
    rng = np.random.default_rng(1)
    image = (128, 160)
    attrs = MultiLevelRoiAlignAttrs()
    rois = np.array(
        [
            [
                [10, 10, 20, 20],  # level 0
                [0, 0, 300, 250],  # level 2; level 1 gets nothing
                [30, 30, 30, 30],  # zero area -> finest level
                [40, 40, 40, 90],  # zero width
                [-50, -60, -10, -5],  # entirely outside the image
                [140, 100, 400, 300],  # partly outside
            ]
        ],
        np.float32,
    )
    feats = features_for(rng, 1, 4, image, attrs.spatial_scales)
    levels = levels_of(rois, attrs)
    assert 1 not in levels and 0 in levels and 2 in levels
    expected = torchvision_multiscale(rois, feats, image, attrs)
    got = multilevel_roi_align_reference(rois, feats, attrs)
    np.testing.assert_allclose(got, expected, atol=ROI_ATOL, rtol=1e-5)
    assert np.all(got[4] == 0), "a roi outside the image pools zeros"


@pytest.mark.parametrize("aligned", [0, 1])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_single_level_matches_roi_align(aligned: int, sampling_ratio: int) -> None:
    """One level: every roi lands on it, so the op is torchvision's roi_align (also with aligned=1)."""
    rng = np.random.default_rng(7)
    image = (64, 80)
    attrs = MultiLevelRoiAlignAttrs(5, 6, sampling_ratio, aligned, spatial_scales=(0.125,))
    rois = random_rois(rng, batch=3, num=12, image=image)
    rois[0, 0] = [8, 8, 8, 8]  # zero area: with aligned=1 the bin has no samples
    rois[1, 0] = [20, 30, 20.5, 30.25]
    feats = features_for(rng, 3, 2, image, attrs.spatial_scales)
    expected = roi_align(
        torch.from_numpy(feats[0]),
        [torch.from_numpy(r) for r in rois],
        (5, 6),
        spatial_scale=0.125,
        sampling_ratio=sampling_ratio,
        aligned=bool(aligned),
    ).numpy()
    got = multilevel_roi_align_reference(rois, feats, attrs)
    np.testing.assert_allclose(got, expected, atol=ROI_ATOL, rtol=1e-5)


def test_nan_level_roi_pools_zeros_like_torchvision() -> None:
    """x2 < x1 with y2 > y1 has a negative area: torchvision's level is NaN and no level pools the roi."""
    rng = np.random.default_rng(3)
    image = (64, 64)
    attrs = MultiLevelRoiAlignAttrs()
    rois = np.array([[[30, 10, 20, 40], [5, 5, 25, 25]]], np.float32)
    feats = features_for(rng, 1, 2, image, attrs.spatial_scales)
    got = multilevel_roi_align_reference(rois, feats, attrs)
    expected = torchvision_multiscale(rois, feats, image, attrs)
    np.testing.assert_allclose(got, expected, atol=ROI_ATOL)
    assert np.all(got[0] == 0) and np.any(got[1] != 0)


def pooled_levels(rois: np.ndarray, attrs: MultiLevelRoiAlignAttrs, image: tuple[int, int]) -> np.ndarray:
    """The level the library pools each roi from, read off its output: feature l is the constant l + 1."""
    feats = [
        np.full((rois.shape[0], 1, int(image[0] * s), int(image[1] * s)), i + 1.0, np.float32)
        for i, s in enumerate(attrs.spatial_scales)
    ]
    out = multilevel_roi_align_reference(rois, feats, attrs).reshape(rois.shape[0] * rois.shape[1], -1)
    level = np.rint(out[:, 0]).astype(np.int64) - 1
    # every bin of a roi inside the image is its level's constant
    np.testing.assert_allclose(out, np.broadcast_to((level + 1.0)[:, None], out.shape), rtol=1e-5)
    return level


@pytest.mark.parametrize("sampling_ratio", [2, -1])
def test_legacy_plus_one_levels_near_boundaries(sampling_ratio: int) -> None:
    """legacy_plus_one=1: the level comes from (w + 1) * (h + 1) (maskrcnn-benchmark), the pooling stays
    torchvision's roi_align on that level; 0 stays torchvision's MultiScaleRoIAlign."""
    rng = np.random.default_rng(11)
    image = (640, 640)
    default = MultiLevelRoiAlignAttrs(7, 7, sampling_ratio)
    legacy = MultiLevelRoiAlignAttrs(7, 7, sampling_ratio, legacy_plus_one=1)
    rois = boundary_rois(rng, batch=2, image=image)

    # the C++ level function, through the host library
    expected_levels = plus_one_levels(rois, legacy)
    got_legacy, got_default = pooled_levels(rois, legacy, image), pooled_levels(rois, default, image)
    np.testing.assert_array_equal(got_legacy, expected_levels)
    np.testing.assert_array_equal(got_default, levels_of(rois, default))
    moved = got_legacy != got_default
    assert 30 < moved.sum() < len(moved), "about half of the rois sit just below a boundary"
    assert np.all(got_legacy[moved] == got_default[moved] + 1), "+1 areas only ever move a roi up a level"
    # the spec's formula in float64 names the same levels (none of these rois is within float32 rounding of one)
    f = rois.reshape(-1, 4).astype(np.float64)
    sqrt_area = np.sqrt((f[:, 2] - f[:, 0] + 1) * (f[:, 3] - f[:, 1] + 1))
    formula = np.clip(np.floor(4 + np.log2(sqrt_area / 224) + 1e-6), 2, 5) - 2
    np.testing.assert_array_equal(expected_levels, formula)

    # the pooled output: roi_align on the level chosen that way
    feats = features_for(rng, 2, 3, image, legacy.spatial_scales)
    got = multilevel_roi_align_reference(rois, feats, legacy)
    expected = roi_align_at_levels(rois, feats, expected_levels, legacy)
    np.testing.assert_allclose(got, expected, atol=ROI_ATOL, rtol=1e-5)
    got_default = multilevel_roi_align_reference(rois, feats, default)
    expected_default = torchvision_multiscale(rois, feats, image, default)
    np.testing.assert_allclose(got_default, expected_default, atol=ROI_ATOL, rtol=1e-5)
    # the helper is MultiScaleRoIAlign when given torchvision's levels
    helper_default = roi_align_at_levels(rois, feats, levels_of(rois, default), default)
    np.testing.assert_allclose(helper_default, expected_default, atol=ROI_ATOL, rtol=1e-5)
    assert np.abs(got[moved] - got_default[moved]).max() > 0.1, "a moved roi pools other numbers"
    np.testing.assert_array_equal(got[~moved], got_default[~moved])


def test_legacy_plus_one_must_be_0_or_1() -> None:
    rng = np.random.default_rng(0)
    attrs = MultiLevelRoiAlignAttrs(legacy_plus_one=2)
    feats = features_for(rng, 1, 2, (64, 64), attrs.spatial_scales)
    with pytest.raises(PluginCallError, match="legacy_plus_one must be 0 or 1, got 2"):
        multilevel_roi_align_reference(np.array([[[1, 1, 20, 20]]], np.float32), feats, attrs)


# float16 storage, float32 math: against torchvision's float32 op on the same float16-rounded inputs, within what
# one float16 rounding of the output costs (outputs of magnitude <= 4: 2^-11 * 4 < 2e-3)
FP16_ATOL = 2e-3
FP16_RTOL = 1e-3


def test_roi_align_float16_matches_torchvision_float32() -> None:
    rng = np.random.default_rng(0)
    image = (96, 128)
    attrs = MultiLevelRoiAlignAttrs(output_height=7, output_width=7, sampling_ratio=2)
    rois = random_rois(rng, batch=2, num=24, image=image)
    feats16 = [f.astype(np.float16) for f in features_for(rng, 2, 3, image, attrs.spatial_scales)]
    out = multilevel_roi_align_reference(rois, feats16, attrs)
    assert out.dtype == np.float16
    assert set(np.unique(levels_of(rois, attrs))) == {0, 1, 2, 3}, "test rois should reach every level"
    expected = torchvision_multiscale(rois, [f.astype(np.float32) for f in feats16], image, attrs)
    np.testing.assert_allclose(out.astype(np.float32), expected, atol=FP16_ATOL, rtol=FP16_RTOL)
    assert np.abs(expected).max() > 0.5, "outputs of a size where float16 rounding shows"


def test_roi_align_checks_inputs() -> None:
    rng = np.random.default_rng(0)
    attrs = MultiLevelRoiAlignAttrs(spatial_scales=(0.25, 0.125))
    feats = features_for(rng, 1, 2, (32, 32), attrs.spatial_scales)
    rois = np.array([[[1, 1, 20, 20]]], np.float32)
    with pytest.raises(ValueError, match="spatial_scales has 2 levels"):
        multilevel_roi_align_reference(rois, feats[:1], attrs)
    with pytest.raises(PluginCallError, match="powers of two"):
        multilevel_roi_align_reference(rois, feats, MultiLevelRoiAlignAttrs(spatial_scales=(0.3, 0.15)))


# ---------------------------------------------------------------------------------------------------------------
# NMS: the candidate pipeline of torchvision's RoIHeads.postprocess_detections


def random_detections(
    rng: np.random.Generator, batch: int, n: int, c: int, per_class: bool, extent: float = 200
):
    shape = (batch, n, c, 2) if per_class else (batch, n, 2)
    xy = rng.uniform(0, extent, size=shape)
    wh = rng.exponential(extent / 6, size=shape)
    wh[rng.random(wh.shape) < 0.03] = 0.0  # some zero-size boxes for the min-size filter
    boxes = np.concatenate([xy, xy + wh], axis=-1).astype(np.float32)
    scores = rng.random((batch, n, c)).astype(np.float32) ** 3
    return boxes, scores


def assert_same(got: NmsOutputs, expected) -> None:
    np.testing.assert_array_equal(got.num_detections, expected[0])
    np.testing.assert_array_equal(got.classes, expected[3])
    np.testing.assert_array_equal(got.indices, expected[4])
    np.testing.assert_array_equal(got.scores, expected[2])
    np.testing.assert_array_equal(got.boxes, expected[1])


@pytest.mark.parametrize(
    ("per_class", "attrs"),
    [
        (True, BatchedNmsAttrs(background_class=0)),  # Mask R-CNN's box head
        (False, BatchedNmsAttrs(score_threshold=0.2, iou_threshold=0.3, keep_top_k=50)),
        (True, BatchedNmsAttrs(score_threshold=0.0, iou_threshold=0.7, pre_nms_top_k=300, keep_top_k=1000)),
        (False, BatchedNmsAttrs(score_threshold=0.5, min_box_size=5.0, keep_top_k=500)),  # K > survivors
    ],
)
def test_batched_nms_matches_torchvision(per_class: bool, attrs: BatchedNmsAttrs) -> None:
    rng = np.random.default_rng(int(attrs.keep_top_k) + per_class)
    boxes, scores = random_detections(rng, batch=2, n=300, c=6, per_class=per_class)
    expected = torchvision_postprocess(boxes, scores, attrs)
    got = batched_nms_reference(boxes, scores, attrs)
    assert expected[0].max() > 0
    assert_same(got, expected)
    if attrs.keep_top_k == 500:
        assert got.num_detections.max() < 500, "K should exceed the survivors here"
        assert np.all(got.classes[:, -1] == -1) and np.all(got.scores[:, -1] == 0)


def test_batched_nms_large_candidate_set() -> None:
    """Thousands of candidates over 80 classes (torchvision takes its per-class path there)."""
    rng = np.random.default_rng(5)
    boxes, scores = random_detections(rng, batch=1, n=1000, c=81, per_class=True, extent=600)
    attrs = BatchedNmsAttrs(background_class=0)
    expected = torchvision_postprocess(boxes, scores, attrs)
    assert_same(batched_nms_reference(boxes, scores, attrs), expected)


def test_everything_suppressed_and_no_candidates() -> None:
    boxes = np.tile(np.array([10, 10, 50, 60], np.float32), (2, 8, 1))
    scores = np.zeros((2, 8, 3), np.float32)
    scores[0, :, 1] = np.linspace(0.9, 0.2, 8)  # image 0: eight copies of one box in class 1 -> one survivor
    attrs = BatchedNmsAttrs(keep_top_k=5)
    got = batched_nms_reference(boxes, scores, attrs)
    assert_same(got, torchvision_postprocess(boxes, scores, attrs))
    assert got.num_detections.tolist() == [1, 0]
    assert got.indices[0, 0] == 0 and got.classes[0, 0] == 1
    assert np.all(got.indices[1] == -1) and np.all(got.boxes[1] == 0)


def test_classes_do_not_suppress_each_other_and_ties_keep_index_order() -> None:
    boxes = np.tile(np.array([0, 0, 10, 10], np.float32), (1, 3, 1))
    scores = np.full((1, 3, 2), 0.5, np.float32)  # all tied
    attrs = BatchedNmsAttrs(iou_threshold=0.5, keep_top_k=10)
    got = batched_nms_reference(boxes, scores, attrs)
    # one survivor per class, the lowest flat index n * C + c of each, in flat-index order
    assert got.num_detections.tolist() == [2]
    assert got.indices[0, :2].tolist() == [0, 0] and got.classes[0, :2].tolist() == [0, 1]


@pytest.mark.parametrize("per_class", [False, True])
def test_nms_float16_matches_torchvision_float32(per_class: bool) -> None:
    """float16 boxes and scores, float32 math: exactly torchvision's survivors on the float16-rounded inputs,
    and the kept boxes and scores are those inputs (float16 values, exact in float32)."""
    rng = np.random.default_rng(2)
    boxes, scores = random_detections(rng, 2, 200, 5, per_class=per_class)
    boxes16, scores16 = boxes.astype(np.float16), scores.astype(np.float16)
    attrs = BatchedNmsAttrs(score_threshold=0.05, iou_threshold=0.5, keep_top_k=60)
    got = batched_nms_reference(boxes16, scores16, attrs)
    assert got.boxes.dtype == np.float16 and got.scores.dtype == np.float16
    expected = torchvision_postprocess(boxes16.astype(np.float32), scores16.astype(np.float32), attrs)
    assert expected[0].min() > 10
    assert_same(
        NmsOutputs(
            got.num_detections,
            got.boxes.astype(np.float32),
            got.scores.astype(np.float32),
            got.classes,
            got.indices,
        ),
        expected,
    )


def test_nms_input_errors() -> None:
    rng = np.random.default_rng(2)
    boxes, scores = random_detections(rng, 1, 50, 3, per_class=False)
    with pytest.raises(ValueError, match="boxes must be"):
        batched_nms_reference(boxes[:, :, :2], scores, BatchedNmsAttrs())
    with pytest.raises(ValueError, match="keep_top_k"):
        batched_nms_reference(boxes, scores, BatchedNmsAttrs(keep_top_k=0))
