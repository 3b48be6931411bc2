"""Find and load the plugin libraries that ``plugins_cuda/`` builds (ctypes only; nothing is built here).

- ``libmrd_host.so``: the CPU reference of both ops, from the same ``__host__ __device__`` math as the CUDA
  kernels (:mod:`runtime.plugins.reference` calls it).
- ``libmrd_kernels.so``: the CUDA kernels behind plain C entry points, for ctypes calls on device pointers
  (:mod:`runtime.plugins.cuda` calls it).
- ``libmrd_trt_plugins.so``: the TensorRT plugins for ``IPluginRegistry.load_library``, ``trtexec
  --dynamicPlugins`` and plugin libraries serialized into an engine (:func:`trt_plugin_library_path`;
  :func:`register_trt_plugins` loads it into a registry and checks that every creator arrived).
- ``libmrd_trt_plugins_selfregister.so``: the same plugins registering themselves when the library is
  dlopened, for Triton's ``plugins=`` option, ``LD_PRELOAD`` and ``trtexec --staticPlugins``
  (:func:`trt_self_registering_library_path`). Never hand it to ``load_library``.

Building them is a development step, not the deployed runtime's: a missing library raises
:class:`PluginLibraryNotFound` with the command that builds it (``scripts/build_plugins.py`` runs that).
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path
from typing import Any

from runtime.plugins.abi import FloatPtr, Int32Ptr, NmsParams, RoiAlignParams
from runtime.plugins.spec import NMS_OP, PLUGIN_NAMESPACE, PLUGIN_VERSION, ROI_ALIGN_OP

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_HINT = "cmake -S . -B build && cmake --build build -j2"

HOST_LIBRARY = "libmrd_host.so"
KERNEL_LIBRARY = "libmrd_kernels.so"
TRT_PLUGIN_LIBRARY = "libmrd_trt_plugins.so"
TRT_SELF_REGISTERING_LIBRARY = "libmrd_trt_plugins_selfregister.so"
#: (name, version, namespace) of every creator the TensorRT plugin libraries register
TRT_PLUGIN_CREATORS: tuple[tuple[str, str, str], ...] = (
    (ROI_ALIGN_OP, PLUGIN_VERSION, PLUGIN_NAMESPACE),
    (NMS_OP, PLUGIN_VERSION, PLUGIN_NAMESPACE),
)
TRT_BUILD_HINT = (
    "cmake -S . -B build -DTENSORRT_ROOT=<the TensorRT install this Python uses> && cmake --build build -j2"
)


class PluginLibraryNotFound(FileNotFoundError):
    """A plugin library was not built (or not where ``MRD_PLUGIN_DIR`` / ``build/`` point)."""


class PluginCallError(RuntimeError):
    """A plugin library rejected its arguments; the message is the library's own."""


class PluginRegistrationError(RuntimeError):
    """TensorRT did not load the plugin library, or not every creator of ours is in its registry afterwards."""


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
    elif name in (TRT_PLUGIN_LIBRARY, TRT_SELF_REGISTERING_LIBRARY):
        extra = (
            " It needs nvcc and TensorRT headers: add -DTENSORRT_ROOT=<TensorRT dir> to the configure step."
        )
    raise PluginLibraryNotFound(
        f"{name} not found (looked in {looked}). Build it from the repository root with `{BUILD_HINT}`, "
        f"or point MRD_PLUGIN_DIR at the directory holding it.{extra}"
    )


def trt_plugin_library_path() -> Path:
    """The TensorRT plugin library for ``IPluginRegistry.load_library``, ``trtexec --dynamicPlugins`` and
    ``--setPluginsToSerialize``: it exports ``getCreators`` and registers nothing by itself."""
    return find_library(TRT_PLUGIN_LIBRARY)


def trt_self_registering_library_path() -> Path:
    """The self-registering TensorRT plugin library, for loaders that only dlopen: Triton's
    ``--backend-config=tensorrt,plugins=<path>``, ``LD_PRELOAD``, ``trtexec --staticPlugins``."""
    return find_library(TRT_SELF_REGISTERING_LIBRARY)


def _creator_label(name: str, version: str, namespace: str) -> str:
    return f"{name} (version {version!r}, namespace {namespace!r})"


def missing_trt_creators(registry: Any) -> list[str]:
    """Which of our plugin creators ``registry`` (a ``tensorrt.IPluginRegistry``) lacks, as labels."""
    return [
        _creator_label(*creator) for creator in TRT_PLUGIN_CREATORS if registry.get_creator(*creator) is None
    ]


def _why_not_loaded(path: Path) -> str:
    """What is wrong with a library TensorRT's ``load_library`` refused, as far as the file tells."""
    if not path.is_file():
        return f"{path} does not exist"
    # not dlopened here: it would register itself as a side effect
    if path.name == TRT_SELF_REGISTERING_LIBRARY:
        return (
            f"{path.name} is the self-registering library (for dlopen, LD_PRELOAD, Triton); load_library needs "
            f"{TRT_PLUGIN_LIBRARY}, which exports getCreators"
        )
    try:
        lib = ctypes.CDLL(str(path), mode=getattr(os, "RTLD_LOCAL", 0))
    except OSError as e:
        return f"it cannot be loaded: {e}"
    if not hasattr(lib, "getCreators"):
        return f"it exports no getCreators, so it is no library for load_library (use {TRT_PLUGIN_LIBRARY})"
    return (
        "it loads and exports getCreators, so TensorRT refused it: a plugin of the same name is registered "
        "already, or it was built against the headers of another TensorRT major version (TensorRT's log says "
        "which)"
    )


def register_trt_plugins(registry: Any, library: str | os.PathLike[str] | None = None) -> Any:
    """Load our plugin library (default: the built ``libmrd_trt_plugins.so``) into a TensorRT plugin registry.

    ``registry`` is ``trt.get_plugin_registry()`` or ``builder.get_plugin_registry()``. TensorRT's
    ``load_library`` returns None instead of raising when it fails, and refuses a library whose plugins are
    registered already; so this checks the result and then that every creator of
    :data:`TRT_PLUGIN_CREATORS` is in the registry. Returns the library handle, or None when our creators were
    registered already (an earlier call in this process, or the self-registering library). Raises
    :class:`PluginRegistrationError` naming the library, the missing plugins and what to do, and
    :class:`PluginLibraryNotFound` when no library is given and none is built.
    """
    missing = missing_trt_creators(registry)
    if not missing:
        return None
    path = Path(library) if library is not None else trt_plugin_library_path()
    what_to_do = (
        f"Build the plugin libraries against this TensorRT (`{TRT_BUILD_HINT}`) and pass "
        f"build/plugins_cuda/{TRT_PLUGIN_LIBRARY}"
    )
    if len(missing) < len(TRT_PLUGIN_CREATORS):
        present = [_creator_label(*c) for c in TRT_PLUGIN_CREATORS if _creator_label(*c) not in missing]
        raise PluginRegistrationError(
            f"cannot load the TensorRT plugin library {path}: TensorRT's registry has {', '.join(present)} "
            f"already (from another library) but not {', '.join(missing)}, and load_library refuses a library "
            f"whose plugins are registered. Load only one build of the plugin library per process. {what_to_do}."
        )
    try:
        handle = registry.load_library(str(path))
    except Exception as e:  # the binding raises a plain RuntimeError/TypeError for some dlopen failures
        raise PluginRegistrationError(
            f"TensorRT cannot load the plugin library {path}: {e}; plugins {', '.join(missing)} are not "
            f"registered. {what_to_do}."
        ) from None
    missing = missing_trt_creators(registry)
    if handle is None:
        raise PluginRegistrationError(
            f"TensorRT could not load the plugin library {path} (IPluginRegistry.load_library returned None): "
            f"{_why_not_loaded(path)}. Plugins {', '.join(missing) or 'of this library'} are not registered. "
            f"{what_to_do}."
        )
    if missing:
        raise PluginRegistrationError(
            f"TensorRT loaded the plugin library {path}, but its registry has no {', '.join(missing)}: the "
            f"library was built from other sources than runtime/plugins/spec.py describes. Rebuild it from this "
            f"checkout (`{TRT_BUILD_HINT}`)."
        )
    return handle


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
    if hasattr(lib, "mrd_cuda_batched_nms_query_workspace"):  # not in libraries built before it existed
        query = lib.mrd_cuda_batched_nms_query_workspace
        query.argtypes = [i32, i32, i32, i32, ctypes.POINTER(ctypes.c_size_t)]
        query.restype = ctypes.c_int
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
