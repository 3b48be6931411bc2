"""The two ops on torch CUDA tensors, computed by the CUDA kernels of ``libmrd_kernels.so`` through ctypes.

For GPU tests and benchmarks: the same kernels the TensorRT plugins run, callable without TensorRT. torch is
imported inside the functions only, so importing this module never needs it.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

from runtime.plugins.abi import MRD_FLOAT16, MRD_FLOAT32, nms_params, roi_align_params
from runtime.plugins.library import check_status, load_kernel_library
from runtime.plugins.spec import BatchedNmsAttrs, MultiLevelRoiAlignAttrs


def _cuda_dtype(t: Any) -> int:
    """The ``MrdDataType`` code of a tensor; the kernels exist for float32 and float16 only."""
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
