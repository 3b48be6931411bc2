"""``python -m exporter report``: every backend and precision this machine runs, verified, timed and scored.

    python -m exporter report --weights W.pth [--config-file C.yaml] --dataset shapes_val \\
        [--backends onnxruntime,openvino,tensorrt] [--precisions fp32,fp16,int8] [--max-ap-drop 0.5] \\
        --output report/

Writes report/index.html, report.md and report.json (plus plots and the exported models under models/).
A re-run with the same weights, config, images and options reuses the finished rows. Exit status: 0 with a
recommendation, 1 when no combination meets --max-ap-drop, 2 for a user mistake.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from runtime.cli_common import add_progress_argument, cli_main, user_errors


def _names(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m exporter report", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, required=True, help="checkpoint (.pth; ours, maskrcnn-benchmark's or "
                   "detectron2's)")  # fmt: skip
    p.add_argument("--config-file", type=Path, help="its config, where the checkpoint does not carry one")
    p.add_argument("--dataset", default="shapes_val",
                   help="COCO data set to score on: a catalog name or ANNOTATIONS.json:IMAGES (default shapes_val)")  # fmt: skip
    p.add_argument("--datasets-root", type=Path, default=Path("datasets"))
    p.add_argument("--backends", type=_names, default=("onnxruntime", "openvino", "tensorrt"),
                   help="default onnxruntime,openvino,tensorrt (those missing here are listed with why)")  # fmt: skip
    p.add_argument(
        "--precisions", type=_names, default=("fp32", "fp16", "int8"), help="default fp32,fp16,int8"
    )
    p.add_argument("--max-ap-drop", type=float, default=0.5,
                   help="AP points a recommendation may lose against PyTorch, in every IoU type (default 0.5)")  # fmt: skip
    p.add_argument("--max-images", type=int, help="score on the first N images (default: all)")
    p.add_argument("--bench-images", type=int, default=8, help="images timed (default 8)")
    p.add_argument("--batch", type=int, default=4, help="the batch timed beside batch 1 (default 4)")
    p.add_argument("--iters", type=int, default=10, help="timed iterations per batch (default 10)")
    p.add_argument("--threads", type=int, help="threads per model (default: the backend's)")
    p.add_argument("--verify-images", type=int, default=6,
                   help="the first N scored images verify each export against PyTorch (default 6)")  # fmt: skip
    p.add_argument(
        "--calib-dataset", help="INT8 calibration data set (default: the *_train split of a *_val one)"
    )
    p.add_argument("--calib-images", type=Path, help="INT8 calibration image folder")
    p.add_argument("--calib-count", type=int, default=64, help="INT8 calibration images (default 64)")
    p.add_argument("--output", type=Path, required=True, help="the report folder (made; reused on a re-run)")
    p.add_argument("opts", nargs="*", default=[], help="KEY VALUE config overrides")
    add_progress_argument(p)
    return p


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    from exporter.report.measure import ReportOptions, build_report
    from exporter.report.render import format_text, write_report

    args = build_parser().parse_args(argv)
    for name in ("max_images", "bench_images", "batch", "iters", "verify_images", "calib_count"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1, got {value}", file=sys.stderr)
            return 2
    if args.max_ap_drop < 0:
        print(f"error: --max-ap-drop must be >= 0, got {args.max_ap_drop}", file=sys.stderr)
        return 2
    if args.output.exists() and not args.output.is_dir():
        print(f"error: --output {args.output} is a file; give a folder", file=sys.stderr)
        return 2
    if args.output.is_dir() and any(args.output.iterdir()) and not (args.output / "rows").is_dir():
        print(f"error: --output {args.output} holds files that are not a report's; give a new or empty folder, or "
              f"a report folder to update", file=sys.stderr)  # fmt: skip
        return 2
    from calibration.errors import CalibrationError
    from exporter.errors import ExportError

    with user_errors(ExportError, CalibrationError):
        if not args.weights.is_file():
            raise FileNotFoundError(f"--weights {args.weights}: no such file")
        options = ReportOptions(
            weights=args.weights, output=args.output, dataset=args.dataset, config_file=args.config_file,
            opts=tuple(args.opts), backends=args.backends, precisions=args.precisions,
            max_ap_drop=args.max_ap_drop, max_images=args.max_images, bench_images=args.bench_images,
            batch=args.batch, iters=args.iters, threads=args.threads, verify_images=args.verify_images,
            calib_dataset=args.calib_dataset, calib_images=args.calib_images, calib_count=args.calib_count,
            datasets_root=args.datasets_root, progress=not args.no_progress,
        )  # fmt: skip
        report = build_report(options)
        written = write_report(report, args.output)
    print(format_text(report))
    print(f"wrote {', '.join(str(p) for p in written[:3])} (+{len(written) - 3} pictures)")
    return 0 if report.recommendation else 1
