"""Pure-Python stand-ins for the compiled ops of maskrcnn-benchmark and detectron2.

Our own code (not derived from either project), implementing the documented semantics of the ops
those projects compile, so that their unmodified Python runs on today's torch on the CPU. Used only by
make_foreign_checkpoints.py to compute reference data; nothing in the package imports it.

maskrcnn-benchmark (`maskrcnn_benchmark._C`, built from csrc/):
  * nms(dets, scores, threshold): the CPU kernel (csrc/cpu/nms_cpu.cpp): boxes visited in descending
    score order, areas and overlaps with +1, a box is suppressed when IoU >= threshold (the CUDA kernel
    uses >), kept indices returned in ascending *index* order (at::nonzero of the keep mask).
  * roi_align_forward: torchvision.ops.roi_align(aligned=False), the same Caffe2 legacy ROIAlign.
  * roi_pool_forward: torchvision.ops.roi_pool (+ a dummy argmax); not used by the FPN models.
  * keypoint post-processing: cv2.resize given a float dsize (OpenCV >= 4 rejects it; int() is exact,
    the sizes are np.ceil()'d), see patch_mrb_after_import.
  * everything else (backward passes, focal loss, deformable conv) raises if called.
  * `apex.amp.float_function` -> identity (mrb imports apex at module level), `torch._six` and the
    private torch.hub names mrb imports at module level, the removed numpy aliases np.float/np.int (= the builtins), and `cityscapesscripts` (imported by
    its data package, unused at inference).

detectron2: uses torchvision's nms / roi_align already; its `_C` is only needed for deformable conv
and the fast COCO evaluator, which it handles itself (try/except) - nothing to shim.
"""

import sys
import types
import urllib.parse

import numpy as np
import torch
import torchvision


def mrb_nms_cpu(dets, scores, threshold):
    """maskrcnn-benchmark's csrc/cpu/nms_cpu.cpp, in float32 like the kernel (scalar_t = float)."""
    if dets.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    dets = dets.detach().cpu()
    scores = scores.detach().cpu()
    x1, y1, x2, y2 = (dets[:, k].contiguous() for k in range(4))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    # at::sort(descending) on the CPU; ties are not expected with continuous scores.
    order = torch.sort(scores, dim=0, descending=True, stable=True)[1].numpy()
    x1n, y1n, x2n, y2n, an = (t.numpy() for t in (x1, y1, x2, y2, areas))
    thr = np.float32(threshold)
    n = dets.shape[0]
    suppressed = np.zeros(n, dtype=bool)
    for _i in range(n):
        i = order[_i]
        if suppressed[i]:
            continue
        rest = order[_i + 1 :]
        rest = rest[~suppressed[rest]]
        if rest.size == 0:
            continue
        xx1 = np.maximum(x1n[i], x1n[rest])
        yy1 = np.maximum(y1n[i], y1n[rest])
        xx2 = np.minimum(x2n[i], x2n[rest])
        yy2 = np.minimum(y2n[i], y2n[rest])
        w = np.maximum(np.float32(0), xx2 - xx1 + np.float32(1))
        h = np.maximum(np.float32(0), yy2 - yy1 + np.float32(1))
        inter = w * h
        ovr = inter / (an[i] + an[rest] - inter)
        suppressed[rest[ovr >= thr]] = True
    return torch.from_numpy(np.nonzero(~suppressed)[0].astype(np.int64))


def _mrb_roi_align_forward(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio):
    return torchvision.ops.roi_align(
        input,
        rois,
        (int(pooled_height), int(pooled_width)),
        float(spatial_scale),
        int(sampling_ratio),
        aligned=False,
    )


def _mrb_roi_pool_forward(input, rois, spatial_scale, pooled_height, pooled_width):
    out = torchvision.ops.roi_pool(input, rois, (int(pooled_height), int(pooled_width)), float(spatial_scale))
    return out, torch.zeros(out.shape, dtype=torch.int32)


def _unavailable(name):
    def f(*args, **kwargs):
        raise NotImplementedError(f"maskrcnn_benchmark._C.{name} is not shimmed (inference only)")

    f.__name__ = name
    return f


def install_mrb_shims():
    """Register the stand-ins; call before importing maskrcnn_benchmark."""
    C = types.ModuleType("maskrcnn_benchmark._C")
    C.nms = mrb_nms_cpu
    C.roi_align_forward = _mrb_roi_align_forward
    C.roi_pool_forward = _mrb_roi_pool_forward
    for name in (
        "roi_align_backward",
        "roi_pool_backward",
        "sigmoid_focalloss_forward",
        "sigmoid_focalloss_backward",
        "deform_conv_forward",
        "deform_conv_backward_input",
        "deform_conv_backward_parameters",
        "modulated_deform_conv_forward",
        "modulated_deform_conv_backward",
        "deform_psroi_pooling_forward",
        "deform_psroi_pooling_backward",
    ):
        setattr(C, name, _unavailable(name))
    sys.modules["maskrcnn_benchmark._C"] = C

    apex = types.ModuleType("apex")
    amp = types.ModuleType("apex.amp")
    amp.float_function = lambda f: f
    amp.half_function = lambda f: f
    apex.amp = amp
    sys.modules.setdefault("apex", apex)
    sys.modules.setdefault("apex.amp", amp)

    # numpy < 1.24 aliases mrb uses (np.float in anchor_generator.py): they were the builtins.
    for name, val in (("float", float), ("int", int), ("bool", bool), ("object", object)):
        if name not in np.__dict__:
            setattr(np, name, val)

    # data/datasets/cityscapes.py imports cityscapesscripts at module level (unused here).
    if "cityscapesscripts" not in sys.modules:
        try:
            import cityscapesscripts.helpers.csHelpers  # noqa: F401
        except ImportError:
            cs = types.ModuleType("cityscapesscripts")
            helpers = types.ModuleType("cityscapesscripts.helpers")
            helpers.csHelpers = types.ModuleType("cityscapesscripts.helpers.csHelpers")
            cs.helpers = helpers
            sys.modules["cityscapesscripts"] = cs
            sys.modules["cityscapesscripts.helpers"] = helpers
            sys.modules["cityscapesscripts.helpers.csHelpers"] = helpers.csHelpers

    if "torch._six" not in sys.modules:
        six = types.ModuleType("torch._six")
        six.PY3 = True
        six.PY37 = True
        six.string_classes = (str, bytes)
        six.int_classes = int
        sys.modules["torch._six"] = six
        torch._six = six
    if not hasattr(torch.hub, "_download_url_to_file"):
        torch.hub._download_url_to_file = torch.hub.download_url_to_file
    if not hasattr(torch.hub, "urlparse"):
        torch.hub.urlparse = urllib.parse.urlparse
    if not hasattr(torch.hub, "HASH_REGEX"):
        import re

        torch.hub.HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")
    return C


class _Cv2IntSize:
    """cv2 with resize() accepting a float dsize, as the OpenCV of 2019 did: mrb's keypoint
    post-processing (keypoint_head/inference.py, heatmaps_to_keypoints) passes np.ceil()'d float32
    sizes, which OpenCV >= 4.x rejects. The values are integral, so int() is exact."""

    def __init__(self, cv2):
        self._cv2 = cv2

    def __getattr__(self, name):
        return getattr(self._cv2, name)

    def resize(self, src, dsize, *args, **kwargs):
        if dsize is not None:
            dsize = tuple(int(v) for v in dsize)
        return self._cv2.resize(src, dsize, *args, **kwargs)


def patch_mrb_after_import():
    """Call after importing maskrcnn_benchmark (needs its modules loaded)."""
    import cv2
    from maskrcnn_benchmark.modeling.roi_heads.keypoint_head import inference as kp_inference

    if not isinstance(kp_inference.cv2, _Cv2IntSize):
        kp_inference.cv2 = _Cv2IntSize(cv2)


def install_d2_shims():
    """detectron2 needs nothing compiled for these models (see module docstring)."""
    return None
