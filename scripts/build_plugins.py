"""Build the plugin libraries of ``plugins_cuda/`` with CMake: a development step, kept out of ``runtime``.

    python scripts/build_plugins.py [BUILD_DIR]

The deployed runtime only finds and loads the libraries (:mod:`runtime.plugins.library`); tests, benchmarks
and CI call :func:`ensure_built` to build them once when a checkout has none yet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `runtime` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.plugins.library import (  # noqa: E402
    BUILD_HINT,
    HOST_LIBRARY,
    KERNEL_LIBRARY,
    REPO_ROOT,
    TRT_PLUGIN_LIBRARY,
    TRT_SELF_REGISTERING_LIBRARY,
    PluginLibraryNotFound,
    find_library,
)


class BuildToolMissing(RuntimeError):
    """cmake or a C++ compiler is not installed, so the libraries cannot be built here."""


def _cuda_compiler() -> str | None:
    """nvcc on PATH or in the usual install places; None builds the libraries without CUDA."""
    nvcc = shutil.which("nvcc")
    if nvcc:
        return nvcc
    for candidate in ("/usr/local/cuda/bin/nvcc", "/usr/local/bin/nvcc"):
        if Path(candidate).is_file():
            return candidate
    return None


def _under_repo(build_dir: str | Path) -> Path:
    """``build_dir`` as an absolute path; relative ones are relative to the repository root, not the cwd."""
    build = Path(build_dir)
    return build if build.is_absolute() else REPO_ROOT / build


def build_plugins(
    build_dir: str | Path = "build",
    *,
    cuda: bool = True,
    tensorrt_root: str | Path | None = None,
    tensorrt_include_dir: str | Path | None = None,
    cuda_architectures: str | None = None,
    jobs: int = 2,
    quiet: bool = True,
) -> Path:
    """Configure and build the plugin libraries with CMake; returns the directory holding them.

    Used by tests and CI when nothing is built yet. ``build_dir`` is relative to the repository root.
    ``tensorrt_root`` / ``tensorrt_include_dir`` add the TensorRT plugin libraries (and their C++ test);
    ``cuda_architectures`` overrides CMake's list (e.g. ``"80"`` for a build that only checks code).
    """
    cmake = shutil.which("cmake")
    if cmake is None:
        raise BuildToolMissing(f"cmake is not installed; install it, then run `{BUILD_HINT}`")
    if not any(shutil.which(cxx) for cxx in (os.environ.get("CXX", "c++"), "c++", "g++", "clang++")):
        raise BuildToolMissing(f"no C++ compiler found; install one, then run `{BUILD_HINT}`")
    build = _under_repo(build_dir)
    configure = [cmake, "-S", str(REPO_ROOT), "-B", str(build)]
    if shutil.which("ninja") and not (build / "CMakeCache.txt").exists():
        configure += ["-G", "Ninja"]
    nvcc = _cuda_compiler() if cuda else None
    configure.append(f"-DMRD_WITH_CUDA={'ON' if nvcc else 'OFF'}")
    if nvcc:
        configure.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
    if tensorrt_root is not None:
        configure.append(f"-DTENSORRT_ROOT={tensorrt_root}")
    if tensorrt_include_dir is not None:
        configure.append(f"-DTENSORRT_INCLUDE_DIR={tensorrt_include_dir}")
    if cuda_architectures is not None and nvcc:
        configure.append(f"-DCMAKE_CUDA_ARCHITECTURES={cuda_architectures}")
    for cmd in (configure, [cmake, "--build", str(build), "-j", str(jobs)]):
        result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=quiet, text=True)
        if result.returncode != 0:
            log = (result.stdout or "") + (result.stderr or "") if quiet else ""
            raise RuntimeError(f"plugin build failed: {' '.join(cmd)}\n{log[-4000:]}")
    return build / "plugins_cuda"


def ensure_built(name: str = HOST_LIBRARY, build_dir: str | Path = "build") -> Path:
    """Path of library ``name``, building all libraries into ``build_dir`` first if it is missing.

    Concurrent callers (pytest-xdist workers) build once: the build runs under a lock file.
    """
    try:
        return find_library(name)
    except PluginLibraryNotFound:
        pass
    import fcntl

    build = _under_repo(build_dir)
    build.mkdir(parents=True, exist_ok=True)
    with open(build / ".mrd-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return find_library(name)
        except PluginLibraryNotFound:
            build_plugins(build)
    return find_library(name)


def main(argv: Sequence[str] | None = None) -> int:
    """``python scripts/build_plugins.py [BUILD_DIR]``: build the libraries and print where they are."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = build_plugins(args[0] if args else "build", quiet=False)
    for name in (HOST_LIBRARY, KERNEL_LIBRARY, TRT_PLUGIN_LIBRARY, TRT_SELF_REGISTERING_LIBRARY):
        path = out / name
        print(f"{name}: {path if path.is_file() else 'not built'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
