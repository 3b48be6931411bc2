"""The exporter's output is unchanged by refactoring: the same graph, weights, metadata and outputs.

``tests/data/export_golden.npz`` holds what the exporter wrote for a seeded shapes model (``ort``, ``trt``,
FP16 and INT8 variants) when it was made (see ``tests/data/make_export_golden.py``); this test exports the
same model with today's code and compares everything but tensor and node names.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.common import REPO
from tests.data import make_export_golden as golden

GOLDEN = REPO / "tests" / "data" / "export_golden.npz"


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return golden.export_variants(tmp_path_factory.mktemp("golden"))


@pytest.fixture(scope="module")
def stored() -> tuple[dict, dict[str, np.ndarray]]:
    data = np.load(GOLDEN)
    return json.loads(str(data["facts"])), {k: data[k] for k in data.files if k != "facts"}


@pytest.mark.slow
@pytest.mark.parametrize("name", [v[0] for v in golden.VARIANTS])
def test_export_is_unchanged(name: str, exports: dict[str, Path], stored) -> None:
    facts, arrays = stored
    now = golden.describe(exports[name])
    before = facts[name]
    for key in ("ops", "initializers", "inputs", "outputs", "metadata", "opset"):
        assert now[key] == before[key], f"{name}: {key} changed"
    for b, feeds in enumerate(golden.golden_inputs()):
        outputs = golden.run(exports[name], feeds)
        assert sorted(outputs) == sorted(k.split("/")[2] for k in arrays if k.startswith(f"{name}/{b}/"))
        for key, value in outputs.items():
            expected = arrays[f"{name}/{b}/{key}"]
            assert value.dtype == expected.dtype and value.shape == expected.shape, f"{name}/{b}/{key}"
            np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-4, err_msg=f"{name}/{b}/{key}")
