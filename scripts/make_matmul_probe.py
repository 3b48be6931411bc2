"""Write ``runtime/data/matmul_probe.onnx``: one float32 MatMul with symbolic sizes.

``runtime.compute_floor`` times it under ONNX Runtime to measure the machine's matrix-product rate with
the runtime's own dependencies (the deployed runtime has no ``onnx`` package to build it on the fly).
Run it again only if the file must change; ``tests/runtime/test_compute_floor.py`` checks the committed
file is what this script writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper

PROBE = Path(__file__).resolve().parents[1] / "runtime" / "data" / "matmul_probe.onnx"


def probe_model() -> onnx.ModelProto:
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["m", "k"])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["k", "n"])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, ["m", "n"])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul_probe", [a, b], [c])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="maskrcnn-deploy"
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> int:
    PROBE.parent.mkdir(parents=True, exist_ok=True)
    PROBE.write_bytes(probe_model().SerializeToString())
    print(f"wrote {PROBE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
