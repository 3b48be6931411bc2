"""onnxsim on an exported model, failing loudly instead of silently returning the input.

onnxsim reports whether its own check (random inputs through ONNX Runtime before and after) passed; we
skip that check (it cannot run the ``trt`` flavor's custom nodes, and random images make NMS outputs
incomparable) and rely on the exporter's verification against PyTorch instead.
"""

from __future__ import annotations

import onnx

from exporter.errors import ExportError
from exporter.surgery import copy_metadata


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        import onnxsim
    except ImportError:
        raise ExportError("--simplify needs onnxsim: pip install onnxsim") from None
    try:
        simplified, _ = onnxsim.simplify(model, check_n=0, skip_shape_inference=False)
    except Exception as e:  # onnxsim raises RuntimeError/ValueError from its C++ core
        raise ExportError(f"onnxsim failed to simplify the model: {e}; export without --simplify") from None
    copy_metadata(model, simplified)
    return simplified
