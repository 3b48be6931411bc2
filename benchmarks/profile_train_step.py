"""Where a training iteration's time goes: per-module forward times, backward and the optimizer step.

Per-iteration cost of the small demo config is dominated by fixed costs (ROI sampling, heads, RPN), not pixels;
this measures it instead of guessing. Each submodule of the detector (backbone body and FPN, RPN head and
proposal selection, the ROI poolers, heads and predictors, the ROI sampler) is wrapped in a profiler label;
the table lists those labels and the top operators, averaged over the profiled iterations.

    python benchmarks/profile_train_step.py [--warmup 5] [--iters 10] [KEY VALUE ...]

Pass ``SOLVER.AMP False`` to profile float32 on a CPU with native bf16.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from trainer.config import load_config
from trainer.engine import _setup, _train_step

REPO = Path(__file__).resolve().parents[1]

# (label, dotted path) of the parts worth timing separately; missing ones (no mask head, ...) are skipped
_PARTS = (
    ("transform", "transform"),
    ("backbone.body", "backbone.body"),
    ("backbone.fpn", "backbone.fpn"),
    ("rpn.head", "rpn.head"),
    ("rpn.anchors", "rpn.anchor_generator"),
    ("rpn (whole)", "rpn"),
    ("roi_heads (whole)", "roi_heads"),
    ("box_roi_pool", "roi_heads.box_roi_pool"),
    ("box_head", "roi_heads.box_head"),
    ("box_predictor", "roi_heads.box_predictor"),
    ("mask_roi_pool", "roi_heads.mask_roi_pool"),
    ("mask_head", "roi_heads.mask_head"),
    ("mask_predictor", "roi_heads.mask_predictor"),
)
# methods (not modules) that do the sampling and the losses
_METHODS = (
    ("rpn.filter_proposals", "rpn", "filter_proposals"),
    ("rpn.assign_targets", "rpn", "assign_targets_to_anchors"),
    ("rpn.sampler+loss", "rpn", "compute_loss"),
    ("roi.select_training_samples", "roi_heads", "select_training_samples"),
)


def _label_modules(model: nn.Module) -> None:
    for label, path in _PARTS:
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        forward = module.forward

        def wrapped(*a, _f=forward, _l=f"[module] {label}", **k):
            with record_function(_l):
                return _f(*a, **k)

        module.forward = wrapped
    for label, path, name in _METHODS:
        owner = model.get_submodule(path)
        method = getattr(owner, name)

        def wrapped_method(*a, _f=method, _l=f"[method] {label}", **k):
            with record_function(_l):
                return _f(*a, **k)

        setattr(owner, name, wrapped_method)


def _batches(loader) -> Iterator:
    while True:
        yield from loader


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default=str(REPO / "configs" / "shapes_mask_rcnn_R_18_FPN.yaml"))
    p.add_argument("--output", default="output/profile_train_step")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--rows", type=int, default=25)
    p.add_argument("opts", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cfg = load_config(args.config_file, ["OUTPUT_DIR", args.output, *args.opts])
    run = _setup(cfg, resume=False, skip_class_heads=False)
    _label_modules(run.model)
    batches = _batches(run.loader)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, autocast: {run.amp_dtype or 'off (float32)'}"
    )
    run.model.train()
    for i in range(args.warmup):
        images, targets = next(batches)
        _train_step(run, images, targets, i)
    data_s = step_s = 0.0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(args.iters):
            t0 = time.perf_counter()
            with record_function("[phase] data"):
                images, targets = next(batches)
            t1 = time.perf_counter()
            with record_function("[phase] step"):
                _train_step(run, images, targets, args.warmup + i)
            t2 = time.perf_counter()
            data_s += t1 - t0
            step_s += t2 - t1
    n = args.iters
    print(
        f"\nper iteration: {(data_s + step_s) / n:.3f} s (waiting for data {data_s / n:.3f} s, step {step_s / n:.3f} s)"
    )
    events = prof.key_averages()
    labelled = [e for e in events if e.key.startswith("[")]
    labelled.sort(key=lambda e: -e.cpu_time_total)
    print(f"\n{'label':42s} {'ms/iter':>9s} {'% of step':>9s}")
    for e in labelled:
        ms = e.cpu_time_total / 1000 / n
        print(f"{e.key:42s} {ms:9.1f} {100 * ms / (1000 * step_s / n):8.1f}%")
    ops = [e for e in events if not e.key.startswith("[") and not e.key.startswith("ProfilerStep")]
    ops.sort(key=lambda e: -e.self_cpu_time_total)
    print(f"\ntop {args.rows} operators by self time\n{'operator':60s} {'ms/iter':>9s} {'calls/iter':>10s}")
    for e in ops[: args.rows]:
        print(f"{e.key[:60]:60s} {e.self_cpu_time_total / 1000 / n:9.1f} {e.count / n:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
