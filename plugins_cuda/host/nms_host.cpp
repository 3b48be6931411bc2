// CPU reference of MRD_BatchedNms: torchvision's postprocess_detections (score filter, remove_small_boxes,
// batched_nms, keep the best K) computed through the shared math (mrd/nms_math.h) the CUDA kernels also run.
#include "last_error.h"

#include "mrd/c_api.h"
#include "mrd/nms_math.h"
#include "mrd/params.h"

#include <algorithm>
#include <cstddef>
#include <vector>

namespace
{

struct Candidate
{
    float score;
    int32_t flat; // n * num_classes + c
};

mrd::Box load_box(float const* boxes, int64_t b, int32_t n, int32_t c, int32_t num_boxes, int32_t num_classes,
    bool per_class)
{
    float const* p = per_class ? boxes + ((b * num_boxes + n) * num_classes + c) * 4 : boxes + (b * num_boxes + n) * 4;
    return mrd::Box{p[0], p[1], p[2], p[3]};
}

} // namespace

extern "C" MRD_API int mrd_batched_nms_f32(MrdNmsParams const* p, float const* boxes, float const* scores,
    int32_t batch, int32_t num_boxes, int32_t num_classes, int32_t per_class_boxes, int32_t* num_detections,
    float* out_boxes, float* out_scores, int32_t* out_classes, int32_t* out_indices)
{
    using mrd::host::fail;
    if (p == nullptr)
    {
        return fail(MRD_INVALID_ARGUMENT, "MRD_BatchedNms: null params");
    }
    std::string const err = mrd::validate(*p);
    if (!err.empty())
    {
        return fail(MRD_INVALID_ARGUMENT, "MRD_BatchedNms: " + err);
    }
    if (batch < 0 || num_boxes < 0 || num_classes < 0)
    {
        return fail(MRD_INVALID_ARGUMENT, "MRD_BatchedNms: negative batch/num_boxes/num_classes");
    }
    if (batch > 0
        && (num_detections == nullptr || out_boxes == nullptr || out_scores == nullptr || out_classes == nullptr
            || out_indices == nullptr || (num_boxes * num_classes > 0 && (boxes == nullptr || scores == nullptr))))
    {
        return fail(MRD_INVALID_ARGUMENT, "MRD_BatchedNms: null input or output pointer");
    }
    int32_t const k = p->keep_top_k;
    bool const per_class = per_class_boxes != 0;
    std::vector<Candidate> cands;
    std::vector<mrd::Box> kept_boxes;
    std::vector<int32_t> kept_classes;
    for (int64_t b = 0; b < batch; ++b)
    {
        cands.clear();
        for (int32_t n = 0; n < num_boxes; ++n)
        {
            for (int32_t c = 0; c < num_classes; ++c)
            {
                float const s = scores[(b * num_boxes + n) * num_classes + c];
                mrd::Box const box = load_box(boxes, b, n, c, num_boxes, num_classes, per_class);
                if (mrd::is_candidate(box, s, c, p->score_threshold, p->min_box_size, p->background_class))
                {
                    cands.push_back(Candidate{s, n * num_classes + c});
                }
            }
        }
        // score descending, ties in ascending flat index (the candidates are generated in that order)
        std::stable_sort(
            cands.begin(), cands.end(), [](Candidate const& a, Candidate const& c) { return a.score > c.score; });
        if (p->pre_nms_top_k > 0 && cands.size() > static_cast<std::size_t>(p->pre_nms_top_k))
        {
            cands.resize(p->pre_nms_top_k);
        }
        // greedy NMS: a candidate survives unless a kept box of its class overlaps it; stop at K survivors
        kept_boxes.clear();
        kept_classes.clear();
        int32_t kept = 0;
        for (Candidate const& cand : cands)
        {
            if (kept == k)
            {
                break;
            }
            int32_t const n = cand.flat / num_classes;
            int32_t const c = cand.flat % num_classes;
            mrd::Box const box = load_box(boxes, b, n, c, num_boxes, num_classes, per_class);
            bool suppressed = false;
            for (std::size_t i = 0; i < kept_boxes.size() && !suppressed; ++i)
            {
                suppressed = mrd::suppresses(kept_boxes[i], kept_classes[i], box, c, p->iou_threshold);
            }
            if (suppressed)
            {
                continue;
            }
            kept_boxes.push_back(box);
            kept_classes.push_back(c);
            int64_t const o = b * k + kept;
            out_boxes[o * 4 + 0] = box.x1;
            out_boxes[o * 4 + 1] = box.y1;
            out_boxes[o * 4 + 2] = box.x2;
            out_boxes[o * 4 + 3] = box.y2;
            out_scores[o] = cand.score;
            out_classes[o] = c;
            out_indices[o] = n;
            ++kept;
        }
        num_detections[b] = kept;
        for (int32_t i = kept; i < k; ++i)
        {
            int64_t const o = b * k + i;
            std::fill(out_boxes + o * 4, out_boxes + o * 4 + 4, 0.0f);
            out_scores[o] = 0.0f;
            out_classes[o] = -1;
            out_indices[o] = -1;
        }
    }
    return MRD_OK;
}
