// CPU reference of MRD_MultiLevelRoiAlign: torchvision's MultiScaleRoIAlign computed through the shared math
// (mrd/roi_align_math.h) that the CUDA kernel also runs.
#include "last_error.h"

#include "mrd/c_api.h"
#include "mrd/params.h"
#include "mrd/roi_align_math.h"

#include <algorithm>
#include <cstddef>

namespace
{

int check_shapes(MrdRoiAlignParams const* p, float const* rois, int32_t batch, int32_t num_rois, int32_t channels,
    float const* const* features, int32_t const* heights, int32_t const* widths, float const* output)
{
    using mrd::host::fail;
    if (p == nullptr || features == nullptr || heights == nullptr || widths == nullptr)
    {
        return fail(MRD_INVALID_ARGUMENT, "null params/features/heights/widths");
    }
    std::string const err = mrd::validate(*p);
    if (!err.empty())
    {
        return fail(MRD_INVALID_ARGUMENT, "MRD_MultiLevelRoiAlign: " + err);
    }
    if (batch < 0 || num_rois < 0 || channels < 0)
    {
        return fail(MRD_INVALID_ARGUMENT, "MRD_MultiLevelRoiAlign: negative batch/num_rois/channels");
    }
    std::size_t const n_out = static_cast<std::size_t>(batch) * num_rois * channels;
    if (n_out > 0 && (rois == nullptr || output == nullptr))
    {
        return fail(MRD_INVALID_ARGUMENT, "MRD_MultiLevelRoiAlign: null rois or output");
    }
    for (int l = 0; l < p->num_levels; ++l)
    {
        if (heights[l] <= 0 || widths[l] <= 0 || (n_out > 0 && features[l] == nullptr))
        {
            return fail(MRD_INVALID_ARGUMENT,
                "MRD_MultiLevelRoiAlign: feature " + std::to_string(l) + " is empty or null");
        }
    }
    return MRD_OK;
}

} // namespace

extern "C" MRD_API int mrd_multilevel_roi_align_f32(MrdRoiAlignParams const* p, float const* rois, int32_t batch,
    int32_t num_rois, int32_t channels, float const* const* features, int32_t const* heights, int32_t const* widths,
    float* output)
{
    int const status = check_shapes(p, rois, batch, num_rois, channels, features, heights, widths, output);
    if (status != MRD_OK)
    {
        return status;
    }
    int const kmin = mrd::k_min(*p);
    int const kmax = mrd::k_max(*p);
    int const ph_n = p->output_height;
    int const pw_n = p->output_width;
    std::size_t const bins = static_cast<std::size_t>(ph_n) * pw_n;
    for (int64_t roi = 0; roi < static_cast<int64_t>(batch) * num_rois; ++roi)
    {
        int64_t const b = roi / num_rois;
        float const* box = rois + roi * 4;
        float* out_roi = output + roi * channels * bins;
        int const level = mrd::roi_level(box[0], box[1], box[2], box[3], static_cast<float>(p->canonical_box_size),
            static_cast<float>(p->canonical_level), kmin, kmax, p->legacy_plus_one);
        if (level < 0)
        {
            std::fill(out_roi, out_roi + channels * bins, 0.0f);
            continue;
        }
        int const h = heights[level];
        int const w = widths[level];
        mrd::RoiGeometry const g = mrd::roi_geometry(
            box[0], box[1], box[2], box[3], p->spatial_scales[level], p->aligned, ph_n, pw_n, p->sampling_ratio);
        for (int c = 0; c < channels; ++c)
        {
            float const* plane = features[level] + (b * channels + c) * static_cast<int64_t>(h) * w;
            for (int ph = 0; ph < ph_n; ++ph)
            {
                for (int pw = 0; pw < pw_n; ++pw)
                {
                    out_roi[c * bins + ph * pw_n + pw] = mrd::roi_align_bin(plane, h, w, g, ph, pw);
                }
            }
        }
    }
    return MRD_OK;
}
