"""The CUDA kernels through their C entry points (ctypes on torch CUDA tensors) against torchvision's CUDA ops
and the CPU reference. Needs an NVIDIA GPU and libmrd_kernels; skipped with the reason otherwise.

Tolerances: FP32 ROIAlign within 1e-5 of torchvision (rounding only). FP16 ROIAlign (float16 storage, float32
accumulation) within atol 2e-3 + rtol 1e-3 of torchvision's FP32 op on the same float16-rounded inputs: one
float16 rounding of outputs of magnitude <= 4. NMS: exactly the CPU reference's survivors and order, FP32 and FP16.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torchvision.ops import MultiScaleRoIAlign, roi_align  # noqa: E402

from runtime.plugins.abi import nms_params  # noqa: E402
from runtime.plugins.cuda import batched_nms_cuda, multilevel_roi_align_cuda  # noqa: E402
from runtime.plugins.library import (  # noqa: E402
    KERNEL_LIBRARY,
    PluginCallError,
    PluginLibraryNotFound,
    check_status,
    load_kernel_library,
)
from runtime.plugins.reference import NmsOutputs, batched_nms_reference, multilevel_roi_align_reference  # noqa: E402
from runtime.plugins.spec import BatchedNmsAttrs, MultiLevelRoiAlignAttrs  # noqa: E402
from scripts.build_plugins import BuildToolMissing, ensure_built  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def kernels() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU (torch.cuda.is_available() is False)")
    try:
        ensure_built(KERNEL_LIBRARY)
        load_kernel_library()
    except (PluginLibraryNotFound, BuildToolMissing, RuntimeError) as e:
        pytest.skip(f"libmrd_kernels not available: {e}")


def make_rois(gen: torch.Generator, batch: int, num: int, image: tuple[int, int]) -> torch.Tensor:
    sizes = torch.exp(torch.empty(batch, num, 2).uniform_(np.log(4), np.log(700), generator=gen))
    centers = (
        torch.rand(batch, num, 2, generator=gen) * torch.tensor([image[1], image[0]]) * 1.2 - 0.1 * image[0]
    )
    rois = torch.cat([centers - sizes / 2, centers + sizes / 2], -1)
    rois[:, 0] = torch.tensor([30.0, 30.0, 30.0, 30.0])  # zero area
    return rois


def torchvision_pool(rois: torch.Tensor, feats: list, image, attrs: MultiLevelRoiAlignAttrs) -> torch.Tensor:
    names = [str(i) for i in range(len(feats))]
    pooler = MultiScaleRoIAlign(names, (attrs.output_height, attrs.output_width), attrs.sampling_ratio)
    return pooler(dict(zip(names, feats)), list(rois), [image] * rois.shape[0])


@pytest.mark.parametrize("output_size", [7, 14])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_roi_align_fp32_and_fp16(output_size: int, sampling_ratio: int) -> None:
    gen = torch.Generator().manual_seed(output_size + sampling_ratio)
    image = (320, 384)
    attrs = MultiLevelRoiAlignAttrs(output_size, output_size, sampling_ratio)
    rois = make_rois(gen, 2, 300, image)
    feats = [
        torch.randn(2, 16, int(image[0] * s), int(image[1] * s), generator=gen) for s in attrs.spatial_scales
    ]
    rois_d, feats_d = rois.cuda(), [f.cuda() for f in feats]

    got = multilevel_roi_align_cuda(rois_d, feats_d, attrs)
    expected = torchvision_pool(rois_d, feats_d, image, attrs)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    host = multilevel_roi_align_reference(rois.numpy(), [f.numpy() for f in feats], attrs)
    np.testing.assert_allclose(got.cpu().numpy(), host, atol=1e-6, rtol=1e-6)

    half = [f.half() for f in feats_d]
    got16 = multilevel_roi_align_cuda(rois_d, half, attrs)
    assert got16.dtype == torch.float16
    expected16 = torchvision_pool(rois_d, [f.float() for f in half], image, attrs)
    torch.testing.assert_close(got16.float(), expected16, atol=2e-3, rtol=1e-3)


def test_roi_align_aligned_single_level() -> None:
    gen = torch.Generator().manual_seed(3)
    attrs = MultiLevelRoiAlignAttrs(7, 7, -1, 1, spatial_scales=(0.0625,))
    rois = make_rois(gen, 3, 50, (256, 256)).cuda()
    feat = torch.randn(3, 8, 16, 16, generator=gen).cuda()
    got = multilevel_roi_align_cuda(rois, [feat], attrs)
    expected = roi_align(feat, list(rois), 7, 0.0625, -1, aligned=True)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_roi_align_legacy_plus_one_matches_host() -> None:
    """legacy_plus_one=1 on the GPU: the same levels (rois within 1 px of the level boundaries) and numbers as the
    CPU reference, which tests/plugins/test_host.py checks against torchvision's roi_align on those levels."""
    from tests.plugins.torchvision_reference import boundary_rois, plus_one_levels, roi_align_at_levels

    rng = np.random.default_rng(5)
    image = (640, 640)
    attrs = MultiLevelRoiAlignAttrs(legacy_plus_one=1)
    rois = boundary_rois(rng, 2, image)
    feats = [
        rng.standard_normal((2, 4, int(image[0] * s), int(image[1] * s))).astype(np.float32)
        for s in attrs.spatial_scales
    ]
    got = multilevel_roi_align_cuda(
        torch.from_numpy(rois).cuda(), [torch.from_numpy(f).cuda() for f in feats], attrs
    )
    host = multilevel_roi_align_reference(rois, feats, attrs)
    np.testing.assert_allclose(got.cpu().numpy(), host, atol=1e-6, rtol=1e-6)
    expected = roi_align_at_levels(rois, feats, plus_one_levels(rois, attrs), attrs)
    np.testing.assert_allclose(got.cpu().numpy(), expected, atol=1e-5, rtol=1e-5)
    default = multilevel_roi_align_cuda(
        torch.from_numpy(rois).cuda(), [torch.from_numpy(f).cuda() for f in feats], MultiLevelRoiAlignAttrs()
    )
    assert not torch.allclose(got, default, atol=1e-3), "rois just below a boundary move up a level"


def random_detections(gen: torch.Generator, batch: int, n: int, c: int, per_class: bool, extent: float = 600):
    shape = (batch, n, c, 2) if per_class else (batch, n, 2)
    xy = torch.rand(shape, generator=gen) * extent
    wh = torch.empty(shape).exponential_(6 / extent, generator=gen)
    boxes = torch.cat([xy, xy + wh], -1)
    scores = torch.rand(batch, n, c, generator=gen) ** 3
    return boxes, scores


def assert_nms_equal(got, ref: NmsOutputs) -> None:
    num, boxes, scores, classes, indices = (t.cpu().numpy() for t in got)
    np.testing.assert_array_equal(num, ref.num_detections)
    np.testing.assert_array_equal(indices, ref.indices)
    np.testing.assert_array_equal(classes, ref.classes)
    np.testing.assert_array_equal(scores, ref.scores)
    np.testing.assert_array_equal(boxes, ref.boxes)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(
    ("per_class", "attrs"),
    [
        (True, BatchedNmsAttrs(background_class=0)),
        (False, BatchedNmsAttrs(score_threshold=0.2, iou_threshold=0.3, keep_top_k=50)),
        (True, BatchedNmsAttrs(score_threshold=0.0, iou_threshold=0.7, pre_nms_top_k=2000, keep_top_k=1000)),
        (False, BatchedNmsAttrs(score_threshold=0.9, min_box_size=5.0, keep_top_k=500)),
    ],
)
def test_nms_matches_reference(dtype: torch.dtype, per_class: bool, attrs: BatchedNmsAttrs) -> None:
    gen = torch.Generator().manual_seed(attrs.keep_top_k)
    boxes, scores = random_detections(gen, 3, 1000, 81, per_class)
    boxes, scores = boxes.to(dtype), scores.to(dtype)
    got = batched_nms_cuda(boxes.cuda(), scores.cuda(), attrs)
    ref = batched_nms_reference(boxes.float().numpy(), scores.float().numpy(), attrs)
    assert ref.num_detections.max() > 0
    assert_nms_equal(got, ref)
    assert got[1].dtype == dtype


def test_nms_edge_cases() -> None:
    boxes = torch.tensor([10.0, 10.0, 50.0, 60.0]).repeat(2, 8, 1)
    scores = torch.zeros(2, 8, 3)
    scores[0, :, 1] = torch.linspace(0.9, 0.2, 8)
    attrs = BatchedNmsAttrs(keep_top_k=5)
    got = batched_nms_cuda(boxes.cuda(), scores.cuda(), attrs)
    assert_nms_equal(got, batched_nms_reference(boxes.numpy(), scores.numpy(), attrs))
    assert got[0].tolist() == [1, 0]
    empty = batched_nms_cuda(torch.zeros(1, 0, 4).cuda(), torch.zeros(1, 0, 5).cuda(), attrs)
    assert empty[0].tolist() == [0] and empty[3].eq(-1).all()
    with pytest.raises(PluginCallError, match="workspace"):
        lib = load_kernel_library()
        params = nms_params(attrs)
        out = torch.empty(64, dtype=torch.int32, device="cuda")
        status = lib.mrd_cuda_batched_nms(
            0,
            ctypes.byref(params),
            boxes.cuda().data_ptr(),
            scores.cuda().data_ptr(),
            2,
            8,
            3,
            0,
            *[out.data_ptr()] * 5,
            out.data_ptr(),
            4,
            None,
        )
        check_status(lib, status, "mrd_cuda_last_error")
