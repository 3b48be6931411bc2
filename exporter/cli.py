"""``python -m exporter --to onnx ...``: a thin argparse layer over :func:`exporter.onnx_export.export_onnx`.

User mistakes (bad config, weights that don't fit, an unwritable output, a diverged export) print one
``error:`` line and exit non-zero; a traceback means a bug in the exporter.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from exporter.errors import ExportError, VerificationError
from exporter.onnx_export import DEFAULT_OPSET, MIN_OPSET

NOT_YET = "not implemented yet (issue 6)"


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected HxW such as 800x1344, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m exporter",
        description="Export a Mask/Faster R-CNN checkpoint (ours or a torchvision state dict) to a verified ONNX model.",
        epilog="Trailing KEY VALUE pairs override config keys, e.g. TEST.DETECTIONS_PER_IMG 50.",
    )
    p.add_argument("--to", choices=("onnx", "tensorrt"), default="onnx", help="target format")
    p.add_argument("--config-file", type=Path, default=None,
                   help="YAML config; default: the checkpoint's saved config, else torchvision's R-50-FPN")  # fmt: skip
    p.add_argument(
        "--weights", type=Path, required=True, help="our checkpoint or a plain torchvision state dict"
    )
    p.add_argument("--output", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--flavor", default="ort",
                   help="ort: standard ONNX ops only; trt: multi-level ROIAlign and NMS as TensorRT plugin nodes")  # fmt: skip
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    p.add_argument("--simplify", action="store_true", help="run onnxsim on the result")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--dynamic", action="store_true", help="dynamic height and width (the default)")
    shape.add_argument("--static-size", type=_size, default=None, metavar="HxW", help="fixed input size")
    p.add_argument("--batch", type=int, default=None, help="fixed batch size (default: dynamic)")
    check = p.add_mutually_exclusive_group()
    check.add_argument("--verify-images", type=Path, default=None, metavar="DIR",
                       help="verify against PyTorch on these images")  # fmt: skip
    check.add_argument("--verify", type=int, default=None, metavar="N",
                       help="verify against PyTorch on N generated images")  # fmt: skip
    p.add_argument("--fp16", action="store_true", help=f"mixed-precision ONNX ({NOT_YET})")
    p.add_argument("--int8", action="store_true", help=f"INT8 Q/DQ ONNX ({NOT_YET})")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.to == "tensorrt":
        parser.exit(2, f"error: --to tensorrt is {NOT_YET}\n")
    if args.fp16 or args.int8:
        parser.exit(2, f"error: --{'fp16' if args.fp16 else 'int8'} is {NOT_YET}\n")
    from exporter.onnx_export import export_onnx  # deferred: imports torch

    verify = args.verify_images if args.verify_images is not None else args.verify
    try:
        export_onnx(
            weights=args.weights,
            output=args.output,
            config_file=args.config_file,
            opts=args.opts,
            flavor=args.flavor,
            opset=args.opset,
            simplify=args.simplify,
            static_size=args.static_size,
            batch=args.batch,
            verify=verify,
            progress=not args.quiet,
        )
    except (ExportError, VerificationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
