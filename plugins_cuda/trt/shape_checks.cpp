#include "shape_checks.h"

#include <climits>

namespace mrd::trt
{

using nvinfer1::Dims;

namespace
{

// Both extents known and different.
bool differ(int64_t a, int64_t b)
{
    return a >= 0 && b >= 0 && a != b;
}

std::string extent(int64_t v)
{
    return v < 0 ? std::string("?") : std::to_string(v);
}

} // namespace

Dims known_extents(nvinfer1::DimsExprs const& e) noexcept
{
    Dims d{};
    d.nbDims = e.nbDims < 0 || e.nbDims > Dims::MAX_DIMS ? 0 : e.nbDims;
    for (int32_t i = 0; i < d.nbDims; ++i)
    {
        d.d[i] = e.d[i] != nullptr && e.d[i]->isConstant() ? e.d[i]->getConstantValue() : -1;
    }
    return d;
}

std::string dims_string(Dims const& d)
{
    std::string s = "[";
    for (int32_t i = 0; i < d.nbDims; ++i)
    {
        s += (i ? ", " : "") + extent(d.d[i]);
    }
    return s + "]";
}

std::string check_roi_align_shapes(MrdRoiAlignParams const& p, Dims const* in, int32_t nbInputs)
{
    if (nbInputs != p.num_levels + 1)
    {
        return std::to_string(nbInputs - 1) + " feature inputs but spatial_scales has "
            + std::to_string(p.num_levels) + " levels";
    }
    Dims const& rois = in[0];
    if (rois.nbDims != 3 || differ(rois.d[2], 4))
    {
        return "rois must be [B, R, 4], got " + dims_string(rois);
    }
    for (int32_t l = 0; l < p.num_levels; ++l)
    {
        if (in[1 + l].nbDims != 4)
        {
            return "feature_" + std::to_string(l) + " must be [B, C, H, W], got " + dims_string(in[1 + l]);
        }
    }
    Dims const& f0 = in[1];
    for (int32_t l = 1; l < p.num_levels; ++l)
    {
        Dims const& f = in[1 + l];
        if (differ(f.d[0], f0.d[0]) || differ(f.d[1], f0.d[1]))
        {
            return "feature_" + std::to_string(l) + " " + dims_string(f) + " must have the batch and channels of feature_0 "
                + dims_string(f0);
        }
    }
    if (differ(rois.d[0], f0.d[0]))
    {
        return "rois " + dims_string(rois) + " have batch " + extent(rois.d[0]) + " but the feature maps have "
            + extent(f0.d[0]);
    }
    return {};
}

std::string check_nms_shapes(Dims const* in, int32_t nbInputs)
{
    if (nbInputs != 2)
    {
        return "needs 2 inputs (boxes, scores), got " + std::to_string(nbInputs);
    }
    Dims const& boxes = in[0];
    Dims const& scores = in[1];
    if (scores.nbDims != 3)
    {
        return "scores must be [B, N, C], got " + dims_string(scores);
    }
    if ((boxes.nbDims != 3 && boxes.nbDims != 4) || differ(boxes.d[boxes.nbDims - 1], 4))
    {
        return "boxes must be [B, N, 4] or [B, N, C, 4], got " + dims_string(boxes);
    }
    if (differ(boxes.d[0], scores.d[0]) || differ(boxes.d[1], scores.d[1])
        || (boxes.nbDims == 4 && differ(boxes.d[2], scores.d[2])))
    {
        return "boxes " + dims_string(boxes) + " and scores " + dims_string(scores)
            + " disagree on B, N" + (boxes.nbDims == 4 ? " or C" : "");
    }
    return {};
}

std::string check_concrete(Dims const* in, int32_t nbInputs)
{
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        for (int32_t j = 0; j < in[i].nbDims; ++j)
        {
            if (in[i].d[j] < 0 || in[i].d[j] > INT32_MAX)
            {
                return "input " + std::to_string(i) + " has shape " + dims_string(in[i])
                    + "; every extent must be in [0, 2^31 - 1]";
            }
        }
    }
    return {};
}

} // namespace mrd::trt
