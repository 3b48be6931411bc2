"""The two ops on numpy arrays, computed on the CPU by ``libmrd_host.so`` (numpy + ctypes only).

This is the same ``__host__ __device__`` math the CUDA kernels run, so it is what runs the `trt` ONNX flavor
on the CPU (:mod:`runtime.plugins.ort_reference`) and what CI tests against torchvision. The semantics are
those of :mod:`runtime.plugins.spec`.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from runtime.plugins.abi import FloatPtr, nms_params, roi_align_params
from runtime.plugins.library import check_status, load_host_library
from runtime.plugins.spec import BatchedNmsAttrs, MultiLevelRoiAlignAttrs


class NmsOutputs(NamedTuple):
    """The five outputs of ``MRD_BatchedNms``, padded to ``keep_top_k`` (see :mod:`runtime.plugins.spec`)."""

    num_detections: np.ndarray  # [B] int32
    boxes: np.ndarray  # [B, K, 4]
    scores: np.ndarray  # [B, K]
    classes: np.ndarray  # [B, K] int32
    indices: np.ndarray  # [B, K] int32


def _ptr(a: np.ndarray, ctype: type) -> ctypes._Pointer:
    """A C pointer to a contiguous array's data, for the library's ``float*`` / ``int32_t*`` arguments."""
    return a.ctypes.data_as(ctypes.POINTER(ctype))


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
    ptrs = (FloatPtr * levels)(*[_ptr(f, ctypes.c_float) for f in feats])
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


def check_roi_align_attrs(attrs: MultiLevelRoiAlignAttrs) -> None:
    """Raise :class:`~runtime.plugins.library.PluginCallError` (the library's own words) where the plugin would
    refuse ``attrs``: its checks run on a call with no ROI. Graph loaders check before running, because an
    error raised inside ONNX Runtime's Python op ends the process instead of the call."""
    empty = np.zeros((1, 1, 1, 1), np.float32)
    multilevel_roi_align_reference(
        np.zeros((1, 0, 4), np.float32), [empty] * len(attrs.spatial_scales), attrs
    )


def check_nms_attrs(attrs: BatchedNmsAttrs) -> None:
    """:func:`check_roi_align_attrs` for ``MRD_BatchedNms``."""
    batched_nms_reference(np.zeros((1, 0, 4), np.float32), np.zeros((1, 0, 1), np.float32), attrs)
