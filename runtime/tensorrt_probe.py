"""Is TensorRT usable here, and on which GPU? One light probe for the exporter's build and the runtime's backend.

``import tensorrt`` alone proves little: the ``tensorrt-stubs`` wheel installs a bare ``tensorrt/`` folder of
``.pyi`` files that imports as an empty namespace package (no ``__version__``, no ``Runtime``), and the real
package can fail to import for want of its CUDA libraries. Imports nothing heavy at module level: the runtime
stays importable without TensorRT or torch.
"""

from __future__ import annotations

from types import ModuleType

MIN_TENSORRT_MAJOR = 10
_INSTALL = "pip install tensorrt, from NVIDIA's package index"


def find_tensorrt() -> tuple[ModuleType | None, str | None]:
    """(the usable ``tensorrt`` module, None), or (None, what is missing, in words)."""
    try:
        import tensorrt
    except ImportError:
        return None, f"TensorRT's Python package is not installed ({_INSTALL})"
    except OSError as e:  # the real package, without the CUDA / TensorRT shared libraries it loads
        return None, f"TensorRT's Python package is installed but cannot load its libraries: {e}"
    version = getattr(tensorrt, "__version__", None)
    if version is None or not hasattr(tensorrt, "Runtime"):
        return None, f"TensorRT's Python package is not installed (only its type stubs are; {_INSTALL})"
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        return None, f"TensorRT reports an unreadable version {version!r}"
    if major < MIN_TENSORRT_MAJOR:
        return None, f"TensorRT {version} is older than {MIN_TENSORRT_MAJOR}"
    return tensorrt, None


def gpu_facts(device: int = 0) -> tuple[str, str] | None:
    """(GPU name, compute capability such as ``"8.6"``) as PyTorch sees it; None without torch or a GPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return torch.cuda.get_device_name(device), f"{major}.{minor}"


def probe_tensorrt() -> tuple[str | None, tuple[str, str] | None, str | None]:
    """(TensorRT version, (GPU name, compute capability), what is missing or None when both are usable)."""
    module, missing_trt = find_tensorrt()
    gpu = gpu_facts()
    missing = [m for m in (missing_trt,) if m]
    if gpu is None:
        missing.append("no CUDA GPU is visible (no NVIDIA driver, or a CPU-only PyTorch)")
    version = str(module.__version__) if module is not None else None
    return version, gpu, "; ".join(missing) if missing else None
