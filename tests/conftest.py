"""Shared fixtures: a tiny generated shapes data set and the overrides that make a model train in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests run side by side on 2 cores: one thread each keeps them from fighting over the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHAPES_CONFIG = REPO / "configs" / "shapes_mask_rcnn_R_18_FPN.yaml"


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A 12-image train / 4-image val shapes set; values are `ann.json:images` dataset names."""
    from trainer.shapes import generate_shapes_dataset

    root = tmp_path_factory.mktemp("shapes")
    splits = generate_shapes_dataset(root, num_train=12, num_val=4, seed=3, progress=False)
    return {split: f"{ann}:{img}" for split, (ann, img) in splits.items()}


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
