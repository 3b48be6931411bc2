"""The CUDA kernels through their C entry points (ctypes on torch CUDA tensors) against torchvision's CUDA ops
and the CPU reference. Needs an NVIDIA GPU and libmrd_kernels; skipped with the reason otherwise, and failed
instead where MRD_REQUIRE_GPU=1 (scripts/gpu_check.sh sets it: on the lent GPU machine a skip proves nothing).

Covered: FP32 and FP16; 1 to 4 images; rois on every FPN level, partly and entirely outside the image, of zero area
and zero width; zero rois and zero images; NMS from no candidates up to 20000 candidates over 80 classes, keep_top_k
past the 256-candidate tile; no boxes, no classes, no images; the workspace check; non-finite rois (pooled as
zeros since issue 25: the math header the kernel shares with the CPU reference, tests/plugins/test_hostile_inputs.py).

Tolerances: FP32 ROIAlign within 1e-5 of torchvision (rounding only) and 1e-6 of the CPU reference (the same math).
FP16 ROIAlign (float16 storage, float32 accumulation) within atol 2e-3 + rtol 1e-3 of torchvision's FP32 op on the
same float16-rounded inputs and of the CPU reference: one float16 rounding of outputs of magnitude <= 4. NMS:
exactly the CPU reference's survivors and order, FP32 and FP16; against torchvision's CUDA nms (one class at a
time, as batched_nms does for large inputs; scores without ties) the same survivors, up to 1% that an IoU within
rounding of the threshold may swap.

Every output starts poisoned (poison_free_memory): an element a kernel does not write fails the comparison instead
of passing as a zero that fresh memory happened to hold. The numbers compared are recorded as junit properties,
which benchmarks/gpu_check.py reports.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
from torchvision.ops import MultiScaleRoIAlign, nms, remove_small_boxes, roi_align  # noqa: E402
from torchvision.ops.poolers import LevelMapper  # noqa: E402

from runtime.plugins.abi import nms_params  # noqa: E402
from runtime.plugins.cuda import batched_nms_cuda, multilevel_roi_align_cuda  # noqa: E402
from runtime.plugins.library import (  # noqa: E402
    KERNEL_LIBRARY,
    REPO_ROOT,
    PluginCallError,
    PluginLibraryNotFound,
    check_status,
    load_kernel_library,
)
from runtime.plugins.reference import NmsOutputs, batched_nms_reference, multilevel_roi_align_reference  # noqa: E402
from runtime.plugins.spec import BatchedNmsAttrs, MultiLevelRoiAlignAttrs  # noqa: E402
from scripts.build_plugins import BuildToolMissing, ensure_built  # noqa: E402

pytestmark = pytest.mark.gpu

REQUIRE_GPU = os.environ.get("MRD_REQUIRE_GPU") == "1"
#: byte the free memory is filled with: float32 3.4e38, float16 NaN, int32 2139062143, none of them an output
POISON = 0x7F
NO_CACHE = os.environ.get("PYTORCH_NO_CUDA_MEMORY_CACHING") == "1"

FP32_ATOL = FP32_RTOL = 1e-5
HOST_ATOL = HOST_RTOL = 1e-6
FP16_ATOL, FP16_RTOL = 2e-3, 1e-3
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])


def dtype_name(dtype: torch.dtype) -> str:
    return "fp32" if dtype == torch.float32 else "fp16"


def unavailable(reason: str) -> None:
    if REQUIRE_GPU:
        pytest.fail(f"MRD_REQUIRE_GPU=1, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module", autouse=True)
def kernels() -> None:
    if not torch.cuda.is_available():
        unavailable("no CUDA GPU (torch.cuda.is_available() is False)")
    try:
        ensure_built(KERNEL_LIBRARY)
        load_kernel_library()
    except (PluginLibraryNotFound, BuildToolMissing, RuntimeError) as e:
        unavailable(f"libmrd_kernels not available: {e}")


def poison_free_memory() -> None:
    """Fill the memory torch's caching allocator holds free with POISON: the ops allocate their outputs with
    torch.empty, which hands back these blocks. Nothing to do when caching is off (the memcheck run)."""
    if NO_CACHE:
        return
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    large = torch.full((256 << 20,), POISON, dtype=torch.uint8, device="cuda")
    small = [torch.full((1 << 20,), POISON, dtype=torch.uint8, device="cuda") for _ in range(8)]
    del large, small


def run_roi_align(rois: torch.Tensor, feats: list, attrs: MultiLevelRoiAlignAttrs) -> torch.Tensor:
    poison_free_memory()
    out = multilevel_roi_align_cuda(rois, feats, attrs)
    torch.cuda.synchronize()
    return out


def run_nms(boxes: torch.Tensor, scores: torch.Tensor, attrs: BatchedNmsAttrs, workspace=None) -> tuple:
    poison_free_memory()
    out = batched_nms_cuda(boxes, scores, attrs, workspace)
    torch.cuda.synchronize()
    return out


def test_outputs_start_poisoned() -> None:
    """The poisoning reaches what is allocated next, small and large (else the checks below prove less)."""
    if NO_CACHE:
        pytest.skip("PYTORCH_NO_CUDA_MEMORY_CACHING=1: no cached memory to poison")
    poison_free_memory()
    probes = [torch.empty(n, dtype=torch.uint8, device="cuda") for n in (100, 70_000, 3 << 20, 40 << 20)]
    for p in probes:
        assert bool(p.eq(POISON).all()), f"{p.numel()} bytes allocated after poisoning are not all poisoned"


# ---------------------------------------------------------------------------------------------------------------
# ROIAlign

IMAGE = (256, 320)
#: rows of rois_every_level's fixed rois
FINEST, COARSEST, ZERO_AREA, ZERO_WIDTH, OUTSIDE_TOP_LEFT, OUTSIDE_BOTTOM_RIGHT = range(6)


def rois_every_level(gen: torch.Generator, batch: int, num: int, image: tuple[int, int]) -> torch.Tensor:
    """[batch, num, 4] float32 rois of 4 to 700 px (every FPN level), some partly outside the image; in every image
    rows 0 to 5 are one on the finest and one on the coarsest level for sure, one of zero area, one of zero width,
    and two entirely outside the image (above-left and below-right of it, past the sampling border)."""
    h, w = image
    sizes = torch.exp(torch.empty(batch, num, 2).uniform_(math.log(4), math.log(700), generator=gen))
    centers = (torch.rand(batch, num, 2, generator=gen) * 1.3 - 0.15) * torch.tensor([float(w), float(h)])
    rois = torch.cat([centers - sizes / 2, centers + sizes / 2], -1)
    rois[:, FINEST] = torch.tensor([3.0, 4.0, 20.0, 22.0])
    rois[:, COARSEST] = torch.tensor([-100.0, -80.0, 500.0, 520.0])
    rois[:, ZERO_AREA] = torch.tensor([30.0, 30.0, 30.0, 30.0])
    rois[:, ZERO_WIDTH] = torch.tensor([40.0, 40.0, 40.0, 90.0])
    rois[:, OUTSIDE_TOP_LEFT] = torch.tensor([-60.0, -50.0, -10.0, -5.0])
    rois[:, OUTSIDE_BOTTOM_RIGHT] = torch.tensor([w + 20.0, h + 20.0, w + 80.0, h + 90.0])
    return rois


def feature_maps(gen: torch.Generator, batch: int, channels: int, image, attrs, dtype=torch.float32) -> list:
    """CPU feature maps [batch, channels, H * scale, W * scale] per level, in ``dtype`` (float16: rounded)."""
    return [
        torch.randn(batch, channels, int(image[0] * s), int(image[1] * s), generator=gen).to(dtype)
        for s in attrs.spatial_scales
    ]


def levels_of(rois: torch.Tensor, attrs: MultiLevelRoiAlignAttrs) -> torch.Tensor:
    """torchvision's level index of each roi ([B, R, 4] -> [B*R]), on the CPU."""
    k = [round(-math.log2(s)) for s in attrs.spatial_scales]
    mapper = LevelMapper(k[0], k[-1], attrs.canonical_box_size, attrs.canonical_level)
    return mapper([rois.reshape(-1, 4).float().cpu()])


def torchvision_pool(rois: torch.Tensor, feats: list, image, attrs: MultiLevelRoiAlignAttrs) -> torch.Tensor:
    names = [str(i) for i in range(len(feats))]
    pooler = MultiScaleRoIAlign(names, (attrs.output_height, attrs.output_width), attrs.sampling_ratio)
    return pooler(dict(zip(names, feats)), list(rois), [image] * rois.shape[0])


def compare_roi_align(got: torch.Tensor, rois: torch.Tensor, feats: list, image, attrs, record=None) -> None:
    """``got`` (the kernel on ``rois``, ``feats`` moved to the GPU) against torchvision's CUDA op in float32 on the
    same (float16-rounded) inputs, and against the CPU reference."""
    name = dtype_name(feats[0].dtype)
    got32 = got.float()
    assert got.dtype == feats[0].dtype
    assert bool(torch.isfinite(got32).all()), "an output element is not finite (unwritten: poisoned)"
    expected = torchvision_pool(rois.cuda(), [f.cuda().float() for f in feats], image, attrs)
    host = multilevel_roi_align_reference(rois.numpy(), [f.numpy() for f in feats], attrs)
    atol, rtol = (FP32_ATOL, FP32_RTOL) if name == "fp32" else (FP16_ATOL, FP16_RTOL)
    torch.testing.assert_close(got32, expected, atol=atol, rtol=rtol)
    host_atol, host_rtol = (HOST_ATOL, HOST_RTOL) if name == "fp32" else (FP16_ATOL, FP16_RTOL)
    np.testing.assert_allclose(got32.cpu().numpy(), host.astype(np.float32), atol=host_atol, rtol=host_rtol)
    if record is not None:
        record(f"roi_align_max_abs_diff_torchvision_{name}", float((got32 - expected).abs().max()))
        record(f"roi_align_max_abs_diff_reference_{name}", float(np.abs(got32.cpu().numpy() - host).max()))


@DTYPES
@pytest.mark.parametrize("batch", [1, 2, 3, 4])
@pytest.mark.parametrize(("output_size", "sampling_ratio"), [(7, 2), (14, 0)])
def test_roi_align_every_level_and_outside(
    record_property, output_size: int, sampling_ratio: int, batch: int, dtype: torch.dtype
) -> None:
    gen = torch.Generator().manual_seed(100 * batch + output_size + sampling_ratio)
    attrs = MultiLevelRoiAlignAttrs(output_size, output_size, sampling_ratio)
    num = 40
    rois = rois_every_level(gen, batch, num, IMAGE)
    assert set(levels_of(rois, attrs).tolist()) == {0, 1, 2, 3}, "the rois should reach every level"
    feats = feature_maps(gen, batch, 8, IMAGE, attrs, dtype)
    got = run_roi_align(rois.cuda(), [f.cuda() for f in feats], attrs)
    assert got.shape == (batch * num, 8, output_size, output_size)
    compare_roi_align(got, rois, feats, IMAGE, attrs, record_property)
    outside = [b * num + r for b in range(batch) for r in (OUTSIDE_TOP_LEFT, OUTSIDE_BOTTOM_RIGHT)]
    assert bool(got[outside].eq(0).all()), "a roi outside the image pools zeros"
    assert bool(got[[b * num + COARSEST for b in range(batch)]].ne(0).any())


@pytest.mark.parametrize("output_size", [7, 14])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_roi_align_fp32_and_fp16(record_property, output_size: int, sampling_ratio: int) -> None:
    gen = torch.Generator().manual_seed(output_size + sampling_ratio)
    image = (320, 384)
    attrs = MultiLevelRoiAlignAttrs(output_size, output_size, sampling_ratio)
    rois = rois_every_level(gen, 2, 300, image)
    feats = feature_maps(gen, 2, 16, image, attrs)
    got = run_roi_align(rois.cuda(), [f.cuda() for f in feats], attrs)
    compare_roi_align(got, rois, feats, image, attrs, record_property)
    half = [f.half() for f in feats]
    got16 = run_roi_align(rois.cuda(), [f.cuda() for f in half], attrs)
    compare_roi_align(got16, rois, half, image, attrs, record_property)


@DTYPES
def test_roi_align_level_of_every_roi(dtype: torch.dtype) -> None:
    """Feature map l is the constant l + 1, so each roi's output names the level it was pooled from: torchvision's
    LevelMapper's level, for rois inside the image of all sizes."""
    gen = torch.Generator().manual_seed(17)
    attrs = MultiLevelRoiAlignAttrs(7, 7, 2)
    image = (512, 640)
    batch, num = 3, 200
    sizes = torch.exp(torch.empty(batch, num, 2).uniform_(math.log(2), math.log(500), generator=gen))
    # 8 px clear of the far borders: a tiny roi's bins widen to 1 feature pixel (4 image pixels at the finest level)
    corner = torch.rand(batch, num, 2, generator=gen) * (torch.tensor([640.0, 512.0]) - sizes - 8)
    rois = torch.cat([corner, corner + sizes], -1)
    rois[:, 0] = torch.tensor([10.0, 5.0, 510.0, 505.0])  # the coarsest level
    levels = levels_of(rois, attrs)
    assert set(levels.tolist()) == {0, 1, 2, 3}
    feats = [
        torch.full((batch, 2, int(image[0] * s), int(image[1] * s)), i + 1.0, dtype=dtype, device="cuda")
        for i, s in enumerate(attrs.spatial_scales)
    ]
    got = run_roi_align(rois.cuda(), feats, attrs).float().reshape(batch * num, -1).cpu()
    pooled = torch.round(got[:, 0]).to(torch.int64) - 1
    torch.testing.assert_close(got, (pooled + 1.0)[:, None].expand_as(got), atol=1e-3, rtol=1e-3)
    assert torch.equal(pooled, levels)


@DTYPES
def test_roi_align_zero_rois_and_zero_images(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(2)
    attrs = MultiLevelRoiAlignAttrs()
    feats = [f.cuda() for f in feature_maps(gen, 2, 4, IMAGE, attrs, dtype)]
    no_rois = run_roi_align(torch.zeros(2, 0, 4, device="cuda"), feats, attrs)
    expected = multilevel_roi_align_reference(
        np.zeros((2, 0, 4), np.float32), [f.cpu().numpy() for f in feats], attrs
    )
    assert no_rois.shape == expected.shape == (0, 4, 7, 7) and no_rois.dtype == dtype
    no_images = run_roi_align(torch.zeros(0, 5, 4, device="cuda"), [f[:0] for f in feats], attrs)
    assert no_images.shape == (0, 4, 7, 7) and no_images.dtype == dtype
    # and the kernels still run afterwards
    one = rois_every_level(gen, 1, 8, IMAGE)
    cpu_feats = feature_maps(gen, 1, 4, IMAGE, attrs, dtype)
    compare_roi_align(
        run_roi_align(one.cuda(), [f.cuda() for f in cpu_feats], attrs), one, cpu_feats, IMAGE, attrs
    )


def test_roi_align_aligned_single_level() -> None:
    gen = torch.Generator().manual_seed(3)
    attrs = MultiLevelRoiAlignAttrs(7, 7, -1, 1, spatial_scales=(0.0625,))
    rois = rois_every_level(gen, 3, 50, (256, 256)).cuda()
    feat = torch.randn(3, 8, 16, 16, generator=gen).cuda()
    got = run_roi_align(rois, [feat], attrs)
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
    got = run_roi_align(torch.from_numpy(rois).cuda(), [torch.from_numpy(f).cuda() for f in feats], attrs)
    host = multilevel_roi_align_reference(rois, feats, attrs)
    np.testing.assert_allclose(got.cpu().numpy(), host, atol=1e-6, rtol=1e-6)
    expected = roi_align_at_levels(rois, feats, plus_one_levels(rois, attrs), attrs)
    np.testing.assert_allclose(got.cpu().numpy(), expected, atol=1e-5, rtol=1e-5)
    default = run_roi_align(
        torch.from_numpy(rois).cuda(), [torch.from_numpy(f).cuda() for f in feats], MultiLevelRoiAlignAttrs()
    )
    assert not torch.allclose(got, default, atol=1e-3), "rois just below a boundary move up a level"


NON_FINITE_SCRIPT = """
import json, sys
import torch
from runtime.plugins.cuda import multilevel_roi_align_cuda
from runtime.plugins.library import PluginCallError
from runtime.plugins.spec import MultiLevelRoiAlignAttrs

inf, nan = float("inf"), float("nan")
rois = torch.tensor([[[10, 10, 60, 60], [nan, 10, 60, 60], [10, 10, inf, 60], [-inf, -inf, 30, 30],
                      [5, 5, 40, nan]]], device="cuda")
attrs = MultiLevelRoiAlignAttrs(7, 7, 2)
feats = [torch.randn(1, 4, int(256 * s), int(256 * s), device="cuda") for s in attrs.spatial_scales]
try:
    out = multilevel_roi_align_cuda(rois, feats, attrs)
    torch.cuda.synchronize()
except PluginCallError as e:
    print("RESULT " + json.dumps({"refused": str(e)}))
    sys.exit(0)
finite = multilevel_roi_align_cuda(rois[:, :1].contiguous(), feats, attrs)
print("RESULT " + json.dumps({"finite_row_same": bool(torch.equal(out[:1], finite)),
                              "non_finite_rows_zero": bool(out[1:].eq(0).all())}))
"""


def test_roi_align_non_finite_rois_refused_or_zero() -> None:
    """NaN and infinite roi coordinates (an FP16 box decode that overflows makes them): refused with a message
    naming them, or pooled as zeros without touching the other rois. In a child process, so that an illegal
    address there cannot spoil this process's CUDA context. sampling_ratio 2: with the adaptive ratio an infinite
    roi asks for an unbounded number of samples."""
    result = subprocess.run(
        [sys.executable, "-c", NON_FINITE_SCRIPT],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")]
    assert result.returncode == 0 and lines, f"exit {result.returncode}: {result.stderr[-2000:]}"
    outcome = json.loads(lines[-1][len("RESULT ") :])
    if "refused" in outcome:
        assert "finite" in outcome["refused"].lower(), outcome
    else:
        assert outcome["finite_row_same"] and outcome["non_finite_rows_zero"], outcome


# ---------------------------------------------------------------------------------------------------------------
# NMS


def random_detections(gen: torch.Generator, batch: int, n: int, c: int, per_class: bool, extent: float = 600):
    shape = (batch, n, c, 2) if per_class else (batch, n, 2)
    xy = torch.rand(shape, generator=gen) * extent
    wh = torch.empty(shape).exponential_(6 / extent, generator=gen)
    boxes = torch.cat([xy, xy + wh], -1)
    scores = torch.rand(batch, n, c, generator=gen) ** 3
    return boxes, scores


def proposal_detections(gen: torch.Generator, batch: int, num_boxes: int, num_classes: int, candidates: int):
    """What Mask R-CNN's box head hands NMS: per-class boxes [B, N, C, 4] jittered around N overlapping proposals
    (so NMS suppresses much), 1% of them of zero width (the small-box filter), and scores [B, N, C] distinct within
    an image, exactly ``candidates`` of the non-background (n, c) pairs above the returned threshold."""
    xy = torch.rand(batch, num_boxes, 1, 2, generator=gen) * 1000
    wh = torch.rand(batch, num_boxes, 1, 2, generator=gen) * 280 + 20
    jitter = (torch.rand(batch, num_boxes, num_classes, 4, generator=gen) - 0.5) * 0.2
    boxes = torch.cat([xy, xy + wh], -1) + jitter * torch.cat([wh, wh], -1)
    thin = torch.rand(batch, num_boxes, num_classes, generator=gen) < 0.01
    boxes[..., 2] = torch.where(thin, boxes[..., 0], boxes[..., 2])
    foreground = num_boxes * (num_classes - 1)
    scores = torch.rand(batch, num_boxes, num_classes, generator=gen)
    for b in range(batch):
        ranks = torch.randperm(foreground, generator=gen).to(torch.float64)
        scores[b, :, 1:] = (ranks / foreground).to(torch.float32).reshape(num_boxes, num_classes - 1)
    threshold = (foreground - candidates - 0.5) / foreground
    return boxes, scores, threshold


def assert_nms_equal(got, ref: NmsOutputs) -> None:
    num, boxes, scores, classes, indices = (t.cpu().numpy() for t in got)
    np.testing.assert_array_equal(num, ref.num_detections)
    np.testing.assert_array_equal(indices, ref.indices)
    np.testing.assert_array_equal(classes, ref.classes)
    np.testing.assert_array_equal(scores, ref.scores)
    np.testing.assert_array_equal(boxes, ref.boxes)


def survivors(got) -> list[set]:
    """The kept (index, class) pairs of each image."""
    num, _, _, classes, indices = (t.cpu() for t in got)
    return [
        set(zip(indices[b, : num[b]].tolist(), classes[b, : num[b]].tolist())) for b in range(num.shape[0])
    ]


def torchvision_cuda_survivors(
    boxes: torch.Tensor, scores: torch.Tensor, attrs: BatchedNmsAttrs
) -> list[set]:
    """RoIHeads.postprocess_detections's candidate pipeline on the GPU with torchvision's CUDA ``nms`` one class
    at a time (batched_nms's strategy for large inputs; its coordinate-offset strategy for smaller ones rounds the
    coordinates), as the kept (index, class) pairs of each image. Scores must be free of ties."""
    batch, n, c = scores.shape
    out = []
    for b in range(batch):
        bx = boxes[b] if boxes.dim() == 4 else boxes[b][:, None, :].expand(n, c, 4)
        sc = scores[b]
        cls = torch.arange(c, device=sc.device).view(1, -1).expand(n, c)
        rows = torch.arange(n, device=sc.device).view(-1, 1).expand(n, c)
        keep = (cls != attrs.background_class) & (sc > attrs.score_threshold)
        bx, sc, cls, rows = bx[keep], sc[keep], cls[keep], rows[keep]
        small = remove_small_boxes(bx, attrs.min_box_size)
        bx, sc, cls, rows = bx[small], sc[small], cls[small], rows[small]
        if attrs.pre_nms_top_k > 0:
            top = torch.sort(sc, descending=True, stable=True)[1][: attrs.pre_nms_top_k]
            bx, sc, cls, rows = bx[top], sc[top], cls[top], rows[top]
        kept = [
            idx[nms(bx[idx], sc[idx], attrs.iou_threshold)]
            for idx in (torch.where(cls == k)[0] for k in torch.unique(cls).tolist())
        ]
        kept_all = torch.cat(kept) if kept else torch.zeros(0, dtype=torch.int64, device=sc.device)
        kept_all = kept_all[torch.sort(sc[kept_all], descending=True, stable=True)[1]][: attrs.keep_top_k]
        out.append(set(zip(rows[kept_all].tolist(), cls[kept_all].tolist())))
    return out


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
    got = run_nms(boxes.cuda(), scores.cuda(), attrs)
    ref = batched_nms_reference(boxes.float().numpy(), scores.float().numpy(), attrs)
    assert ref.num_detections.max() > 0
    assert_nms_equal(got, ref)
    assert got[1].dtype == dtype


@DTYPES
@pytest.mark.parametrize(
    ("batch", "candidates", "keep_top_k"),
    [(1, 20000, 100), (2, 1000, 1000), (3, 5000, 300), (4, 20000, 1000)],
)
def test_nms_candidates_and_images(
    record_property, batch: int, candidates: int, keep_top_k: int, dtype: torch.dtype
) -> None:
    """1 to 4 images of 1000 proposals x 81 classes with 1000 to 20000 candidates each: the CPU reference's exact
    survivors, and (FP32) torchvision's CUDA nms's."""
    gen = torch.Generator().manual_seed(7 * batch + candidates + keep_top_k)
    boxes, scores, threshold = proposal_detections(gen, batch, 1000, 81, candidates)
    attrs = BatchedNmsAttrs(
        score_threshold=threshold, iou_threshold=0.5, keep_top_k=keep_top_k, background_class=0
    )
    boxes, scores = boxes.to(dtype), scores.to(dtype)
    got = run_nms(boxes.cuda(), scores.cuda(), attrs)
    ref = batched_nms_reference(boxes.float().numpy(), scores.float().numpy(), attrs)
    assert_nms_equal(got, ref)
    assert (ref.num_detections > min(keep_top_k, 50)).all(), "many survivors expected"
    if dtype == torch.float32:
        fg = scores[:, :, 1:]
        assert ((fg > threshold).sum(dim=(1, 2)) == candidates).all()
        theirs = torchvision_cuda_survivors(boxes.cuda(), scores.cuda(), attrs)
        ours = survivors(got)
        differ = sum(len(o ^ t) for o, t in zip(ours, theirs))
        compared = sum(len(t) for t in theirs)
        record_property("nms_mismatches_torchvision", differ)
        record_property("nms_compared_torchvision", compared)
        assert differ <= compared // 100, f"{differ} of {compared} survivors differ from torchvision's"


@DTYPES
def test_nms_empty_inputs(dtype: torch.dtype) -> None:
    """No boxes, no classes, no images, nothing over the threshold, background only, boxes too small: padded
    outputs (boxes and scores 0, classes and indices -1), as the CPU reference gives them."""
    gen = torch.Generator().manual_seed(4)
    box = torch.tensor([10.0, 10.0, 50.0, 60.0])
    attrs = BatchedNmsAttrs(keep_top_k=7)
    cases = [
        ("no boxes", torch.zeros(2, 0, 4), torch.zeros(2, 0, 5), attrs),
        ("no classes", box.repeat(2, 3, 1), torch.zeros(2, 3, 0), attrs),
        ("no images", torch.zeros(0, 3, 4), torch.zeros(0, 3, 5), attrs),
        (
            "under the threshold",
            random_detections(gen, 2, 6, 3, False)[0],
            torch.full((2, 6, 3), 0.01),
            attrs,
        ),
        (
            "background only",
            box.repeat(2, 6, 1),
            torch.full((2, 6, 1), 0.9),
            BatchedNmsAttrs(background_class=0),
        ),
        ("too small", torch.tensor([5.0, 5.0, 5.0, 40.0]).repeat(1, 4, 1), torch.full((1, 4, 2), 0.9), attrs),
    ]
    for what, boxes, scores, case_attrs in cases:
        boxes, scores = boxes.to(dtype), scores.to(dtype)
        got = run_nms(boxes.cuda(), scores.cuda(), case_attrs)
        ref = batched_nms_reference(boxes.float().numpy(), scores.float().numpy(), case_attrs)
        assert_nms_equal(got, ref)
        assert int(got[0].sum()) == 0, what
        assert bool(got[3].eq(-1).all() and got[4].eq(-1).all() and got[2].eq(0).all()), what


def test_nms_edge_cases() -> None:
    boxes = torch.tensor([10.0, 10.0, 50.0, 60.0]).repeat(2, 8, 1)
    scores = torch.zeros(2, 8, 3)
    scores[0, :, 1] = torch.linspace(0.9, 0.2, 8)
    attrs = BatchedNmsAttrs(keep_top_k=5)
    got = run_nms(boxes.cuda(), scores.cuda(), attrs)
    assert_nms_equal(got, batched_nms_reference(boxes.numpy(), scores.numpy(), attrs))
    assert got[0].tolist() == [1, 0]
    empty = run_nms(torch.zeros(1, 0, 4).cuda(), torch.zeros(1, 0, 5).cuda(), attrs)
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


# ---------------------------------------------------------------------------------------------------------------
# memcheck


def test_memcheck_smoke() -> None:
    """Every path once on small inputs, both precisions, against the CPU reference: the test that
    benchmarks/gpu_check.py runs under compute-sanitizer memcheck (where each launch is many times slower)."""
    gen = torch.Generator().manual_seed(11)
    for dtype in (torch.float32, torch.float16):
        for attrs in (MultiLevelRoiAlignAttrs(7, 7, 0), MultiLevelRoiAlignAttrs(14, 14, 2, aligned=1)):
            for batch in (1, 3):
                rois = rois_every_level(gen, batch, 12, IMAGE)
                feats = feature_maps(gen, batch, 4, IMAGE, attrs, dtype)
                got = run_roi_align(rois.cuda(), [f.cuda() for f in feats], attrs)
                host = multilevel_roi_align_reference(rois.numpy(), [f.numpy() for f in feats], attrs)
                np.testing.assert_allclose(
                    got.float().cpu().numpy(), host.astype(np.float32), atol=2e-3, rtol=1e-3
                )
        feats = [f.cuda() for f in feature_maps(gen, 2, 4, IMAGE, MultiLevelRoiAlignAttrs(), dtype)]
        assert (
            run_roi_align(torch.zeros(2, 0, 4, device="cuda"), feats, MultiLevelRoiAlignAttrs()).numel() == 0
        )

        boxes, scores, threshold = proposal_detections(gen, 2, 60, 6, 150)
        shared, shared_scores = random_detections(gen, 3, 50, 4, per_class=False)
        cases = [
            (boxes, scores, BatchedNmsAttrs(score_threshold=threshold, keep_top_k=40, background_class=0)),
            (boxes, scores, BatchedNmsAttrs(score_threshold=0.0, keep_top_k=400, pre_nms_top_k=300)),
            (shared, shared_scores, BatchedNmsAttrs(score_threshold=0.1, iou_threshold=0.3, keep_top_k=30)),
            (torch.zeros(2, 0, 4), torch.zeros(2, 0, 3), BatchedNmsAttrs(keep_top_k=5)),
        ]
        for bx, sc, attrs in cases:
            bx, sc = bx.to(dtype), sc.to(dtype)
            got = run_nms(bx.cuda(), sc.cuda(), attrs)
            assert_nms_equal(got, batched_nms_reference(bx.float().numpy(), sc.float().numpy(), attrs))
    torch.cuda.synchronize()
