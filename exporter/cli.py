"""``python -m exporter --to onnx|tensorrt|openvino|triton ...``: a thin argparse layer over the exporter's library.

FP32 ONNX is :func:`exporter.onnx_export.export_onnx`; ``--fp16`` / ``--int8``, ``--to tensorrt``, ``--to
openvino`` (an IR, :mod:`exporter.openvino_export`) and ``--to triton`` (a Triton model repository, :mod:`exporter.triton_repository`) are :mod:`exporter.pipeline`. Exit
codes follow the project's CLIs: 2 for a user mistake (bad option, config, weights, calibration data, an
unwritable output; also TensorRT or a GPU missing, after writing the ONNX and printing the ``trtexec`` line;
not for ``--to triton --backend tensorrt``, whose repository is complete but for the engine, which its README
says how to build), 1 for a model that diverged from PyTorch, each as one ``error:`` line; a traceback means
a bug in the exporter.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from calibration.cache import default_cache_path
from calibration.errors import CalibrationError
from exporter.errors import ExportError, VerificationError
from exporter.onnx_export import DEFAULT_OPSET, MIN_OPSET
from trainer.foreign import SOURCES

#: the --to triton options that are fields of exporter.triton_repository.TritonOptions
TRITON_OPTIONS = ("backend", "model_name", "max_batch_size", "instances", "max_queue_delay_us",
                  "max_queue_size", "queue_timeout_ms", "confidence_threshold", "mask_threshold", "mask_format",
                  "max_image_pixels", "threads")  # fmt: skip


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected HxW such as 800x1344, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _bhw(text: str) -> tuple[int, int, int]:
    from exporter.tensorrt_build import parse_bhw

    try:
        return parse_bhw(text)
    except ExportError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m exporter",
        description="Export a Mask/Faster R-CNN checkpoint (ours or a torchvision state dict) to a verified ONNX "
        "model (FP32, mixed FP16 or INT8 Q/DQ), a TensorRT engine, an OpenVINO IR, or a Triton model repository.",
        epilog="Trailing KEY VALUE pairs override config keys, e.g. TEST.DETECTIONS_PER_IMG 50.",
    )
    p.add_argument(
        "--to", choices=("onnx", "tensorrt", "openvino", "triton"), default="onnx", help="target format"
    )
    p.add_argument("--config-file", type=Path, default=None,
                   help="YAML config, ours or maskrcnn-benchmark's / detectron2's as they wrote it; default: the "
                        "checkpoint's saved config, else torchvision's R-50-FPN")  # fmt: skip
    p.add_argument("--source", choices=SOURCES, default=None,
                   help="the project that wrote --config-file, where its keys do not tell")  # fmt: skip
    source = p.add_mutually_exclusive_group()
    source.add_argument("--weights", type=Path, default=None,
                        help="our checkpoint, a plain torchvision state dict, or a maskrcnn-benchmark / detectron2 "
                             "checkpoint (.pth, or detectron2's model-zoo .pkl) with its --config-file")  # fmt: skip
    source.add_argument("--onnx", type=Path, default=None,
                        help="--to tensorrt/openvino/triton: use this exported ONNX model instead of weights")  # fmt: skip
    p.add_argument(
        "--output",
        type=Path,
        required=True,
        help="the .onnx file (or, --to tensorrt, .engine; --to openvino, .xml; --to triton, the model repository "
        "directory) to write",
    )
    p.add_argument("--flavor", default=None,
                   help="ort: standard ONNX ops only; trt: multi-level ROIAlign and NMS as TensorRT plugin nodes "
                        "(default: ort for --to onnx, trt for --to tensorrt)")  # fmt: skip
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
    precision = p.add_argument_group("precision (the ONNX carries it; TensorRT builds it strongly typed)")
    precision.add_argument(
        "--fp16", action="store_true", help="mixed-precision FP16 ONNX (FP32 inputs/outputs)"
    )
    precision.add_argument("--int8", action="store_true", help="INT8 Q/DQ ONNX calibrated on real images")
    precision.add_argument(
        "--calib-images", type=Path, default=None, metavar="DIR", help="--int8: image folder"
    )
    precision.add_argument("--calib-dataset", default=None, metavar="NAME",
                           help="--int8: a data set name (e.g. shapes_train)")  # fmt: skip
    precision.add_argument("--calib-count", type=int, default=100, metavar="N",
                           help="--int8: number of calibration images (default 100)")  # fmt: skip
    precision.add_argument("--calib-method", default="minmax", choices=("minmax", "entropy", "percentile"),
                           help="--int8: range calibration (default minmax)")  # fmt: skip
    precision.add_argument("--int8-weight-bits", type=int, default=None, choices=(7, 8),
                           help="--int8: the weights' range. 7 (the ort flavor's default): the same integers on "
                                "every x86 CPU; 8 (the trt flavor's): finer, but its u8 x s8 sums saturate on "
                                "CPUs without VNNI (AVX2, AVX-512 without VNNI), where backends warn")  # fmt: skip
    precision.add_argument("--calib-cache", type=Path, default=None, metavar="PATH",
                           help="--int8: ranges reused when the file exists, written after calibrating "
                                "(default: OUTPUT's name + .calib.json beside it)")  # fmt: skip
    plan = p.add_argument_group("precision chosen by accuracy (--fp16/--int8 with --to onnx)")
    plan.add_argument("--max-ap-drop", type=float, default=None, metavar="X",
                      help="keep in FP32 the fewest, most sensitive parts (backbone stages, FPN levels, heads) that "
                           "hold the AP drop on --dataset within X points (sensitivity measured on the calibration "
                           "images); exit 2 with the best plan when none does")  # fmt: skip
    plan.add_argument("--dataset", default=None, metavar="NAME",
                      help="--max-ap-drop: held-out COCO data set (a catalog name or ANNOTATIONS.json:IMAGES), never "
                           "the calibration images")  # fmt: skip
    plan.add_argument("--max-images", type=int, default=None, metavar="N",
                      help="--max-ap-drop: score each plan on the first N held-out images (default: all)")  # fmt: skip
    plan.add_argument("--fp32-parts", default=None, metavar="P1,P2",
                      help="build exactly this plan: these parts FP32, the rest reduced ('' for none); or "
                           "from:MODEL.onnx to rebuild the plan a model records")  # fmt: skip
    trt = p.add_argument_group("--to tensorrt")
    for which in ("min", "opt", "max"):
        trt.add_argument(f"--{which}-shape", type=_bhw, default=None, metavar="BxHxW",
                         help=f"{which} shape of the optimization profile (default: from the model's config)")  # fmt: skip
    trt.add_argument(
        "--workspace", type=int, default=None, metavar="MiB", help="builder workspace limit (2048)"
    )
    trt.add_argument("--timing-cache", type=Path, default=None, metavar="PATH",
                     help="TensorRT timing cache, read if present and written back (faster rebuilds)")  # fmt: skip
    trt.add_argument("--plugin-library", type=Path, default=None, metavar="SO",
                     help="our TensorRT plugin library (default: the built libmrd_trt_plugins.so)")  # fmt: skip
    triton = p.add_argument_group("--to triton (a model repository; defaults in exporter.triton_repository)")
    triton.add_argument("--backend", choices=("python", "onnxruntime", "tensorrt"), default=None,
                        help="the network step: python (ONNX Runtime in the Python backend, runs with the bundled "
                             "server on a CPU; default), onnxruntime, or tensorrt (engine + plugins)")  # fmt: skip
    triton.add_argument("--model-name", default=None, help="the ensemble's name (default maskrcnn)")
    triton.add_argument("--max-batch-size", type=int, default=None, metavar="N", help="default 8")
    triton.add_argument(
        "--instances", type=int, default=None, metavar="N", help="instances of each model (1)"
    )
    triton.add_argument("--no-dynamic-batching", action="store_true", help="run each request on its own")
    triton.add_argument("--max-queue-delay-us", type=int, default=None, metavar="US",
                        help="dynamic batching's queue delay (default 2000)")  # fmt: skip
    triton.add_argument("--max-queue-size", type=int, default=None, metavar="N",
                        help="requests each step queues before it rejects more (default 64)")  # fmt: skip
    triton.add_argument("--queue-timeout-ms", type=int, default=None, metavar="MS",
                        help="a request queued longer is rejected (default 30000; a client may ask for less)")  # fmt: skip
    triton.add_argument("--confidence-threshold", type=float, default=None,
                        help="detections below are not returned (default 0.5)")  # fmt: skip
    triton.add_argument("--mask-threshold", type=float, default=None, help="mask probability cut (0.5)")
    triton.add_argument("--masks", dest="mask_format", choices=("box", "full"), default=None,
                        help="box (default): each mask as the pixels of its region, put back into a full mask by "
                             "the client; full: [N, H, W] as large as the image")  # fmt: skip
    triton.add_argument("--max-image-pixels", type=int, default=None, metavar="N",
                        help="larger images are refused before decoding (default 40000000)")  # fmt: skip
    triton.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime threads per instance (python, onnxruntime; default: its own)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Option combinations argparse can't express; each mistake exits 2 with a usage line."""
    if args.fp16 and args.int8:
        parser.error("--fp16 and --int8 exclude each other: choose one precision")
    if args.to == "onnx" and args.weights is None:
        parser.error(
            "--to onnx needs --weights W.pth"
            + (" (--onnx is for --to tensorrt, openvino and triton)" if args.onnx else "")
        )
    if args.to == "openvino" and args.flavor not in (None, "ort"):
        parser.error(f"--to openvino runs the ort flavor (standard ONNX ops), not --flavor {args.flavor}")
    if args.to in ("tensorrt", "openvino", "triton") and args.weights is None and args.onnx is None:
        parser.error(f"--to {args.to} needs --weights W.pth or --onnx M.onnx")
    calib_given = args.calib_images is not None or args.calib_dataset is not None
    if args.calib_images is not None and args.calib_dataset is not None:
        parser.error("give one calibration source: --calib-images DIR or --calib-dataset NAME")
    if not args.int8 and (calib_given or args.calib_cache is not None) and args.max_ap_drop is None:
        parser.error("--calib-images/--calib-dataset/--calib-cache are for --int8 (and --fp16 --max-ap-drop)")
    if not args.int8 and args.int8_weight_bits is not None:
        parser.error("--int8-weight-bits is for --int8")
    cache = args.calib_cache or default_cache_path(args.output)
    if args.int8 and not calib_given and not cache.is_file():
        parser.error(
            "--int8 needs calibration images: --calib-images DIR or --calib-dataset NAME"
            " (or --calib-cache PATH of ranges computed before for this model)"
        )
    trt_only = [f"--{n.replace('_', '-')}" for n in ("min_shape", "opt_shape", "max_shape", "workspace",
                "timing_cache", "plugin_library") if getattr(args, n) is not None]  # fmt: skip
    if trt_only and not (args.to == "tensorrt" or (args.to == "triton" and args.backend == "tensorrt")):
        parser.error(f"{', '.join(trt_only)}: only with --to tensorrt (or --to triton --backend tensorrt)")
    triton_only = [f"--{n.replace('_', '-')}" for n in TRITON_OPTIONS if getattr(args, n) is not None]
    triton_only += ["--no-dynamic-batching"] if args.no_dynamic_batching else []
    if args.to != "triton" and triton_only:
        parser.error(f"{', '.join(triton_only)}: only with --to triton")
    if args.to == "triton" and args.batch is not None:
        parser.error("--batch: Triton batches requests itself; use --max-batch-size with --to triton")
    plan_options = [f"--{n.replace('_', '-')}" for n in ("max_ap_drop", "dataset", "max_images", "fp32_parts")
                    if getattr(args, n) is not None]  # fmt: skip
    if plan_options and not (args.fp16 or args.int8):
        parser.error(f"{', '.join(plan_options)}: for --fp16 or --int8")
    if plan_options and args.to != "onnx":
        parser.error(f"{', '.join(plan_options)}: with --to onnx; then give the planned model to --to {args.to} "
                     f"as --onnx MODEL.onnx")  # fmt: skip
    if args.max_ap_drop is not None and args.fp32_parts is not None:
        parser.error("--max-ap-drop searches for the FP32 parts; --fp32-parts gives them: choose one")
    if args.max_ap_drop is not None and (args.max_ap_drop < 0 or args.dataset is None):
        parser.error("--max-ap-drop needs a limit >= 0 and the held-out --dataset NAME")
    if (
        args.max_ap_drop is not None
        and args.fp16
        and args.calib_images is None
        and args.calib_dataset is None
    ):
        parser.error("--fp16 --max-ap-drop measures each part on calibration images: --calib-dataset NAME")
    if args.max_ap_drop is None and (args.dataset is not None or args.max_images is not None):
        parser.error("--dataset/--max-images are for --max-ap-drop")
    if args.onnx is not None and (args.verify is not None or args.verify_images is not None):
        parser.error("--verify needs the PyTorch model: give --weights instead of --onnx")


def _fp32_parts(text: str | None, precision: str) -> list[str] | None:
    """``--fp32-parts``: a list of part names, or ``from:MODEL.onnx`` for the plan a model records."""
    if text is None:
        return None
    if not text.startswith("from:"):
        return [p.strip() for p in text.split(",") if p.strip()]

    from exporter.precision_plan import recorded_plan
    from runtime.backends.base import first_line

    source = Path(text[len("from:") :])
    try:
        recorded = recorded_plan(source)
    except Exception as e:  # a missing or foreign file
        raise ExportError(f"--fp32-parts {text}: cannot read {source}: {first_line(str(e))}") from None
    if recorded is None:
        raise ExportError(f"--fp32-parts {text}: {source} records no precision plan")
    if recorded.get("precision") != precision:
        raise ExportError(
            f"--fp32-parts {text}: that plan is for --{recorded.get('precision')}, not --{precision}"
        )
    return list(recorded["fp32_parts"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    from exporter import pipeline  # deferred: imports torch
    from exporter.tensorrt_build import DEFAULT_WORKSPACE_MIB

    precision = "fp16" if args.fp16 else "int8" if args.int8 else "fp32"
    flavor = args.flavor or ("trt" if args.to == "tensorrt" else "ort")  # --to triton: from --backend
    verify = args.verify_images if args.verify_images is not None else args.verify
    try:
        calib = None
        if args.int8 or args.max_ap_drop is not None:
            from calibration.image_source import calibration_images

            images = None  # resolved before minutes of export, so a bad folder fails at once
            if args.calib_images is not None or args.calib_dataset is not None:
                images = calibration_images(args.calib_images, args.calib_dataset, args.calib_count)
            calib = pipeline.Int8Options(
                images=images,
                method=args.calib_method,
                cache=args.calib_cache,
                weight_bits=args.int8_weight_bits,
            )
        options = None
        if args.weights is not None:
            options = pipeline.ExportOptions(
                weights=args.weights,
                config_file=args.config_file,
                opts=args.opts,
                source=args.source,
                opset=args.opset,
                simplify=args.simplify,
                static_size=args.static_size,
                batch=args.batch,
                verify=verify,
                progress=not args.quiet,
            )

        def engine_args() -> dict:
            """What --to tensorrt and --to triton pass the same way (calib as adjusted for the target)."""
            return dict(
                options=options,
                onnx_model=args.onnx,
                precision=precision if options is not None or precision != "fp32" else None,
                calib=calib,
                min_shape=args.min_shape,
                opt_shape=args.opt_shape,
                max_shape=args.max_shape,
                workspace_mib=args.workspace or DEFAULT_WORKSPACE_MIB,
                timing_cache=args.timing_cache,
                plugin_library=args.plugin_library,
                progress=not args.quiet,
            )

        if args.to == "onnx" and args.max_ap_drop is not None:
            assert options is not None and calib is not None
            from exporter.precision_plan import PlanNotFound

            plan = pipeline.PlanOptions(args.max_ap_drop, args.dataset, args.max_images)
            try:
                pipeline.export_planned(options, args.output, precision, plan, calib)
            except PlanNotFound as e:
                print(f"error: {e}", file=sys.stderr)
                print(f"best plan: {e.best.to_json()}", file=sys.stderr)
                return 2
        elif args.to == "onnx":
            assert options is not None
            parts = _fp32_parts(args.fp32_parts, precision)
            pipeline.export_precision(options, args.output, precision, flavor, calib, parts)
        elif args.to == "openvino":
            pipeline.export_openvino(
                args.output,
                options=options,
                onnx_model=args.onnx,
                precision=precision if options is not None or precision != "fp32" else None,
                calib=calib,
                progress=not args.quiet,
            )
        elif args.to == "triton":
            from exporter.triton_repository import TritonOptions

            given = {n: getattr(args, n) for n in TRITON_OPTIONS if getattr(args, n) is not None}
            if calib is not None and calib.cache is None:  # beside the repository, as check_arguments looked
                calib = pipeline.Int8Options(
                    calib.images, calib.method, default_cache_path(args.output), calib.weight_bits
                )
            pipeline.export_triton(
                args.output,
                TritonOptions(**given, dynamic_batching=not args.no_dynamic_batching),
                flavor=args.flavor,
                **engine_args(),
            )
        else:
            pipeline.export_tensorrt(
                engine=args.output,
                flavor=flavor,
                **engine_args(),
            )
    except (ExportError, CalibrationError) as e:  # TensorRTUnavailable too: the ONNX is written by then
        print(f"error: {e}", file=sys.stderr)
        return 2
    except VerificationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
