"""GPU benchmark of the plugin kernels against torchvision's CUDA ops at Mask R-CNN sizes.

    python benchmarks/bench_plugins.py [--iters 100] [--warmup 20]

ROIAlign: 1000 rois, 256 channels, 4 FPN levels, 7x7 (box head) and 14x14 (mask head), FP32 and FP16, against
MultiScaleRoIAlign. NMS: 4000 to 20000 candidates over 80 classes, against torchvision's post-processing
(score filter, remove_small_boxes, batched_nms, top K). CUDA events, warm-up, medians; prints speed ratios.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.plugins.cuda import batched_nms_cuda, multilevel_roi_align_cuda  # noqa: E402
from runtime.plugins.library import KERNEL_LIBRARY, PluginLibraryNotFound, load_kernel_library  # noqa: E402
from runtime.plugins.spec import BatchedNmsAttrs, MultiLevelRoiAlignAttrs  # noqa: E402
from scripts.build_plugins import BuildToolMissing, ensure_built  # noqa: E402


def median_ms(fn: Callable[[], object], iters: int, warmup: int) -> float:
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def bench_roi_align(iters: int, warmup: int) -> None:
    import torch
    from torchvision.ops import MultiScaleRoIAlign

    image = (800, 1216)
    gen = torch.Generator(device="cuda").manual_seed(0)
    wh = torch.exp(torch.empty(1, 1000, 2, device="cuda").uniform_(3.0, 6.5, generator=gen))
    xy = torch.rand(1, 1000, 2, device="cuda", generator=gen) * torch.tensor(
        [image[1], image[0]], device="cuda"
    )
    rois = torch.cat([xy, xy + wh], -1)
    for size in (7, 14):
        attrs = MultiLevelRoiAlignAttrs(size, size, 2)
        pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], size, 2)
        for dtype in (torch.float32, torch.float16):
            feats = [
                torch.randn(1, 256, image[0] // 2**k, image[1] // 2**k, device="cuda", dtype=dtype)
                for k in (2, 3, 4, 5)
            ]
            x = {str(i): f for i, f in enumerate(feats)}
            ours = median_ms(functools.partial(multilevel_roi_align_cuda, rois, feats, attrs), iters, warmup)
            theirs = median_ms(functools.partial(pooler, x, [rois[0].to(dtype)], [image]), iters, warmup)
            name = "fp32" if dtype == torch.float32 else "fp16"
            print(
                f"roi_align {size:2d}x{size:<2d} {name}  1000 rois 256 ch 4 levels: "
                f"mrd {ours:7.3f} ms  torchvision {theirs:7.3f} ms  speed-up x{theirs / ours:5.2f}"
            )


def torchvision_postprocess(boxes, scores, thresh: float) -> object:
    """torchvision's RoIHeads.postprocess_detections from the score filter on (one image, background 0)."""
    import torch
    from torchvision.ops import batched_nms, remove_small_boxes

    num_boxes, num_classes = scores.shape[1:]
    b, s = boxes[0, :, 1:].reshape(-1, 4), scores[0, :, 1:].reshape(-1)
    labels = torch.arange(1, num_classes, device=scores.device).repeat(num_boxes)
    keep = torch.where(s > thresh)[0]
    b, s, labels = b[keep], s[keep], labels[keep]
    keep = remove_small_boxes(b, 0.01)
    b, s, labels = b[keep], s[keep], labels[keep]
    return batched_nms(b, s, labels, 0.5)[:100]


def bench_nms(iters: int, warmup: int) -> None:
    import torch

    num_classes = 81  # 80 classes + background, as Mask R-CNN's box head produces them
    for candidates in (4000, 8000, 20000):
        num_boxes = 1000
        gen = torch.Generator(device="cuda").manual_seed(candidates)
        xy = torch.rand(1, num_boxes, num_classes, 2, device="cuda", generator=gen) * 1000
        wh = torch.rand(1, num_boxes, num_classes, 2, device="cuda", generator=gen) * 200 + 4
        boxes = torch.cat([xy, xy + wh], -1)
        scores = torch.rand(1, num_boxes, num_classes, device="cuda", generator=gen)
        # the score threshold that leaves `candidates` (box, class) pairs in NMS
        thresh = float(
            torch.kthvalue(scores[0, :, 1:].flatten(), scores[0, :, 1:].numel() - candidates).values
        )
        attrs = BatchedNmsAttrs(score_threshold=thresh, background_class=0, keep_top_k=100)
        lib = load_kernel_library()
        ws = torch.empty(
            lib.mrd_cuda_batched_nms_workspace_size(1, num_boxes, num_classes, 100),
            dtype=torch.uint8,
            device="cuda",
        )

        for dtype in (torch.float32, torch.float16):
            bx, sc = boxes.to(dtype), scores.to(dtype)
            ours = median_ms(functools.partial(batched_nms_cuda, bx, sc, attrs, ws), iters, warmup)
            theirs = median_ms(
                functools.partial(torchvision_postprocess, boxes, scores, thresh), iters, warmup
            )
            name = "fp32" if dtype == torch.float32 else "fp16"
            print(
                f"batched_nms {candidates:5d} candidates 80 classes {name}: "
                f"mrd {ours:7.3f} ms  torchvision(fp32) {theirs:7.3f} ms  speed-up x{theirs / ours:5.2f}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("bench_plugins needs torch with CUDA (pip install torch torchvision)", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("bench_plugins needs an NVIDIA GPU: torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    try:
        ensure_built(KERNEL_LIBRARY)
    except (PluginLibraryNotFound, BuildToolMissing, RuntimeError) as e:
        print(f"libmrd_kernels is not available: {e}", file=sys.stderr)
        return 2
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    bench_roi_align(args.iters, args.warmup)
    bench_nms(args.iters, args.warmup)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
