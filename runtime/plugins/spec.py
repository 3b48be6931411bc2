"""The one written-down spec of the two custom ops the `trt` ONNX flavor uses.

The exporter writes these nodes, the TensorRT plugins in ``plugins_cuda/`` implement them (their plugin
names, versions and field names must be the strings below; ``tests/plugins/test_spec.py`` checks the C++
sources against this file), and the CPU reference (``runtime.plugins.reference``) runs them under ONNX Runtime
so the very graph TensorRT parses is verified on machines without a GPU.

Semantics (both ops are exactly torchvision's, so an exported graph matches the PyTorch model):

``MRD_MultiLevelRoiAlign`` -- torchvision ``MultiScaleRoIAlign`` on fixed levels.
  inputs:  rois [B, R, 4] float32 (x1, y1, x2, y2 in the network input's pixels),
           feature_0 .. feature_{L-1} [B, C, H_l, W_l] float32 or float16 (finest level first)
  output:  pooled [B*R, C, output_height, output_width], dtype of the features; row b*R + r is roi r of image b
  level of a roi: k = floor(canonical_level + log2(sqrt(area) / canonical_box_size) + 1e-6),
           area = (x2 - x1 + o) * (y2 - y1 + o) with o = 1 when ``legacy_plus_one`` else 0, clamped to
           [k_min, k_max] where k_min = -log2(spatial_scales[0]) and k_max = -log2(spatial_scales[-1])
           (rounded), then level index = k - k_min. ``legacy_plus_one`` = 1 is the level assignment of
           maskrcnn-benchmark (Detectron1) checkpoints, whose box areas use the "+1" convention; 0 (the
           default) is torchvision's. It changes only the level a roi is pooled from, never the pooling.
  pooling: torchvision ``roi_align`` (bilinear, ``sampling_ratio`` samples per bin, <= 0 means adaptive
           ceil(roi_size / output_size); ``aligned`` shifts by -0.5 px) with that level's spatial scale.
  bounds:  a roi with a NaN or infinite coordinate pools to zeros; samples per bin side are at most 128
           (``sampling_ratio`` above it is refused, an adaptive grid is capped there: a roi inside the image
           never needs as many); output sides lie in [1, 1024].

``MRD_BatchedNms`` -- torchvision's post-processing: score filter, small-box filter, class-aware
  ``batched_nms``, keep the best ``keep_top_k``.
  inputs:  boxes [B, N, 4] (shared by all classes) or [B, N, C, 4] (one box per class), float32/float16,
           scores [B, N, C] same dtype
  candidates: every (n, c) with c != background_class, score > score_threshold, box width and height
           >= min_box_size; if pre_nms_top_k > 0 only the pre_nms_top_k best-scoring candidates go on.
  NMS:     per class (boxes of different classes never suppress each other), IoU > iou_threshold
           suppresses, IoU without the +1 convention (torchvision's).
  outputs: num_detections [B] int32, boxes [B, K, 4], scores [B, K] (dtype of the inputs),
           classes [B, K] int32, indices [B, K] int32 (the n of each kept candidate);
           K = keep_top_k; sorted by score descending, ties by ascending flat index n * C + c;
           padding: boxes 0, scores 0, classes -1, indices -1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: ONNX domain of the custom nodes. onnxruntime-extensions registers Python ops in this domain, which is
#: what runs the `trt` flavor on the CPU; TensorRT's ONNX parser ignores the domain and finds the plugin by
#: op type, ``plugin_version`` and ``plugin_namespace``.
DOMAIN = "ai.onnx.contrib"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""

ROI_ALIGN_OP = "MRD_MultiLevelRoiAlign"
NMS_OP = "MRD_BatchedNms"


@dataclass(frozen=True)
class MultiLevelRoiAlignAttrs:
    """Attributes of ``MRD_MultiLevelRoiAlign`` (names are the ONNX attribute and plugin field names)."""

    output_height: int = 7
    output_width: int = 7
    sampling_ratio: int = 2
    aligned: int = 0
    spatial_scales: tuple[float, ...] = (0.25, 0.125, 0.0625, 0.03125)
    canonical_box_size: int = 224
    canonical_level: int = 4
    #: 1: FPN level from area (x2 - x1 + 1) * (y2 - y1 + 1) (maskrcnn-benchmark); 0: (x2 - x1) * (y2 - y1).
    #: Last, so the fields before it keep their order (and positional construction its meaning).
    legacy_plus_one: int = 0

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["spatial_scales"] = [float(s) for s in self.spatial_scales]
        return d


@dataclass(frozen=True)
class BatchedNmsAttrs:
    """Attributes of ``MRD_BatchedNms`` (names are the ONNX attribute and plugin field names)."""

    score_threshold: float = 0.05
    iou_threshold: float = 0.5
    min_box_size: float = 0.01
    pre_nms_top_k: int = -1
    keep_top_k: int = 100
    background_class: int = -1

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


#: attribute names per op, in the order the plugins declare their fields
ROI_ALIGN_FIELDS: tuple[str, ...] = tuple(MultiLevelRoiAlignAttrs().as_dict())
NMS_FIELDS: tuple[str, ...] = tuple(BatchedNmsAttrs().as_dict())
