"""Find, build and call the plugin libraries of ``plugins_cuda/`` (numpy + ctypes only).

Three shared libraries come out of ``cmake -S . -B build && cmake --build build -j2``:

- ``libmrd_host.so``: the CPU reference of both custom ops, built from the same ``__host__ __device__`` math as
  the CUDA kernels. :func:`multilevel_roi_align_reference` and :func:`batched_nms_reference` call it; they are
  what runs the ``trt`` ONNX flavor on the CPU (``runtime.ort_custom_ops``) and what CI tests against
  torchvision.
- ``libmrd_kernels.so``: the CUDA kernels behind plain C entry points, for ctypes calls on device pointers.
- ``libmrd_trt_plugins.so``: the TensorRT plugins; TensorRT loads it by path (:func:`trt_plugin_library_path`).

The semantics are written down once, in :mod:`runtime.plugin_ops`.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from runtime.plugin_ops import BatchedNmsAttrs, MultiLevelRoiAlignAttrs

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_HINT = "cmake -S . -B build && cmake --build build -j2"
MAX_LEVELS = 8  # MRD_MAX_LEVELS in plugins_cuda/include/mrd/c_api.h

HOST_LIBRARY = "libmrd_host.so"
KERNEL_LIBRARY = "libmrd_kernels.so"
TRT_PLUGIN_LIBRARY = "libmrd_trt_plugins.so"

MRD_FLOAT32 = 0
MRD_FLOAT16 = 1


class PluginLibraryNotFound(FileNotFoundError):
    """A plugin library was not built (or not where ``MRD_PLUGIN_DIR`` / ``build/`` point)."""


class BuildToolMissing(RuntimeError):
    """cmake or a C++ compiler is not installed, so the libraries cannot be built here."""


class PluginCallError(RuntimeError):
    """A plugin library rejected its arguments; the message is the library's own."""


class RoiAlignParams(ctypes.Structure):
    """ctypes mirror of ``MrdRoiAlignParams`` (c_api.h); field order must match."""

    _fields_ = [
        ("output_height", ctypes.c_int32),
        ("output_width", ctypes.c_int32),
        ("sampling_ratio", ctypes.c_int32),
        ("aligned", ctypes.c_int32),
        ("canonical_box_size", ctypes.c_int32),
        ("canonical_level", ctypes.c_int32),
        ("num_levels", ctypes.c_int32),
        ("spatial_scales", ctypes.c_float * MAX_LEVELS),
    ]


class NmsParams(ctypes.Structure):
    """ctypes mirror of ``MrdNmsParams`` (c_api.h); field order must match."""

    _fields_ = [
        ("score_threshold", ctypes.c_float),
        ("iou_threshold", ctypes.c_float),
        ("min_box_size", ctypes.c_float),
        ("pre_nms_top_k", ctypes.c_int32),
        ("keep_top_k", ctypes.c_int32),
        ("background_class", ctypes.c_int32),
    ]


class NmsOutputs(NamedTuple):
    """The five outputs of ``MRD_BatchedNms``, padded to ``keep_top_k`` (see :mod:`runtime.plugin_ops`)."""

    num_detections: np.ndarray  # [B] int32
    boxes: np.ndarray  # [B, K, 4]
    scores: np.ndarray  # [B, K]
    classes: np.ndarray  # [B, K] int32
    indices: np.ndarray  # [B, K] int32


def roi_align_params(attrs: MultiLevelRoiAlignAttrs) -> RoiAlignParams:
    scales = tuple(float(s) for s in attrs.spatial_scales)
    if not 1 <= len(scales) <= MAX_LEVELS:
        raise ValueError(f"spatial_scales must have 1 to {MAX_LEVELS} entries, got {len(scales)}")
    p = RoiAlignParams(
        output_height=int(attrs.output_height),
        output_width=int(attrs.output_width),
        sampling_ratio=int(attrs.sampling_ratio),
        aligned=int(attrs.aligned),
        canonical_box_size=int(attrs.canonical_box_size),
        canonical_level=int(attrs.canonical_level),
        num_levels=len(scales),
    )
    for i, s in enumerate(scales):
        p.spatial_scales[i] = s
    return p


def nms_params(attrs: BatchedNmsAttrs) -> NmsParams:
    return NmsParams(
        score_threshold=float(attrs.score_threshold),
        iou_threshold=float(attrs.iou_threshold),
        min_box_size=float(attrs.min_box_size),
        pre_nms_top_k=int(attrs.pre_nms_top_k),
        keep_top_k=int(attrs.keep_top_k),
        background_class=int(attrs.background_class),
    )


# ---------------------------------------------------------------------------------------------------------------
# finding and building


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


def _cuda_compiler() -> str | None:
    nvcc = shutil.which("nvcc")
    if nvcc:
        return nvcc
    for candidate in ("/usr/local/cuda/bin/nvcc", "/usr/local/bin/nvcc"):
        if Path(candidate).is_file():
            return candidate
    return None


def build_plugins(
    build_dir: str | Path = "build",
    *,
    cuda: bool = True,
    tensorrt_root: str | Path | None = None,
    jobs: int = 2,
    quiet: bool = True,
) -> Path:
    """Configure and build the plugin libraries with CMake; returns the directory holding them.

    Used by tests and CI when nothing is built yet. ``build_dir`` is relative to the repository root.
    """
    cmake = shutil.which("cmake")
    if cmake is None:
        raise BuildToolMissing(f"cmake is not installed; install it, then run `{BUILD_HINT}`")
    if not any(shutil.which(cxx) for cxx in (os.environ.get("CXX", "c++"), "c++", "g++", "clang++")):
        raise BuildToolMissing(f"no C++ compiler found; install one, then run `{BUILD_HINT}`")
    build = Path(build_dir)
    if not build.is_absolute():
        build = REPO_ROOT / build
    configure = [cmake, "-S", str(REPO_ROOT), "-B", str(build)]
    if shutil.which("ninja") and not (build / "CMakeCache.txt").exists():
        configure += ["-G", "Ninja"]
    nvcc = _cuda_compiler() if cuda else None
    configure.append(f"-DMRD_WITH_CUDA={'ON' if nvcc else 'OFF'}")
    if nvcc:
        configure.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
    if tensorrt_root is not None:
        configure.append(f"-DTENSORRT_ROOT={tensorrt_root}")
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

    build = Path(build_dir) if Path(build_dir).is_absolute() else REPO_ROOT / build_dir
    build.mkdir(parents=True, exist_ok=True)
    with open(build / ".mrd-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return find_library(name)
        except PluginLibraryNotFound:
            build_plugins(build)
    return find_library(name)


# ---------------------------------------------------------------------------------------------------------------
# loading

_P = ctypes.POINTER
_f32p = _P(ctypes.c_float)
_i32p = _P(ctypes.c_int32)


@functools.cache
def load_host_library() -> ctypes.CDLL:
    """``libmrd_host.so`` with its C signatures declared (loaded once per process)."""
    lib = ctypes.CDLL(str(find_library(HOST_LIBRARY)))
    lib.mrd_multilevel_roi_align_f32.argtypes = [
        _P(RoiAlignParams),
        _f32p,
        ctypes.c_int32,
        ctypes.c_int32,
        ctypes.c_int32,
        _P(_f32p),
        _i32p,
        _i32p,
        _f32p,
    ]
    lib.mrd_multilevel_roi_align_f32.restype = ctypes.c_int
    lib.mrd_batched_nms_f32.argtypes = [
        _P(NmsParams),
        _f32p,
        _f32p,
        ctypes.c_int32,
        ctypes.c_int32,
        ctypes.c_int32,
        ctypes.c_int32,
        _i32p,
        _f32p,
        _f32p,
        _i32p,
        _i32p,
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
        _P(RoiAlignParams),
        vp,
        i32,
        i32,
        i32,
        _P(vp),
        _i32p,
        _i32p,
        vp,
        vp,
    ]
    lib.mrd_cuda_multilevel_roi_align.restype = ctypes.c_int
    lib.mrd_cuda_batched_nms_workspace_size.argtypes = [i32, i32, i32, i32]
    lib.mrd_cuda_batched_nms_workspace_size.restype = ctypes.c_size_t
    lib.mrd_cuda_batched_nms.argtypes = [
        i32,
        _P(NmsParams),
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


def _ptr(a: np.ndarray, ctype: type) -> ctypes._Pointer:
    return a.ctypes.data_as(ctypes.POINTER(ctype))


# ---------------------------------------------------------------------------------------------------------------
# numpy reference of the two ops (the spec, runtime/plugin_ops.py, computed by libmrd_host)


def multilevel_roi_align_reference(
    rois: np.ndarray, features: Sequence[np.ndarray], attrs: MultiLevelRoiAlignAttrs
) -> np.ndarray:
    """``MRD_MultiLevelRoiAlign`` on the CPU: rois [B,R,4], features [B,C,H_l,W_l] -> [B*R,C,P_h,P_w].

    Computes in float32; the output has the features' dtype (float16 features give a float16 output).
    """
    rois = np.asarray(rois)
    if rois.ndim != 3 or rois.shape[2] != 4:
        raise ValueError(f"rois must be [B, R, 4], got shape {rois.shape}")
    if len(features) != len(attrs.spatial_scales):
        raise ValueError(
            f"{len(features)} feature maps given but spatial_scales has {len(attrs.spatial_scales)} levels"
        )
    if not features:
        raise ValueError("at least one feature map is needed")
    out_dtype = np.asarray(features[0]).dtype
    feats = [np.ascontiguousarray(f, dtype=np.float32) for f in features]
    batch, num_rois = rois.shape[:2]
    channels = feats[0].shape[1] if feats[0].ndim == 4 else -1
    for i, f in enumerate(feats):
        if f.ndim != 4 or f.shape[0] != batch or f.shape[1] != channels:
            raise ValueError(
                f"feature {i} must be [B={batch}, C={channels}, H, W] like feature 0 and the rois, got {f.shape}"
            )
    rois32 = np.ascontiguousarray(rois, dtype=np.float32)
    out = np.empty((batch * num_rois, channels, attrs.output_height, attrs.output_width), np.float32)
    params = roi_align_params(attrs)
    lib = load_host_library()
    levels = len(feats)
    ptrs = (_f32p * levels)(*[_ptr(f, ctypes.c_float) for f in feats])
    heights = (ctypes.c_int32 * levels)(*[f.shape[2] for f in feats])
    widths = (ctypes.c_int32 * levels)(*[f.shape[3] for f in feats])
    status = lib.mrd_multilevel_roi_align_f32(
        ctypes.byref(params),
        _ptr(rois32, ctypes.c_float),
        batch,
        num_rois,
        channels,
        ptrs,
        heights,
        widths,
        _ptr(out, ctypes.c_float),
    )
    check_status(lib, status)
    return out.astype(out_dtype, copy=False)


def batched_nms_reference(boxes: np.ndarray, scores: np.ndarray, attrs: BatchedNmsAttrs) -> NmsOutputs:
    """``MRD_BatchedNms`` on the CPU: boxes [B,N,4] or [B,N,C,4], scores [B,N,C] -> :class:`NmsOutputs`.

    Computes in float32; boxes and scores come back in the scores' dtype.
    """
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    if scores.ndim != 3:
        raise ValueError(f"scores must be [B, N, C], got shape {scores.shape}")
    batch, num_boxes, num_classes = scores.shape
    if boxes.shape == (batch, num_boxes, 4):
        per_class = 0
    elif boxes.shape == (batch, num_boxes, num_classes, 4):
        per_class = 1
    else:
        raise ValueError(
            f"boxes must be [B, N, 4] or [B, N, C, 4] for scores {scores.shape}, got shape {boxes.shape}"
        )
    out_dtype = scores.dtype
    boxes32 = np.ascontiguousarray(boxes, dtype=np.float32)
    scores32 = np.ascontiguousarray(scores, dtype=np.float32)
    k = int(attrs.keep_top_k)
    if k <= 0:
        raise ValueError(f"keep_top_k must be positive, got {k}")
    num = np.empty((batch,), np.int32)
    out_boxes = np.empty((batch, k, 4), np.float32)
    out_scores = np.empty((batch, k), np.float32)
    out_classes = np.empty((batch, k), np.int32)
    out_indices = np.empty((batch, k), np.int32)
    params = nms_params(attrs)
    lib = load_host_library()
    status = lib.mrd_batched_nms_f32(
        ctypes.byref(params),
        _ptr(boxes32, ctypes.c_float),
        _ptr(scores32, ctypes.c_float),
        batch,
        num_boxes,
        num_classes,
        per_class,
        _ptr(num, ctypes.c_int32),
        _ptr(out_boxes, ctypes.c_float),
        _ptr(out_scores, ctypes.c_float),
        _ptr(out_classes, ctypes.c_int32),
        _ptr(out_indices, ctypes.c_int32),
    )
    check_status(lib, status)
    return NmsOutputs(
        num,
        out_boxes.astype(out_dtype, copy=False),
        out_scores.astype(out_dtype, copy=False),
        out_classes,
        out_indices,
    )


# ---------------------------------------------------------------------------------------------------------------
# the CUDA kernels on torch CUDA tensors (torch imported here only; used by GPU tests and benchmarks)


def _cuda_dtype(t: Any) -> int:
    import torch

    if t.dtype == torch.float32:
        return MRD_FLOAT32
    if t.dtype == torch.float16:
        return MRD_FLOAT16
    raise ValueError(f"CUDA plugin kernels take float32 or float16 tensors, got {t.dtype}")


def multilevel_roi_align_cuda(rois: Any, features: Sequence[Any], attrs: MultiLevelRoiAlignAttrs) -> Any:
    """``MRD_MultiLevelRoiAlign`` through libmrd_kernels on torch CUDA tensors, on the current stream."""
    import torch

    if len(features) != len(attrs.spatial_scales):
        raise ValueError(
            f"{len(features)} feature maps but spatial_scales has {len(attrs.spatial_scales)} levels"
        )
    rois = rois.contiguous().float()
    feats = [f.contiguous() for f in features]
    batch, num_rois = rois.shape[:2]
    channels = feats[0].shape[1]
    out = torch.empty(
        (batch * num_rois, channels, attrs.output_height, attrs.output_width),
        dtype=feats[0].dtype,
        device=rois.device,
    )
    params = roi_align_params(attrs)
    levels = len(feats)
    lib = load_kernel_library()
    status = lib.mrd_cuda_multilevel_roi_align(
        _cuda_dtype(feats[0]),
        ctypes.byref(params),
        rois.data_ptr(),
        batch,
        num_rois,
        channels,
        (ctypes.c_void_p * levels)(*[f.data_ptr() for f in feats]),
        (ctypes.c_int32 * levels)(*[f.shape[2] for f in feats]),
        (ctypes.c_int32 * levels)(*[f.shape[3] for f in feats]),
        out.data_ptr(),
        torch.cuda.current_stream(rois.device).cuda_stream,
    )
    check_status(lib, status, "mrd_cuda_last_error")
    return out


def batched_nms_cuda(
    boxes: Any, scores: Any, attrs: BatchedNmsAttrs, workspace: Any = None
) -> tuple[Any, ...]:
    """``MRD_BatchedNms`` through libmrd_kernels on torch CUDA tensors -> (num, boxes, scores, classes, indices).

    ``workspace`` (a uint8 CUDA tensor of at least the required size) may be passed to keep allocation out of
    timed loops.
    """
    import torch

    boxes, scores = boxes.contiguous(), scores.contiguous()
    batch, num_boxes, num_classes = scores.shape
    per_class = 1 if boxes.dim() == 4 else 0
    k = int(attrs.keep_top_k)
    dev = scores.device
    lib = load_kernel_library()
    need = lib.mrd_cuda_batched_nms_workspace_size(batch, num_boxes, num_classes, k)
    if workspace is None or workspace.numel() < need:
        workspace = torch.empty(max(need, 1), dtype=torch.uint8, device=dev)
    outs = (
        torch.empty((batch,), dtype=torch.int32, device=dev),
        torch.empty((batch, k, 4), dtype=scores.dtype, device=dev),
        torch.empty((batch, k), dtype=scores.dtype, device=dev),
        torch.empty((batch, k), dtype=torch.int32, device=dev),
        torch.empty((batch, k), dtype=torch.int32, device=dev),
    )
    params = nms_params(attrs)
    status = lib.mrd_cuda_batched_nms(
        _cuda_dtype(scores),
        ctypes.byref(params),
        boxes.data_ptr(),
        scores.data_ptr(),
        batch,
        num_boxes,
        num_classes,
        per_class,
        *[o.data_ptr() for o in outs],
        workspace.data_ptr(),
        workspace.numel(),
        torch.cuda.current_stream(dev).cuda_stream,
    )
    check_status(lib, status, "mrd_cuda_last_error")
    return outs


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m runtime.plugin_library [BUILD_DIR]``: build the libraries and print where they are."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = build_plugins(args[0] if args else "build", quiet=False)
    for name in (HOST_LIBRARY, KERNEL_LIBRARY, TRT_PLUGIN_LIBRARY):
        path = out / name
        print(f"{name}: {path if path.is_file() else 'not built'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
