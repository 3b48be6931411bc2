// Per-element math of MRD_BatchedNms (torchvision's postprocess_detections filters and nms IoU), shared by the
// CPU reference and the CUDA kernels. See runtime/plugins/spec.py for the op spec.
#pragma once

#include "mrd/common.h"

namespace mrd
{

struct Box
{
    float x1;
    float y1;
    float x2;
    float y2;
};

MRD_HD float box_area(Box const& b)
{
    return mul(sub(b.x2, b.x1), sub(b.y2, b.y1));
}

// IoU without the +1 convention, in torchvision's operation order (inter / (area_a + area_b - inter)).
MRD_HD float box_iou(Box const& a, Box const& b)
{
    float const xx1 = max_f(a.x1, b.x1);
    float const yy1 = max_f(a.y1, b.y1);
    float const xx2 = min_f(a.x2, b.x2);
    float const yy2 = min_f(a.y2, b.y2);
    float const w = max_f(0.0f, sub(xx2, xx1));
    float const h = max_f(0.0f, sub(yy2, yy1));
    float const inter = mul(w, h);
    return inter / sub(add(box_area(a), box_area(b)), inter);
}

// Whether (box, class, score) enters NMS: not background, score above the threshold (NaN never does), and
// torchvision's remove_small_boxes (width and height >= min_box_size).
MRD_HD bool is_candidate(Box const& b, float score, int cls, float score_threshold, float min_box_size, int background)
{
    if (cls == background || !(score > score_threshold))
    {
        return false;
    }
    return sub(b.x2, b.x1) >= min_box_size && sub(b.y2, b.y1) >= min_box_size;
}

// Whether an already kept box suppresses a later candidate: same class and IoU above the threshold.
MRD_HD bool suppresses(Box const& kept, int kept_cls, Box const& cand, int cand_cls, float iou_threshold)
{
    return kept_cls == cand_cls && box_iou(kept, cand) > iou_threshold;
}

} // namespace mrd
