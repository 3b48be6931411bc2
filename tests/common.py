"""What many tests share: the repository, the shapes config and classes, and fast-training overrides.

A plain module (not conftest): tests import from here, and pytest's fixtures stay in conftest.py.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHAPES_CONFIG = REPO / "configs" / "shapes_mask_rcnn_R_18_FPN.yaml"


def shapes_class_names() -> list[str]:
    """The shapes model's class names, background first (as checkpoints and ONNX metadata store them)."""
    from trainer.shapes import SHAPES_CLASSES

    return ["__background__", *SHAPES_CLASSES]


def tiny_train_opts(tiny_shapes: dict[str, str], output_dir: Path, max_iter: int = 4) -> list[str]:
    """Overrides of the shapes config for a seconds-long run on small images."""
    return [
        "DATASETS.TRAIN", f"('{tiny_shapes['train']}',)",
        "DATASETS.TEST", f"('{tiny_shapes['val']}',)",
        "INPUT.MIN_SIZE_TRAIN", "(128,)",
        "INPUT.MAX_SIZE_TRAIN", "192",
        "INPUT.MIN_SIZE_TEST", "128",
        "INPUT.MAX_SIZE_TEST", "192",
        "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.MAX_ITER", str(max_iter),
        "SOLVER.STEPS", f"({max_iter // 2},)",
        "SOLVER.WARMUP_ITERS", "2",
        "SOLVER.CHECKPOINT_PERIOD", "2",
        "DATALOADER.NUM_WORKERS", "0",
        "OUTPUT_DIR", str(output_dir),
    ]  # fmt: skip
