"""The ``trt`` flavor's plugin nodes: autograd Functions that trace to one custom ONNX node each.

Their eager forward is the standard-op implementation (so a traced model computes the same numbers in
both flavors) and their ``symbolic`` writes exactly the node ``runtime.plugins.spec`` specifies: op type,
domain, attribute names, input and output order. TensorRT's parser maps each node to our IPluginV3 by op
type, ``plugin_version`` and ``plugin_namespace``; ONNX Runtime runs it through the CPU reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from exporter import standard_ops
from runtime.plugins.spec import (
    DOMAIN,
    NMS_OP,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    ROI_ALIGN_OP,
    BatchedNmsAttrs,
    MultiLevelRoiAlignAttrs,
)


def _onnx_attributes(attrs: dict[str, object]) -> dict[str, Any]:
    """Python attribute values -> torch.onnx's ``name_<type>`` keyword form.

    ``plugin_version`` / ``plugin_namespace`` are written only when they differ from TensorRT's parser
    defaults ("1", ""): the CPU reference rejects attributes the spec does not list.
    """
    out: dict[str, Any] = {}
    if PLUGIN_VERSION != "1":
        out["plugin_version_s"] = PLUGIN_VERSION
    if PLUGIN_NAMESPACE:
        out["plugin_namespace_s"] = PLUGIN_NAMESPACE
    for name, value in attrs.items():
        if isinstance(value, (list, tuple)):
            out[f"{name}_f"] = [float(v) for v in value]
        elif isinstance(value, float):
            out[f"{name}_f"] = value
        elif isinstance(value, int):
            out[f"{name}_i"] = value
        else:
            out[f"{name}_s"] = str(value)
    return out


class _MultiLevelRoiAlign(torch.autograd.Function):
    @staticmethod
    def forward(ctx: object, attrs: MultiLevelRoiAlignAttrs, rois: Tensor, *features: Tensor) -> Tensor:  # type: ignore[override]
        return standard_ops.multilevel_roi_align(rois, features, attrs)

    @staticmethod
    def symbolic(g, attrs, rois, *features):  # type: ignore[no-untyped-def]
        # every spec field, legacy_plus_one too (also when 0): surgery.check_plugin_nodes wants exactly the spec's
        # attributes, and the readers (CPU reference, TensorRT plugin) default an absent one to the spec default
        out = g.op(f"{DOMAIN}::{ROI_ALIGN_OP}", rois, *features, **_onnx_attributes(attrs.as_dict()))
        out.setType(features[0].type().with_sizes([None, None, attrs.output_height, attrs.output_width]))
        return out


class _BatchedNms(torch.autograd.Function):
    @staticmethod
    def forward(ctx: object, attrs: BatchedNmsAttrs, boxes: Tensor, scores: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        return tuple(standard_ops.batched_nms(boxes, scores, attrs))

    @staticmethod
    def symbolic(g, attrs, boxes, scores):  # type: ignore[no-untyped-def]
        outs = g.op(f"{DOMAIN}::{NMS_OP}", boxes, scores, outputs=5, **_onnx_attributes(attrs.as_dict()))
        k = attrs.keep_top_k
        base = scores.type()
        outs[0].setType(base.with_dtype(torch.int32).with_sizes([None]))
        outs[1].setType(base.with_sizes([None, k, 4]))
        outs[2].setType(base.with_sizes([None, k]))
        outs[3].setType(base.with_dtype(torch.int32).with_sizes([None, k]))
        outs[4].setType(base.with_dtype(torch.int32).with_sizes([None, k]))
        return outs


def multilevel_roi_align(rois: Tensor, features: Sequence[Tensor], attrs: MultiLevelRoiAlignAttrs) -> Tensor:
    return _MultiLevelRoiAlign.apply(attrs, rois, *features)


def batched_nms(boxes: Tensor, scores: Tensor, attrs: BatchedNmsAttrs) -> standard_ops.NmsResult:
    return standard_ops.NmsResult(*_BatchedNms.apply(attrs, boxes, scores))
