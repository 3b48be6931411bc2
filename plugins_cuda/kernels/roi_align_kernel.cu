// CUDA MRD_MultiLevelRoiAlign: one thread per output element, all FPN levels in one launch (torchvision runs one
// roi_align per level plus gathers and scatters). The per-element math is mrd/roi_align_math.h, the same code the
// CPU reference runs.
#include "last_error.h"

#include "mrd/c_api.h"
#include "mrd/params.h"
#include "mrd/roi_align_math.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cstdint>

namespace
{

template <typename T>
struct Levels
{
    T const* data[MRD_MAX_LEVELS];
    int32_t height[MRD_MAX_LEVELS];
    int32_t width[MRD_MAX_LEVELS];
    float scale[MRD_MAX_LEVELS];
};

struct Config
{
    int32_t num_rois; // per image
    int32_t channels;
    int32_t pooled_h;
    int32_t pooled_w;
    int32_t sampling_ratio;
    int32_t aligned;
    float canonical_box_size;
    float canonical_level;
    int32_t k_min;
    int32_t k_max;
    int32_t legacy_plus_one;
};

// Index: int32_t when every tensor has fewer than 2^31 elements (the usual case; 32-bit division and remainder
// are several times cheaper than 64-bit ones on the GPU), int64_t otherwise. The loop counter stays 64-bit so
// the grid stride cannot overflow; only the per-element index arithmetic is done in Index.
template <typename T, typename Index>
__global__ void multilevel_roi_align_kernel(float const* __restrict__ rois, Levels<T> levels, Config cfg,
    int64_t total, T* __restrict__ output)
{
    Index const pooled_w = cfg.pooled_w;
    Index const pooled_h = cfg.pooled_h;
    Index const channels = cfg.channels;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        Index const idx = static_cast<Index>(i);
        Index const bin = idx / pooled_w;
        int const pw = static_cast<int>(idx - bin * pooled_w);
        Index const plane_index = bin / pooled_h; // roi * channels + c
        int const ph = static_cast<int>(bin - plane_index * pooled_h);
        Index const roi = plane_index / channels;
        int const c = static_cast<int>(plane_index - roi * channels);
        Index const b = roi / static_cast<Index>(cfg.num_rois);
        float const x1 = rois[roi * 4 + 0];
        float const y1 = rois[roi * 4 + 1];
        float const x2 = rois[roi * 4 + 2];
        float const y2 = rois[roi * 4 + 3];
        int const level = mrd::roi_level(x1, y1, x2, y2, cfg.canonical_box_size, cfg.canonical_level, cfg.k_min,
            cfg.k_max, cfg.legacy_plus_one);
        float value = 0.0f;
        if (level >= 0)
        {
            int const h = levels.height[level];
            int const w = levels.width[level];
            mrd::RoiGeometry const g = mrd::roi_geometry(
                x1, y1, x2, y2, levels.scale[level], cfg.aligned, cfg.pooled_h, cfg.pooled_w, cfg.sampling_ratio);
            T const* plane = levels.data[level] + (b * channels + c) * static_cast<Index>(h) * w;
            value = mrd::roi_align_bin(plane, h, w, g, ph, pw);
        }
        output[idx] = mrd::from_float<T>(value);
    }
}

template <typename T>
int launch(MrdRoiAlignParams const& p, float const* rois, int32_t batch, int32_t num_rois, int32_t channels,
    void const* const* features, int32_t const* heights, int32_t const* widths, void* output, cudaStream_t stream)
{
    Levels<T> levels{};
    for (int l = 0; l < p.num_levels; ++l)
    {
        levels.data[l] = static_cast<T const*>(features[l]);
        levels.height[l] = heights[l];
        levels.width[l] = widths[l];
        levels.scale[l] = p.spatial_scales[l];
    }
    Config const cfg{num_rois, channels, p.output_height, p.output_width, p.sampling_ratio, p.aligned,
        static_cast<float>(p.canonical_box_size), static_cast<float>(p.canonical_level), mrd::k_min(p),
        mrd::k_max(p), p.legacy_plus_one};
    int64_t const total
        = static_cast<int64_t>(batch) * num_rois * channels * p.output_height * p.output_width;
    if (total == 0)
    {
        return MRD_OK;
    }
    // every element count (output, rois, each feature map) below 2^31: 32-bit indices
    int64_t largest = std::max<int64_t>(total, static_cast<int64_t>(batch) * num_rois * 4);
    for (int l = 0; l < p.num_levels; ++l)
    {
        largest = std::max<int64_t>(largest, static_cast<int64_t>(batch) * channels * heights[l] * widths[l]);
    }
    int const threads = 256;
    int64_t const blocks = std::min<int64_t>((total + threads - 1) / threads, int64_t{1} << 20);
    if (largest <= INT32_MAX)
    {
        multilevel_roi_align_kernel<T, int32_t><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
            rois, levels, cfg, total, static_cast<T*>(output));
    }
    else
    {
        multilevel_roi_align_kernel<T, int64_t><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
            rois, levels, cfg, total, static_cast<T*>(output));
    }
    return mrd::cuda::check_launch("MRD_MultiLevelRoiAlign kernel");
}

} // namespace

extern "C" MRD_API int mrd_cuda_multilevel_roi_align(int32_t dtype, MrdRoiAlignParams const* params,
    float const* rois, int32_t batch, int32_t num_rois, int32_t channels, void const* const* features,
    int32_t const* heights, int32_t const* widths, void* output, void* stream)
{
    using mrd::cuda::fail;
    if (params == nullptr || features == nullptr || heights == nullptr || widths == nullptr)
    {
        return fail(MRD_INVALID_ARGUMENT, "MRD_MultiLevelRoiAlign: null params/features/heights/widths");
    }
    std::string const err = mrd::validate(*params);
    if (!err.empty())
    {
        return fail(MRD_INVALID_ARGUMENT, "MRD_MultiLevelRoiAlign: " + err);
    }
    if (batch < 0 || num_rois < 0 || channels < 0)
    {
        return fail(MRD_INVALID_ARGUMENT, "MRD_MultiLevelRoiAlign: negative batch/num_rois/channels");
    }
    for (int l = 0; l < params->num_levels; ++l)
    {
        if (heights[l] <= 0 || widths[l] <= 0)
        {
            return fail(MRD_INVALID_ARGUMENT, "MRD_MultiLevelRoiAlign: feature " + std::to_string(l) + " is empty");
        }
    }
    auto const s = static_cast<cudaStream_t>(stream);
    switch (dtype)
    {
    case MRD_FLOAT32:
        return launch<float>(*params, rois, batch, num_rois, channels, features, heights, widths, output, s);
    case MRD_FLOAT16:
        return launch<__half>(*params, rois, batch, num_rois, channels, features, heights, widths, output, s);
    default: return fail(MRD_INVALID_ARGUMENT, "MRD_MultiLevelRoiAlign: dtype must be MRD_FLOAT32 or MRD_FLOAT16");
    }
}
