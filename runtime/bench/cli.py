"""``python -m runtime.bench``: the command line over :mod:`runtime.bench.measure` and :mod:`runtime.bench.render`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from runtime.bench.measure import BenchReport, BenchSettings, load_images, run_benchmark
from runtime.bench.render import format_batch_table, format_op_profiles, format_report, plot_report
from runtime.cli_common import add_backend_arguments, add_progress_argument, cli_main, user_errors
from runtime.synthetic import images_of_size

#: the synthetic images' shape before resizing: a common camera aspect ratio (4:3)
SYNTHETIC_HW = (480, 640)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runtime.bench",
        description="Time model files (.pth, .onnx, .xml, .engine) end to end, alternating them; print a table.",
    )
    p.add_argument(
        "--model",
        action="append",
        required=True,
        help="model file; repeat to compare (first is the baseline)",
    )
    add_backend_arguments(
        p,
        backend_help="backend override (torch, onnxruntime, openvino, tensorrt, triton); once, or once per --model",
        repeatable_backend=True,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder or glob of images")
    src.add_argument("--synthetic", type=int, metavar="N", help="N generated images (480x640)")
    p.add_argument("--size", type=int, help="short side fed to the models (default: each model's own)")
    p.add_argument("--batch", type=_batch_sizes, default=[1], metavar="N[,N...]",
                   help="images per batch; several (1,2,4) time every batch size and add an images/s table")  # fmt: skip
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.0,
        help="score threshold before mask pasting (default 0: paste every detection)",
    )
    p.add_argument(
        "--config-file",
        help="config of .pth models: needed for plain state dicts; overrides a checkpoint's own",
    )
    p.add_argument("--no-floor", action="store_true",
                   help="skip the compute floor (FLOPs counted per batch, matmul rate measured; CPU only)")  # fmt: skip
    p.add_argument("--profile-ops", type=int, default=0, metavar="N",
                   help="also profile each model's operators (untimed runs, the backend's own profiler) and "
                        "print its N most expensive operator types")  # fmt: skip
    p.add_argument("--json", help="write all timings to this JSON file")
    p.add_argument("--plot", help="write a bar chart (PNG) to this file")
    add_progress_argument(p)
    return p


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    reports: list[BenchReport] = []
    with user_errors():
        images, source = _bench_images(args.synthetic, args.images)
        options = {"config_file": args.config_file} if args.config_file else {}
        matmul = None
        for batch in args.batch:
            settings = BenchSettings(batch=batch, warmup=args.warmup, iters=args.iters, threads=args.threads,
                                     size=args.size, device=args.device,
                                     confidence_threshold=args.confidence_threshold,
                                     floor=not args.no_floor, profile_ops=args.profile_ops)  # fmt: skip
            report = run_benchmark(args.model, images, settings, args.backend, options, source,
                                   not args.no_progress, matmul)  # fmt: skip
            matmul = report.matmul  # one rate for every batch size: they are compared with each other
            reports.append(report)
            print(format_report(report), flush=True)
            if settings.profile_ops > 0:
                print("\n" + format_op_profiles(report), flush=True)
    if len(reports) > 1:
        print("\n" + format_batch_table(reports))
    if args.json:
        data = reports[0].to_dict() if len(reports) == 1 else {"by_batch": [r.to_dict() for r in reports]}
        Path(args.json).write_text(json.dumps(data, indent=2))
        print(f"wrote {args.json}")
    if args.plot:
        for report in reports:
            if report.ok:
                path = Path(args.plot)
                if len(reports) > 1:
                    path = path.with_name(f"{path.stem}_b{report.settings.batch}{path.suffix}")
                plot_report(report, path)
                print(f"wrote {path}")
    return 0 if all(len(r.ok) == len(r.models) for r in reports) else 1


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected batch sizes such as 1 or 1,2,4, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return sizes


def _bench_images(synthetic: int | None, folder: str | None) -> tuple[list[np.ndarray], str]:
    """The images of ``--synthetic N`` or ``--images``, and how the report names their source."""
    if synthetic is None:
        return load_images(str(folder)), str(folder)
    if synthetic < 1:
        raise ValueError("--synthetic needs at least 1 image")
    return images_of_size(synthetic, SYNTHETIC_HW), f"synthetic {SYNTHETIC_HW[0]}x{SYNTHETIC_HW[1]}"
