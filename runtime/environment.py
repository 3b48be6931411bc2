"""The machine and library versions a measurement was made with, recorded beside every benchmark, evaluation
and report, so that numbers from two machines are never compared unknowingly."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import numpy as np

from runtime.cpu_features import cpu_features


def environment_info() -> dict[str, Any]:
    """Machine and library versions, so numbers from two machines are never compared unknowingly."""
    import cv2
    import onnxruntime

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    for name in ("torch", "torchvision", "tensorrt"):  # only those a model already imported: stay light
        mod = sys.modules.get(name)
        version = getattr(mod, "__version__", None) if mod is not None else None
        if version is not None:  # (a module without one is a stand-in: tensorrt-stubs is not TensorRT)
            versions[name] = str(version)
    cpu = cpu_features()
    return {
        "cpu": cpu.name,
        "cpu_features": list(cpu.features),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "versions": versions,
    }
