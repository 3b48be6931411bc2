"""``python -m runtime.evaluate``: the command line over :mod:`runtime.evaluate.measure` and :mod:`runtime.evaluate.render`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from runtime.cli_common import add_backend_arguments, add_progress_argument, cli_main, user_errors
from runtime.datasets import resolve_dataset
from runtime.evaluate.measure import EvaluationError, EvaluationReport, evaluate_models_against_reference
from runtime.evaluate.render import format_report, plot_precision_recall, save_disagreements
from runtime.predictor import Predictor


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runtime.evaluate",
        description="COCO AP of a model (.onnx, .xml, .engine, .pth) and its difference to the PyTorch reference.",
    )
    p.add_argument(
        "--model",
        required=True,
        action="append",
        help="the model to check; repeat it to check several exports of one checkpoint against one reference run "
        "(then --json/--plot/--disagreements need {model} in their names, the model file's stem)",
    )
    p.add_argument("--reference", required=True, help="the PyTorch weights it came from (.pth)")
    add_backend_arguments(p, backend_help="backend for every --model (default: from each file's extension)")
    data = p.add_argument_group("data (a catalog name, or explicit files)")
    data.add_argument("--dataset", help="data set name from the trainer's catalog, e.g. shapes_val")
    data.add_argument(
        "--datasets-root", default="datasets", help="root of catalog data sets (default: datasets)"
    )
    data.add_argument("--annotations", help="COCO annotation JSON")
    data.add_argument("--images", help="folder holding the annotation file's images")
    p.add_argument("--max-images", type=int, help="evaluate only the first N images")
    p.add_argument(
        "--max-ap-drop", type=float, help="exit 1 if bbox/segm/keypoint AP drops by more (AP points, 0-100)"
    )
    p.add_argument(
        "--config-file",
        help="config of every .pth --model: needed for plain state dicts; overrides their own",
    )
    p.add_argument("--reference-config-file", help="config of --reference when it is a plain state dict")
    p.add_argument(
        "--iou-threshold", type=float, default=0.5, help="IoU for matching detections (default 0.5)"
    )
    p.add_argument("--coco-backend", default="pycocotools", choices=("pycocotools", "faster_coco_eval"))
    p.add_argument("--json", help="write metrics, deltas and matching to this JSON file")
    p.add_argument("--plot", help="write a precision-recall plot (PNG)")
    p.add_argument(
        "--disagreements", help="write side-by-side pictures of the most different images (PNG/JPG)"
    )
    p.add_argument("--num-disagreements", type=int, default=4)
    p.add_argument("--vis-threshold", type=float, default=0.5, help="score threshold of the pictures")
    add_progress_argument(p)
    return p


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with user_errors():  # EvaluationError and DatasetError are ValueErrors
        spec = resolve_dataset(args.dataset, args.annotations, args.images, args.datasets_root)
        ann_file, img_dir = spec.ann_file, spec.img_dir
        common = {
            "confidence_threshold": 0.0,
            "device": args.device,
            "threads": args.threads,
            "strict_options": False,
        }
        outputs = _output_paths(args, args.model)
        reference = Predictor(
            args.reference, backend="torch", config_file=args.reference_config_file, **common
        )
        models = [
            Predictor(m, backend=args.backend, config_file=args.config_file, **common) for m in args.model
        ]
        reports = evaluate_models_against_reference(
            models, reference, ann_file, img_dir, args.max_images, args.iou_threshold, args.coco_backend,
            args.max_ap_drop, not args.no_progress,
        )  # fmt: skip
    for report, paths in zip(reports, outputs):
        if len(reports) > 1:
            print(f"\n=== {report.model.path} ===")
        print(format_report(report))
        _write_outputs(report, paths, args.num_disagreements, args.vis_threshold)
    failed = [r.model.path for r in reports if r.failures()]
    if len(reports) > 1 and args.max_ap_drop is not None:
        print(
            f"\n{len(reports) - len(failed)} of {len(reports)} models PASSED"
            + (f"; FAILED: {', '.join(failed)}" if failed else "")
        )
    return 1 if failed else 0


_OUTPUT_OPTIONS = ("json", "plot", "disagreements")


def _output_paths(args: argparse.Namespace, models: list[str]) -> list[dict[str, str]]:
    """Each model's output files: ``{model}`` in a name becomes the model file's stem (its name with the
    extension, ``model.onnx`` -> ``model_onnx``, where stems repeat: an export and its engine).

    Checked before any model loads, so a run of several minutes does not end by overwriting one file with
    another model's results.
    """
    for option in _OUTPUT_OPTIONS:
        path = getattr(args, option)
        if path and len(models) > 1 and "{model}" not in path:
            example = Path(path).with_name(Path(path).stem + "_{model}" + Path(path).suffix)
            raise EvaluationError(
                f"--{option} {path}: with {len(models)} models the name needs {{model}} "
                f"(e.g. {example}), or each model overwrites the last"
            )
    names = [Path(m).stem for m in models]
    if len(set(names)) < len(names):
        names = [Path(m).name.replace(".", "_") for m in models]
    if len(set(names)) < len(names) and any(getattr(args, o) for o in _OUTPUT_OPTIONS):
        raise EvaluationError(
            f"the models' file names {names} repeat, so {{model}} cannot tell their outputs apart; give them "
            f"different names"
        )
    return [
        {o: getattr(args, o).replace("{model}", name) for o in _OUTPUT_OPTIONS if getattr(args, o)}
        for name in names
    ]


def _write_outputs(report: EvaluationReport, paths: dict[str, str], count: int, threshold: float) -> None:
    if "json" in paths:
        Path(paths["json"]).write_text(json.dumps(report.to_dict(), indent=2))
        print(f"wrote {paths['json']}")
    if "plot" in paths:
        plot_precision_recall(report, paths["plot"])
        print(f"wrote {paths['plot']}")
    if "disagreements" in paths:
        n = save_disagreements(report, paths["disagreements"], count, threshold)
        print(
            f"wrote {paths['disagreements']} ({n} images)"
            if n
            else "no disagreements to draw: the models agree"
        )
