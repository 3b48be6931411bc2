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
import yaml

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
    for key in ("ops", "initializers", "inputs", "outputs", "opset"):
        assert now[key] == before[key], f"{name}: {key} changed"
    # the config the metadata records may gain keys (with their defaults) as the config grows; the rest is equal
    meta_now, meta_before = dict(now["metadata"]), dict(before["metadata"])
    config_now, config_before = (
        yaml.safe_load(meta_now.pop("config")),
        yaml.safe_load(meta_before.pop("config")),
    )
    assert meta_now == meta_before, f"{name}: metadata changed"
    assert _common_keys(config_now, config_before) == config_before, f"{name}: recorded config changed"
    for b, feeds in enumerate(golden.golden_inputs()):
        outputs = golden.run(exports[name], feeds)
        assert sorted(outputs) == sorted(k.split("/")[2] for k in arrays if k.startswith(f"{name}/{b}/"))
        for key, value in outputs.items():
            expected = arrays[f"{name}/{b}/{key}"]
            assert value.dtype == expected.dtype and value.shape == expected.shape, f"{name}/{b}/{key}"
            np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-4, err_msg=f"{name}/{b}/{key}")


def _common_keys(now: dict, before: dict) -> dict:
    """``now`` restricted to the keys ``before`` has, recursively (keys added since the golden are dropped)."""
    return {
        k: _common_keys(now[k], v) if isinstance(v, dict) and isinstance(now.get(k), dict) else now.get(k)
        for k, v in before.items()
    }
