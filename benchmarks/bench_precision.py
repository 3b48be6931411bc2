"""Accuracy and CPU speed of each precision of one model: FP32, mixed FP16 and INT8 Q/DQ ONNX, same run.

Every variant runs under ONNX Runtime on the CPU over the same validation images; COCO bbox/segm AP comes
from ``runtime.coco_eval`` (through ``runtime.evaluate``'s record types), latency from ``runtime.bench``
(models alternated each iteration, so the ratios hold on a busy machine). Variants are named
``fp16:KEEP`` and ``int8:METHOD:KEEP[:ACTIVATIONS]`` where KEEP says what stays FP32 (see ``exporter.precision_fp16``
and ``exporter.quantize_int8``); this is how their defaults were chosen.

    python benchmarks/bench_precision.py --weights output/shapes/model_final.pth \
        --config-file configs/shapes_mask_rcnn_R_18_FPN.yaml --out-dir output/precision \
        --calib-dataset shapes_train --calib-count 64 --dataset shapes_val \
        --variants fp16:none fp16:head_outputs int8:minmax:head_outputs int8:entropy:head_outputs

Measured (shapes Mask R-CNN R-18-FPN, 400 AdamW iterations, shapes_val 200 images, 64 calibration images
from shapes_train, ORT 1.32 CPU, 2 threads, AMD EPYC 2 cores):

    model                                    bbox AP   dAP   segm AP   dAP   end-to-end p50   ratio
    fp32                                       19.48            20.85             276.9 ms   1.00x
    fp16:none                                  19.47  -0.01     20.85  -0.00      280.4 ms   1.01x
    int8:minmax:head_outputs (uint8, ort)      19.62  +0.15     21.05  +0.20      134.1 ms   0.48x
    int8:minmax:none                           18.95  -0.53     20.17  -0.68      132.1 ms   0.48x
    int8:minmax:head_outputs:int8-symmetric    19.51  +0.03     20.92  +0.07      238.4 ms   0.86x

On the 100 first images of a 200-iteration checkpoint (AP 8.5): entropy -0.26/-0.35, percentile +0.30/+0.29,
minmax -0.01/-0.01 (all head_outputs); fp16 head_outputs the same as fp16 none. Hence the defaults: FP16
converts the whole dense region; INT8 keeps the heads' last layers FP32 (quantizing them costs 0.5-0.7 AP)
and calibrates with min-max. FP16 is no faster on the CPU (ORT computes most FP16 ops in FP32 there); it
is for TensorRT. The symmetric INT8 scheme (TensorRT's) is accurate but ORT's x86 kernels do not fuse it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from calibration.image_source import calibration_images
from exporter.precision_fp16 import convert_fp16
from exporter.quantize_int8 import quantize_int8
from runtime.bench import BenchSettings, format_report, load_images, run_benchmark
from runtime.coco_eval import evaluate_coco_detailed
from runtime.datasets import load_coco_annotations, resolve_dataset
from runtime.evaluate import ImageRecord, LazyDetections, ModelOutputs
from runtime.image_io import read_image
from runtime.predictor import Predictor


def make_variant(spec: str, fp32: Path, out_dir: Path, args: argparse.Namespace) -> Path:
    parts = spec.split(":")
    if parts[0] == "fp16" and len(parts) == 2:
        out = out_dir / f"model_fp16_{parts[1]}.onnx"
        print(convert_fp16(fp32, out, keep_fp32=parts[1]).summary())
        return out
    if parts[0] == "int8" and len(parts) in (3, 4):
        method, keep = parts[1], parts[2]
        activations = parts[3] if len(parts) == 4 else None
        out = out_dir / f"model_int8_{method}_{keep}{'_' + activations if activations else ''}.onnx"
        images = calibration_images(args.calib_images, args.calib_dataset, args.calib_count, args.seed)
        cache = out_dir / f"calibration_{method}.json"
        result = quantize_int8(fp32, out, images, method, keep, activations, cache_path=cache)
        print(result.summary())
        return out
    raise SystemExit(f"bad variant {spec!r}: expected fp16:KEEP or int8:METHOD:KEEP[:ACTIVATIONS]")


def evaluate(models: dict[str, Path], ann_file: Path, img_dir: Path, max_images: int | None) -> dict:
    """COCO AP of every model on the same images (each image decoded once, every model run on it)."""
    dataset = load_coco_annotations(ann_file)
    infos = sorted(dataset["images"], key=lambda im: int(im["id"]))[:max_images]
    predictors = {name: Predictor(path, backend="onnxruntime") for name, path in models.items()}
    outputs = {name: ModelOutputs(name, str(path), "onnxruntime") for name, path in models.items()}
    records: dict[str, dict[int, ImageRecord]] = {name: {} for name in models}
    for info in tqdm(infos, desc="evaluate", unit="img"):
        path = img_dir / info["file_name"]
        image = read_image(path)
        image_id = int(info["id"])
        for name, predictor in predictors.items():
            out = predictor.run([image], paste_masks=False)
            outputs[name].raws[image_id] = out.raw[0]
            resized = tuple(int(v) for v in out.batch.image_sizes[0])
            records[name][image_id] = ImageRecord(image_id, path, resized, image.shape[:2])  # type: ignore[arg-type]
    iou_types = ["bbox", "segm"]
    return {
        name: {
            t: r.metrics
            for t, r in evaluate_coco_detailed(
                dataset, LazyDetections(outputs[name], records[name]), iou_types
            ).items()
        }
        for name in models
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--onnx", type=Path, help="the FP32 ONNX (else exported from --weights)")
    parser.add_argument("--weights")
    parser.add_argument("--config-file")
    parser.add_argument("--out-dir", type=Path, default=Path("output/precision"))
    parser.add_argument("--variants", nargs="+", default=["fp16:none", "int8:minmax:head_outputs"])
    parser.add_argument("--calib-images")
    parser.add_argument("--calib-dataset")
    parser.add_argument("--calib-count", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", default="shapes_val")
    parser.add_argument("--max-images", type=int)
    parser.add_argument("--bench-images", type=int, default=8)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = args.onnx
    if fp32 is None:
        from exporter.onnx_export import export_onnx

        fp32 = args.out_dir / "model_fp32.onnx"
        export_onnx(args.weights, fp32, args.config_file)
    models = {"fp32": fp32}
    for spec in args.variants:
        models[spec] = make_variant(spec, fp32, args.out_dir, args)
    spec = resolve_dataset(args.dataset)
    ann_file, img_dir = spec.ann_file, spec.img_dir
    report: dict = {"models": {k: str(v) for k, v in models.items()}}
    if not args.skip_eval:
        metrics = evaluate(models, ann_file, img_dir, args.max_images)
        report["metrics"] = metrics
        print(f"\nCOCO AP on {args.dataset} ({args.max_images or 'all'} images), ONNX Runtime CPU")
        print(f"{'model':34s} {'bbox AP':>8s} {'dAP':>6s} {'segm AP':>8s} {'dAP':>6s}")
        for name, m in metrics.items():
            b, s = 100 * m["bbox"]["AP"], 100 * m["segm"]["AP"]
            db, ds = b - 100 * metrics["fp32"]["bbox"]["AP"], s - 100 * metrics["fp32"]["segm"]["AP"]
            print(f"{name:34s} {b:8.2f} {db:+6.2f} {s:8.2f} {ds:+6.2f}")
    images = load_images(img_dir, limit=args.bench_images)
    bench = run_benchmark(
        list(models.values()), images, BenchSettings(iters=args.iters, threads=args.threads)
    )
    print(format_report(bench))
    report["latency"] = bench.to_dict()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
