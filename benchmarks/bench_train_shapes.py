"""Train the embedded default config on the generated shapes data and print wall time and COCO AP.

The issue's target: bbox AP >= 0.70 and segm AP >= 0.65 (AP@[.5:.95], shapes val) within 15 minutes of
training on 2 CPU cores. Run it on an otherwise idle machine:

    python benchmarks/bench_train_shapes.py [--output output/bench_train] [KEY VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from trainer.checkpoint import load_checkpoint_file, load_model_weights
from trainer.config import load_config
from trainer.datasets import build_dataset
from trainer.engine import autocast_dtype, train
from trainer.evaluation import evaluate_model
from trainer.model import build_model

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"bbox": 0.70, "segm": 0.65}
TIME_BUDGET_S = 15 * 60


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default=str(REPO / "configs" / "shapes_mask_rcnn_R_18_FPN.yaml"))
    p.add_argument("--output", default="output/bench_train_shapes")
    p.add_argument("opts", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)

    cfg = load_config(args.config_file, ["OUTPUT_DIR", args.output, *args.opts])
    amp = autocast_dtype(bool(cfg.SOLVER.AMP), torch.device(cfg.MODEL.DEVICE))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"mixed precision: {amp or 'off (float32)'}"
    )
    # generate the data before the clock starts: the budget is for training
    for name in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST):
        build_dataset(name, cfg.DATASETS.ROOT, train=False)
    t0 = time.perf_counter()
    final = train(cfg, resume=False)
    train_s = time.perf_counter() - t0

    model = build_model(cfg, train=False)
    load_model_weights(model, load_checkpoint_file(final)["model"])
    t1 = time.perf_counter()
    result = evaluate_model(model, cfg, build_dataset(cfg.DATASETS.TEST[0], cfg.DATASETS.ROOT, train=False))
    eval_s = time.perf_counter() - t1

    ap = {t: result.metrics[t]["AP"] for t in TARGETS}
    print(
        f"\ntraining: {cfg.SOLVER.MAX_ITER} iterations, {train_s:.0f} s wall ({train_s / 60:.1f} min, "
        f"{train_s / cfg.SOLVER.MAX_ITER:.2f} s/it)"
    )
    print(f"evaluation: {result.num_images} images, {eval_s:.0f} s")
    ok = train_s <= TIME_BUDGET_S
    for t, target in TARGETS.items():
        passed = ap[t] >= target
        ok &= passed
        print(f"{t:5s} AP = {ap[t]:.3f}   (target >= {target:.2f}: {'ok' if passed else 'MISSED'})")
    print(f"time budget {TIME_BUDGET_S / 60:.0f} min: {'ok' if train_s <= TIME_BUDGET_S else 'MISSED'}")
    Path(args.output, "bench_train.json").write_text(
        json.dumps(
            {"train_seconds": train_s, "eval_seconds": eval_s, "AP": ap, "metrics": result.metrics}, indent=2
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
