"""ctypes mirrors of the C ABI of ``plugins_cuda/include/mrd/c_api.h``, and the spec's attrs in that form.

The structs are written out field by field, like the C declarations they mirror, so a reader can hold one
against the other; ``tests/plugins/test_spec.py`` checks that the field names and ``MAX_LEVELS`` match.
"""

from __future__ import annotations

import ctypes

from runtime.plugins.spec import BatchedNmsAttrs, MultiLevelRoiAlignAttrs

MAX_LEVELS = 8  # MRD_MAX_LEVELS in plugins_cuda/include/mrd/c_api.h

# enum MrdDataType: the element type the CUDA entry points are told their tensors have
MRD_FLOAT32 = 0
MRD_FLOAT16 = 1

#: pointer types of the C signatures (``float*``, ``int32_t*``)
FloatPtr = ctypes.POINTER(ctypes.c_float)
Int32Ptr = ctypes.POINTER(ctypes.c_int32)


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
        ("legacy_plus_one", ctypes.c_int32),
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


def roi_align_params(attrs: MultiLevelRoiAlignAttrs) -> RoiAlignParams:
    """The C struct of ``attrs``; the C side has a fixed array of scales, hence the 1..MAX_LEVELS check."""
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
        legacy_plus_one=int(attrs.legacy_plus_one),
    )
    for i, s in enumerate(scales):
        p.spatial_scales[i] = s
    return p


def nms_params(attrs: BatchedNmsAttrs) -> NmsParams:
    """The C struct of ``attrs``."""
    return NmsParams(
        score_threshold=float(attrs.score_threshold),
        iou_threshold=float(attrs.iou_threshold),
        min_box_size=float(attrs.min_box_size),
        pre_nms_top_k=int(attrs.pre_nms_top_k),
        keep_top_k=int(attrs.keep_top_k),
        background_class=int(attrs.background_class),
    )
