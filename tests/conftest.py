"""Shared fixtures: a tiny generated shapes data set (helpers to import live in tests/common.py)."""

from __future__ import annotations

import os

import pytest

# Tests run side by side on 2 cores: one thread each keeps them from fighting over the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A 12-image train / 4-image val shapes set; values are `ann.json:images` dataset names."""
    from trainer.shapes import generate_shapes_dataset

    root = tmp_path_factory.mktemp("shapes")
    splits = generate_shapes_dataset(root, num_train=12, num_val=4, seed=3, progress=False)
    return {split: f"{ann}:{img}" for split, (ann, img) in splits.items()}


@pytest.fixture(scope="session")
def shapes_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """The exporter tests' seeded random-init shapes model (tests/exporter_helpers.py), made once per run."""
    from tests.exporter_helpers import save_shapes_checkpoint

    return save_shapes_checkpoint(tmp_path_factory.mktemp("shapes_ckpt") / "shapes.pth")


@pytest.fixture(scope="session")
def random_shapes_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """The runtime tests' random-init shapes model in our checkpoint format (tests/runtime_fixtures.py)."""
    from tests.runtime_fixtures import save_random_shapes_checkpoint

    return save_random_shapes_checkpoint(tmp_path_factory.mktemp("random_ckpt"))


@pytest.fixture(scope="session")
def random_shapes_onnx(random_shapes_checkpoint, tmp_path_factory: pytest.TempPathFactory):
    """``random_shapes_checkpoint`` exported once (ort flavor), for the tests that run an ONNX model."""
    from exporter.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("random_onnx") / "model.onnx"
    return export_onnx(random_shapes_checkpoint, out, progress=False).path
