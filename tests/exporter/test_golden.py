"""The exporter's output is unchanged by refactoring: the same graph, weights, metadata and outputs.

``tests/data/export_golden.npz`` holds what the exporter wrote for a seeded shapes model (``ort``, ``trt``,
FP16 and INT8 variants) when it was made (see ``tests/data/make_export_golden.py``, which also derives the
output tolerances); this test exports the same model with today's code and compares everything but tensor
and node names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.data import make_export_golden as golden


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return golden.export_variants(tmp_path_factory.mktemp("golden"))


@pytest.fixture(scope="module")
def stored() -> tuple[dict, dict[str, np.ndarray]]:
    return golden.load()


@pytest.mark.slow
@pytest.mark.parametrize("name", [v[0] for v in golden.VARIANTS])
def test_export_is_unchanged(name: str, exports: dict[str, Path], stored) -> None:
    facts, arrays = stored
    changed = golden.differences(name, exports[name], facts, arrays)
    assert not changed, "\n".join(changed)


@pytest.mark.slow
def test_golden_catches_one_quantization_step(exports: dict[str, Path], stored, tmp_path: Path) -> None:
    """An activation's zero point moved by one step (what a refactor of the Q/DQ placement could do) fails it."""
    model = onnx.load(str(exports["int8"]))
    by_name = {t.name: t for t in model.graph.initializer}
    quantize = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) == 3)
    zero_point = by_name[quantize.input[2]]
    moved = numpy_helper.to_array(zero_point).astype(np.int32) + 1
    zero_point.CopyFrom(numpy_helper.from_array(np.clip(moved, 0, 255).astype(np.uint8), zero_point.name))
    planted = tmp_path / "planted.onnx"
    onnx.save(model, str(planted))
    changed = golden.differences("int8", planted, *stored)
    assert "int8: initializers changed" in changed, changed
