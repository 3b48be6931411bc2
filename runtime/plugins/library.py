"""Find and load the plugin libraries that ``plugins_cuda/`` builds (ctypes only; nothing is built here).

- ``libmrd_host.so``: the CPU reference of both ops, from the same ``__host__ __device__`` math as the CUDA
  kernels (:mod:`runtime.plugins.reference` calls it).
- ``libmrd_kernels.so``: the CUDA kernels behind plain C entry points, for ctypes calls on device pointers
  (:mod:`runtime.plugins.cuda` calls it).
- ``libmrd_trt_plugins.so``: the TensorRT plugins; TensorRT loads it by path (:func:`trt_plugin_library_path`).

Building them is a development step, not the deployed runtime's: a missing library raises
:class:`PluginLibraryNotFound` with the command that builds it (``scripts/build_plugins.py`` runs that).
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

from runtime.plugins.abi import FloatPtr, Int32Ptr, NmsParams, RoiAlignParams

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_HINT = "cmake -S . -B build && cmake --build build -j2"

HOST_LIBRARY = "libmrd_host.so"
KERNEL_LIBRARY = "libmrd_kernels.so"
TRT_PLUGIN_LIBRARY = "libmrd_trt_plugins.so"


class PluginLibraryNotFound(FileNotFoundError):
    """A plugin library was not built (or not where ``MRD_PLUGIN_DIR`` / ``build/`` point)."""


class PluginCallError(RuntimeError):
    """A plugin library rejected its arguments; the message is the library's own."""


def search_dirs() -> list[Path]:
    """Where the libraries are looked for, in order: ``$MRD_PLUGIN_DIR`` (os.pathsep list), then the repo's build/."""
    dirs = [Path(d) for d in os.environ.get("MRD_PLUGIN_DIR", "").split(os.pathsep) if d]
    dirs += [REPO_ROOT / "build" / "plugins_cuda", REPO_ROOT / "build"]
    return dirs


def find_library(name: str) -> Path:
    """Path of a built plugin library; :class:`PluginLibraryNotFound` with the build command when absent."""
    for d in search_dirs():
        candidate = d / name
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(d) for d in search_dirs())
    extra = ""
    if name == KERNEL_LIBRARY:
        extra = " It needs the CUDA toolkit (nvcc) at configure time."
    elif name == TRT_PLUGIN_LIBRARY:
        extra = (
            " It needs nvcc and TensorRT headers: add -DTENSORRT_ROOT=<TensorRT dir> to the configure step."
        )
    raise PluginLibraryNotFound(
        f"{name} not found (looked in {looked}). Build it from the repository root with `{BUILD_HINT}`, "
        f"or point MRD_PLUGIN_DIR at the directory holding it.{extra}"
    )


def trt_plugin_library_path() -> Path:
    """The TensorRT plugin library, for ``trtexec --dynamicPlugins`` or ``IPluginRegistry.load_library``."""
    return find_library(TRT_PLUGIN_LIBRARY)


@functools.cache
def load_host_library() -> ctypes.CDLL:
    """``libmrd_host.so`` with its C signatures declared (loaded once per process)."""
    lib = ctypes.CDLL(str(find_library(HOST_LIBRARY)))
    i32 = ctypes.c_int32
    lib.mrd_multilevel_roi_align_f32.argtypes = [
        ctypes.POINTER(RoiAlignParams),
        FloatPtr,
        i32,
        i32,
        i32,
        ctypes.POINTER(FloatPtr),
        Int32Ptr,
        Int32Ptr,
        FloatPtr,
    ]
    lib.mrd_multilevel_roi_align_f32.restype = ctypes.c_int
    lib.mrd_batched_nms_f32.argtypes = [
        ctypes.POINTER(NmsParams),
        FloatPtr,
        FloatPtr,
        i32,
        i32,
        i32,
        i32,
        Int32Ptr,
        FloatPtr,
        FloatPtr,
        Int32Ptr,
        Int32Ptr,
    ]
    lib.mrd_batched_nms_f32.restype = ctypes.c_int
    lib.mrd_last_error.restype = ctypes.c_char_p
    return lib


@functools.cache
def load_kernel_library() -> ctypes.CDLL:
    """``libmrd_kernels.so`` with its C signatures declared; pointers are device addresses (ints)."""
    lib = ctypes.CDLL(str(find_library(KERNEL_LIBRARY)))
    vp = ctypes.c_void_p
    i32 = ctypes.c_int32
    lib.mrd_cuda_multilevel_roi_align.argtypes = [
        i32,
        ctypes.POINTER(RoiAlignParams),
        vp,
        i32,
        i32,
        i32,
        ctypes.POINTER(vp),
        Int32Ptr,
        Int32Ptr,
        vp,
        vp,
    ]
    lib.mrd_cuda_multilevel_roi_align.restype = ctypes.c_int
    lib.mrd_cuda_batched_nms_workspace_size.argtypes = [i32, i32, i32, i32]
    lib.mrd_cuda_batched_nms_workspace_size.restype = ctypes.c_size_t
    lib.mrd_cuda_batched_nms.argtypes = [
        i32,
        ctypes.POINTER(NmsParams),
        vp,
        vp,
        i32,
        i32,
        i32,
        i32,
        vp,
        vp,
        vp,
        vp,
        vp,
        vp,
        ctypes.c_size_t,
        vp,
    ]
    lib.mrd_cuda_batched_nms.restype = ctypes.c_int
    lib.mrd_cuda_last_error.restype = ctypes.c_char_p
    return lib


def check_status(lib: ctypes.CDLL, status: int, error_fn: str = "mrd_last_error") -> None:
    """Raise :class:`PluginCallError` with the library's message when a C call failed."""
    if status != 0:
        message = getattr(lib, error_fn)()
        raise PluginCallError((message or b"unknown error").decode(errors="replace"))
