"""Time host mask pasting (runtime.postprocess.paste_masks) against torchvision's paste_masks_in_image.

Both paste the same 100 random 28x28 masks at random boxes into an 800x1333 image (the R-50-FPN default
output) and are timed alternately in one run, so the printed ratio holds on a noisy machine.

    python benchmarks/bench_paste_masks.py [--masks 100] [--size 800x1333] [--iters 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from runtime.postprocess import paste_masks


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 800x1333, got {text!r}") from None
    return h, w


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--masks", type=int, default=100)
    parser.add_argument("--mask-size", type=int, default=28)
    parser.add_argument("--size", type=_parse_size, default=(800, 1333), help="image HxW")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args(argv)

    try:
        import torch
        from torchvision.models.detection.roi_heads import paste_masks_in_image
    except ImportError:
        parser.error("this benchmark compares against torchvision; install torch and torchvision")
    torch.set_num_threads(args.threads)

    h, w = args.size
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, [w - 10, h - 10], (args.masks, 2))
    wh = rng.uniform(10, [w / 2, h / 2], (args.masks, 2))
    boxes = np.concatenate([xy, np.minimum(xy + wh, [w, h])], 1).astype(np.float32)
    masks = rng.uniform(0, 1, (args.masks, args.mask_size, args.mask_size)).astype(np.float32)
    t_masks, t_boxes = torch.from_numpy(masks)[:, None], torch.from_numpy(boxes)

    def ours() -> None:
        paste_masks(masks, boxes, (h, w))

    def theirs() -> None:
        paste_masks_in_image(t_masks, t_boxes, (h, w))

    ours(), theirs()  # warm-up
    times: dict[str, list[float]] = {"runtime.paste_masks": [], "torchvision paste_masks_in_image": []}
    for _ in range(args.iters):
        for name, fn in zip(times, (ours, theirs)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)

    print(f"{args.masks} masks {args.mask_size}x{args.mask_size} into {h}x{w}, {args.iters} iterations, "
          f"torch {torch.__version__} ({args.threads} threads), numpy {np.__version__}")  # fmt: skip
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    for name, med in medians.items():
        print(f"  {name:34s} median {med * 1e3:8.1f} ms")
    ratio = medians["runtime.paste_masks"] / medians["torchvision paste_masks_in_image"]
    print(f"  ratio ours / torchvision: {ratio:.3f}x")


if __name__ == "__main__":
    main()
