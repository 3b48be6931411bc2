"""The ``trtexec`` command line equivalent to a ``build_engine`` call.

Printed where TensorRT's Python package or a GPU is missing, so the engine can be built on the target
machine with NVIDIA's own tool; kept in one place so it never drifts from what ``build_engine`` does.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

Shape = Sequence[int]


def shapes_arg(shapes: Mapping[str, Shape]) -> str:
    """``{"images": (1, 3, 32, 32)}`` -> ``images:1x3x32x32`` (trtexec's --minShapes syntax)."""
    return ",".join(f"{name}:{'x'.join(str(int(d)) for d in dims)}" for name, dims in shapes.items())


def trtexec_command(
    onnx_path: str | Path,
    engine_path: str | Path,
    min_shapes: Mapping[str, Shape] | None = None,
    opt_shapes: Mapping[str, Shape] | None = None,
    max_shapes: Mapping[str, Shape] | None = None,
    plugin_library: str | Path | None = None,
    timing_cache: str | Path | None = None,
    workspace_mib: int | None = None,
) -> list[str]:
    """Arguments of the equivalent ``trtexec`` run (strongly typed: precision comes from the ONNX)."""
    cmd = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}", "--stronglyTyped"]
    if min_shapes and opt_shapes and max_shapes:
        cmd += [
            f"--minShapes={shapes_arg(min_shapes)}",
            f"--optShapes={shapes_arg(opt_shapes)}",
            f"--maxShapes={shapes_arg(max_shapes)}",
        ]
    if plugin_library is not None:
        cmd.append(f"--dynamicPlugins={plugin_library}")
    if timing_cache is not None:
        cmd.append(f"--timingCacheFile={timing_cache}")
    if workspace_mib is not None:
        cmd.append(f"--memPoolSize=workspace:{int(workspace_mib)}M")
    return cmd


def format_command(cmd: Sequence[str]) -> str:
    """One line a shell accepts (paths with spaces quoted)."""
    return shlex.join(cmd)
