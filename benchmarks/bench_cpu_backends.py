"""Every CPU backend on one model, end to end, against PyTorch eager and the compute floor, in one run.

What issue 15 measures: R-50-FPN Mask R-CNN at 800 px (torchvision's architecture, seeded random init: 100
detections per image reach the mask head, as a trained model's would with a low threshold), on photos of
several sizes, 2 threads:

    python benchmarks/bench_cpu_backends.py --images tests/data/foreign/images --threads 2 --iters 12

The model is exported once (``--to onnx --simplify``, then ``--to openvino`` from that ONNX, and ``--fp16``
/ ``--int8`` IRs when asked), and ``runtime.bench`` times the .pth under PyTorch, the ONNX under ONNX Runtime
and OpenVINO, and the IRs under OpenVINO, alternately, with each model's FLOPs and the matmul rate measured
in the same run. Give ``--weights``/``--config-file`` to measure a model of your own instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from exporter.onnx_export import export_onnx
from exporter.pipeline import export_openvino
from runtime.bench import (
    BenchSettings,
    format_batch_table,
    format_op_profiles,
    format_report,
    load_images,
    run_benchmark,
)
from trainer.config import load_config
from trainer.model import build_model

REPO = Path(__file__).resolve().parents[1]


def random_r50(path: Path, seed: int) -> Path:
    """A plain torchvision-layout state dict of a seeded random-init R-50-FPN Mask R-CNN (the default config)."""
    torch.manual_seed(seed)
    torch.save(build_model(load_config(None, [])).state_dict(), path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, required=True, help="folder of photos")
    p.add_argument("--weights", type=Path, default=None, help="default: a seeded random-init R-50-FPN")
    p.add_argument("--config-file", type=Path, default=None, help="config of --weights (default R-50-FPN)")
    p.add_argument("--out", type=Path, default=REPO / "output" / "bench_cpu_backends")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", default="1", help="batch sizes, e.g. 1,2,4")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fp16", action="store_true", help="also an IR with FP16 weights")
    p.add_argument(
        "--int8", action="store_true", help="also INT8 (Q/DQ ONNX and its IR), calibrated on --images"
    )
    p.add_argument("--skip-export", action="store_true", help="reuse the files in --out")
    p.add_argument(
        "--profile-ops", type=int, default=0, metavar="N", help="print each model's top N op types"
    )
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.weights or args.out / "r50_random.pth"
    onnx_path, xml = args.out / "model.onnx", args.out / "ir" / "model.xml"
    xml.parent.mkdir(exist_ok=True)
    if not args.skip_export:
        if args.weights is None:
            random_r50(weights, args.seed)
        print(
            export_onnx(weights, onnx_path, config_file=args.config_file, simplify=True).summary(), flush=True
        )
        export_openvino(xml, onnx_model=onnx_path)
        if args.fp16:
            export_openvino(args.out / "ir" / "model_fp16.xml", onnx_model=onnx_path, precision="fp16")
        if args.int8:
            from calibration.image_source import calibration_images
            from exporter.pipeline import Int8Options

            images = calibration_images(args.images, None, len(list(args.images.iterdir())))
            export_openvino(args.out / "ir" / "model_int8.xml", onnx_model=onnx_path, precision="int8",
                            calib=Int8Options(images))  # fmt: skip
    models: list[tuple[Path, str]] = [(weights, "torch"), (onnx_path, "onnxruntime"), (onnx_path, "openvino"),
                                      (xml, "openvino")]  # fmt: skip
    if (args.out / "ir" / "model_fp16.xml").is_file() and args.fp16:
        models.append((args.out / "ir" / "model_fp16.xml", "openvino"))
    if args.int8:
        models += [
            (args.out / "ir" / "model_int8.onnx", "onnxruntime"),
            (args.out / "ir" / "model_int8.xml", "openvino"),
        ]
    images = load_images(args.images)
    options = {"config_file": args.config_file} if args.config_file else {}
    reports, matmul = [], None
    for batch in (int(b) for b in args.batch.split(",")):
        settings = BenchSettings(batch=batch, warmup=args.warmup, iters=args.iters, threads=args.threads,
                                 profile_ops=args.profile_ops)  # fmt: skip
        report = run_benchmark([m for m, _ in models], images, settings, [b for _, b in models], options,
                               str(args.images), matmul=matmul)  # fmt: skip
        matmul = report.matmul
        reports.append(report)
        print(format_report(report), flush=True)
        print(ratio_lines(report), flush=True)
        if args.profile_ops > 0:
            print("\n" + format_op_profiles(report), flush=True)
    if len(reports) > 1:
        print(format_batch_table(reports))
    (args.out / "bench.json").write_text(json.dumps([r.to_dict() for r in reports], indent=2))
    print(f"wrote {args.out / 'bench.json'}")
    return 0


def ratio_lines(report) -> str:  # type: ignore[no-untyped-def]
    """Each model's end-to-end median against PyTorch's (the first model) and against the floor."""
    lines = []
    for m in report.ok:
        sm = m.summary(report.settings.batch, report.matmul)
        line = f"  {Path(m.path).name} ({m.backend}, {m.precision}): {report.ratio(m):.2f}x PyTorch"
        if "total_to_floor" in sm:
            line += f", {sm['total_to_floor']:.2f}x the floor end to end ({sm['infer_to_floor']:.2f}x network only)"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
