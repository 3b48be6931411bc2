"""GPU benchmark of the plugin kernels against torchvision's CUDA ops at Mask R-CNN sizes.

    python benchmarks/bench_plugins.py [--iters 100] [--warmup 20] [--json results.json]

ROIAlign: 256 channels, 4 FPN levels of an 800x1216 image; 1000 rois at 7x7 (the box head), 100 at 14x14 (the mask
head at test time) and 1000 at 14x14; FP32 and FP16, against MultiScaleRoIAlign. NMS: 4000 to 20000 candidates over
80 classes, against torchvision's post-processing (score filter, remove_small_boxes, batched_nms, top K).
CUDA events, warm-up, medians; prints speed ratios (torchvision's time over ours) and, for each case, how far the
outputs are apart (max |difference| of the pooled features from torchvision's in float32 on the same inputs;
survivors that differ, out of torchvision's), measured before timing. ``--json`` writes all of it
(benchmarks/gpu_check.py reads it).
"""

from __future__ import annotations

import argparse
import functools
import json
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


def bench_roi_align(iters: int, warmup: int) -> list[dict]:
    import torch
    from torchvision.ops import MultiScaleRoIAlign

    image = (800, 1216)
    results = []
    for num_rois, size in ((1000, 7), (100, 14), (1000, 14)):
        gen = torch.Generator(device="cuda").manual_seed(num_rois + size)
        wh = torch.exp(torch.empty(1, num_rois, 2, device="cuda").uniform_(3.0, 6.5, generator=gen))
        xy = torch.rand(1, num_rois, 2, device="cuda", generator=gen) * torch.tensor(
            [image[1], image[0]], device="cuda"
        )
        rois = torch.cat([xy, xy + wh], -1)
        attrs = MultiLevelRoiAlignAttrs(size, size, 2)
        pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], size, 2)
        for dtype in (torch.float32, torch.float16):
            feats = [
                torch.randn(1, 256, image[0] // 2**k, image[1] // 2**k, device="cuda", dtype=dtype)
                for k in (2, 3, 4, 5)
            ]
            x = {str(i): f for i, f in enumerate(feats)}
            ours_fn = functools.partial(multilevel_roi_align_cuda, rois, feats, attrs)
            theirs_fn = functools.partial(pooler, x, [rois[0].to(dtype)], [image])
            # parity against torchvision in float32 on the same inputs (its float16 path rounds the rois and
            # overflows float16 box areas in its level mapping; in a model, autocast runs roi_align in float32)
            x32 = {k: v.float() for k, v in x.items()}
            diff = float((ours_fn().float() - pooler(x32, [rois[0]], [image])).abs().max())
            ours = median_ms(ours_fn, iters, warmup)
            theirs = median_ms(theirs_fn, iters, warmup)
            name = "fp32" if dtype == torch.float32 else "fp16"
            print(
                f"roi_align {num_rois:4d} rois {size:2d}x{size:<2d} {name}  256 ch 4 levels: "
                f"mrd {ours:7.3f} ms  torchvision {theirs:7.3f} ms  speed-up x{theirs / ours:5.2f}  "
                f"max|d| {diff:.1e}"
            )
            results.append(
                {
                    "rois": num_rois,
                    "size": size,
                    "dtype": name,
                    "ours_ms": ours,
                    "torchvision_ms": theirs,
                    "speedup": theirs / ours,
                    "max_abs_diff": diff,
                }
            )
    return results


def torchvision_postprocess(boxes, scores, thresh: float) -> object:
    """torchvision's RoIHeads.postprocess_detections from the score filter on (one image, background 0): the kept
    (box, class) pairs as indices into the flattened [N, C - 1] candidates."""
    import torch
    from torchvision.ops import batched_nms, remove_small_boxes

    num_boxes, num_classes = scores.shape[1:]
    b, s = boxes[0, :, 1:].reshape(-1, 4), scores[0, :, 1:].reshape(-1)
    labels = torch.arange(1, num_classes, device=scores.device).repeat(num_boxes)
    keep = torch.where(s > thresh)[0]
    b, s, labels, flat = b[keep], s[keep], labels[keep], keep
    keep = remove_small_boxes(b, 0.01)
    b, s, labels, flat = b[keep], s[keep], labels[keep], flat[keep]
    return flat[
        batched_nms(b, s, labels, 0.5)[:100]
    ]  # indices into the flattened [N, C - 1] (box, class) pairs


def survivors_differing(ours: tuple, theirs, scores) -> tuple[int, int]:
    """(survivors in one set and not the other, torchvision's survivors) for one image; a survivor is (box, class)."""
    num_classes = scores.shape[2] - 1
    n = int(ours[0][0])
    mine = set(zip(ours[4][0, :n].tolist(), ours[3][0, :n].tolist()))
    tv = {(i // num_classes, i % num_classes + 1) for i in theirs.tolist()}
    return len(mine ^ tv), len(tv)


def bench_nms(iters: int, warmup: int) -> list[dict]:
    import torch

    num_classes = 81  # 80 classes + background, as Mask R-CNN's box head produces them
    results = []
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
            ours_fn = functools.partial(batched_nms_cuda, bx, sc, attrs, ws)
            theirs_fn = functools.partial(torchvision_postprocess, boxes, scores, thresh)
            differ, compared = survivors_differing(ours_fn(), theirs_fn(), scores)
            ours = median_ms(ours_fn, iters, warmup)
            theirs = median_ms(theirs_fn, iters, warmup)
            name = "fp32" if dtype == torch.float32 else "fp16"
            print(
                f"batched_nms {candidates:5d} candidates 80 classes {name}: "
                f"mrd {ours:7.3f} ms  torchvision(fp32) {theirs:7.3f} ms  speed-up x{theirs / ours:5.2f}  "
                f"survivors differing {differ}/{compared}"
            )
            results.append(
                {
                    "candidates": candidates,
                    "classes": num_classes - 1,
                    "dtype": name,
                    "ours_ms": ours,
                    "torchvision_ms": theirs,
                    "speedup": theirs / ours,
                    "survivors_differing": differ,
                    "survivors_compared": compared,
                }
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None, help="write the results here as JSON")
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
    import torchvision

    device = torch.cuda.get_device_name()
    print(f"device: {device}  torch {torch.__version__}  torchvision {torchvision.__version__}")
    results = {
        "device": device,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "iters": args.iters,
        "warmup": args.warmup,
        "roi_align": bench_roi_align(args.iters, args.warmup),
        "nms": bench_nms(args.iters, args.warmup),
    }
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
