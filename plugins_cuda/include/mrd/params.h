// Validation and derived values of the op attributes, shared by the host library, the kernels and the plugins so
// a bad attribute gets the same message wherever it is caught.
#pragma once

#include "mrd/c_api.h"

#include <cmath>
#include <string>

namespace mrd
{

// FPN level exponent of a spatial scale: 0.25 -> 2 (torchvision's -log2(scale), rounded).
inline int scale_exponent(float scale)
{
    return static_cast<int>(std::lround(-std::log2(static_cast<double>(scale))));
}

inline int k_min(MrdRoiAlignParams const& p)
{
    return scale_exponent(p.spatial_scales[0]);
}

inline int k_max(MrdRoiAlignParams const& p)
{
    return scale_exponent(p.spatial_scales[p.num_levels - 1]);
}

// Empty string when valid, else what is wrong.
inline std::string validate(MrdRoiAlignParams const& p)
{
    if (p.output_height <= 0 || p.output_width <= 0 || p.output_height > MRD_MAX_OUTPUT_SIDE
        || p.output_width > MRD_MAX_OUTPUT_SIDE)
    {
        return "output_height and output_width must lie in [1, " + std::to_string(MRD_MAX_OUTPUT_SIDE) + "], got "
            + std::to_string(p.output_height) + " x " + std::to_string(p.output_width);
    }
    if (p.sampling_ratio > MRD_MAX_SAMPLING)
    {
        return "sampling_ratio must be at most " + std::to_string(MRD_MAX_SAMPLING) + " (<= 0: adaptive), got "
            + std::to_string(p.sampling_ratio);
    }
    if (p.num_levels < 1 || p.num_levels > MRD_MAX_LEVELS)
    {
        return "spatial_scales must have 1 to " + std::to_string(MRD_MAX_LEVELS) + " entries, got "
            + std::to_string(p.num_levels);
    }
    for (int i = 0; i < p.num_levels; ++i)
    {
        float const s = p.spatial_scales[i];
        if (!(s > 0.0f) || std::fabs(std::exp2(-static_cast<double>(scale_exponent(s))) - s) > 1e-6 * s)
        {
            return "spatial_scales must be powers of two (1/4, 1/8, ...), got " + std::to_string(s);
        }
        if (i > 0 && scale_exponent(s) != scale_exponent(p.spatial_scales[i - 1]) + 1)
        {
            return "spatial_scales must halve from one level to the next (finest level first)";
        }
    }
    if (p.canonical_box_size <= 0)
    {
        return "canonical_box_size must be positive";
    }
    if (p.legacy_plus_one != 0 && p.legacy_plus_one != 1)
    {
        return "legacy_plus_one must be 0 or 1, got " + std::to_string(p.legacy_plus_one);
    }
    return {};
}

inline std::string validate(MrdNmsParams const& p)
{
    if (p.keep_top_k <= 0)
    {
        return "keep_top_k must be positive, got " + std::to_string(p.keep_top_k);
    }
    if (std::isnan(p.iou_threshold) || std::isnan(p.score_threshold) || std::isnan(p.min_box_size))
    {
        return "thresholds must not be NaN";
    }
    return {};
}

} // namespace mrd
