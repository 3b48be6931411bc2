"""``python -m trainer {train,eval,make-shapes}``: thin argparse layer over the library functions."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .config import ConfigError
from .foreign import SOURCES, load_any_config


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config-file",
        required=True,
        help="YAML config (see configs/), or a maskrcnn-benchmark / detectron2 config as that project wrote it",
    )
    p.add_argument("--source", choices=SOURCES, default=None,
                   help="the project that wrote --config-file, where its keys do not tell")  # fmt: skip
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, e.g. SOLVER.MAX_ITER 100")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model; writes OUTPUT_DIR/model_*.pth, resumes automatically")
    _add_config_args(t)
    t.add_argument("--no-resume", action="store_true", help="ignore OUTPUT_DIR/last_checkpoint")
    t.add_argument(
        "--allow-solver-change",
        action="store_true",
        help="resume even though SOLVER.* values differ from the checkpoint's (refused by default)",
    )
    t.add_argument(
        "--skip-class-heads",
        action="store_true",
        help="with MODEL.WEIGHT for another number of classes: load all but the class-specific heads",
    )
    t.add_argument("--skip-test", action="store_true", help="don't evaluate the final model")
    e = sub.add_parser("eval", help="COCO bbox/segm/keypoint AP of a checkpoint on DATASETS.TEST")
    _add_config_args(e)
    e.add_argument("--weights", required=True,
                   help="checkpoint of ours, a plain torchvision state dict, or a maskrcnn-benchmark / detectron2 "
                        "checkpoint (.pth or .pkl) with its config")  # fmt: skip
    e.add_argument("--max-images", type=int, default=None)
    e.add_argument("--json", type=Path, default=None, help="also write the metrics here")
    sub.add_parser("make-shapes", help="generate the embedded shapes data set", add_help=False)
    return parser


def _print_metrics(name: str, result) -> None:  # noqa: ANN001
    from runtime.coco_eval import format_metrics_table

    print(f"\n{name}: {result.num_images} images, {1000 * result.seconds_per_image:.1f} ms/image")
    print(format_metrics_table(result.metrics))


def cmd_train(args: argparse.Namespace) -> int:
    from .engine import train
    from .evaluation import evaluate_model, summarize

    cfg = load_any_config(args.config_file, args.opts, args.source).cfg
    final = train(
        cfg,
        resume=not args.no_resume,
        skip_class_heads=args.skip_class_heads,
        allow_solver_change=args.allow_solver_change,
    )
    print(f"final checkpoint: {final}")
    if not args.skip_test and cfg.DATASETS.TEST:
        from .datasets import build_dataset
        from .engine import init_distributed
        from .loading import load_weights_into, read_weights
        from .model import build_model

        if init_distributed(cfg.MODEL.DEVICE).is_main:
            model = build_model(cfg, train=False)
            load_weights_into(model, cfg, read_weights(final)["model"])
            metrics = {}
            for name in cfg.DATASETS.TEST:
                result = evaluate_model(model, cfg, build_dataset(name, cfg.DATASETS.ROOT, train=False))
                _print_metrics(name, result)
                metrics[name] = summarize(result)
            (Path(cfg.OUTPUT_DIR) / "eval.json").write_text(json.dumps(metrics, indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .datasets import build_dataset
    from .evaluation import evaluate_model, summarize
    from .loading import load_trained_model

    # the model's own class names: an imported COCO model numbers COCO's classes 1..80, not by category id
    loaded = load_trained_model(args.weights, args.config_file, args.opts, args.source)
    cfg, model = loaded.cfg, loaded.model.to(loaded.cfg.MODEL.DEVICE)
    out = {}
    for name in cfg.DATASETS.TEST:
        result = evaluate_model(
            model,
            cfg,
            build_dataset(name, cfg.DATASETS.ROOT, train=False),
            device=cfg.MODEL.DEVICE,
            max_images=args.max_images,
            class_names=loaded.class_names,
        )
        _print_metrics(name, result)
        out[name] = summarize(result)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    if argv and argv[0] == "make-shapes":
        from .shapes import cli_make_shapes

        return cli_make_shapes(argv[1:])
    args = _parser().parse_args(argv)
    from runtime.datasets import DatasetError

    from .checkpoint import CheckpointError

    try:
        return {"train": cmd_train, "eval": cmd_eval}[args.command](args)
    except (ConfigError, CheckpointError, DatasetError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
