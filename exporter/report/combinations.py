"""Which backend x precision combinations this machine can run, and why it skips the others."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass

BACKENDS: tuple[str, ...] = ("onnxruntime", "openvino", "tensorrt")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
#: the file each combination is exported to, inside the report's models/ folder
SUFFIXES = {"onnxruntime": ".onnx", "openvino": ".xml", "tensorrt": ".engine"}


@dataclass(frozen=True)
class Combination:
    backend: str
    precision: str

    @property
    def name(self) -> str:
        return f"{self.backend} {self.precision}"

    @property
    def file_name(self) -> str:
        return f"{self.backend}_{self.precision}{SUFFIXES[self.backend]}"


def backend_missing(backend: str) -> str | None:
    """Why ``backend`` cannot run here, or None."""
    if backend == "onnxruntime":
        return None if importlib.util.find_spec("onnxruntime") else "onnxruntime is not installed"
    if backend == "openvino":
        if importlib.util.find_spec("openvino") is None:
            return "OpenVINO is not installed (pip install 'maskrcnn-deploy[openvino]')"
        return None
    if backend == "tensorrt":
        from runtime.tensorrt_probe import probe_tensorrt

        return probe_tensorrt()[2]
    return f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}"


def plan_combinations(
    backends: Sequence[str], precisions: Sequence[str]
) -> tuple[list[Combination], dict[Combination, str]]:
    """(the combinations to run, the skipped ones with why), in the order asked."""
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise ValueError(f"unknown precision(s) {', '.join(unknown)}; choose from {', '.join(PRECISIONS)}")
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    run, skipped = [], {}
    for backend in backends:
        why = backend_missing(backend)
        for precision in precisions:
            combo = Combination(backend, precision)
            if why is None:
                run.append(combo)
            else:
                skipped[combo] = why
    return run, skipped
