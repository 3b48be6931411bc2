// Per-element math of MRD_MultiLevelRoiAlign, exactly torchvision's (poolers.LevelMapper and the roi_align
// kernel), shared by the CPU reference and the CUDA kernel. See runtime/plugins/spec.py for the op spec.
#pragma once

#include "mrd/c_api.h"
#include "mrd/common.h"

namespace mrd
{

// FPN level index of a roi, torchvision's LevelMapper in float32:
// floor(canonical_level + log2(sqrt(area) / canonical_box_size) + 1e-6), clamped to [k_min, k_max], minus k_min,
// with area = (x2 - x1) * (y2 - y1), or (x2 - x1 + 1) * (y2 - y1 + 1) when legacy_plus_one is nonzero
// (maskrcnn-benchmark's level assignment; the +1 is added only then, so the default rounds exactly as before).
// Returns -1 where torchvision assigns no level (a NaN area, e.g. x2 < x1 with y2 >= y1): its output row stays 0.
MRD_HD int roi_level(float x1, float y1, float x2, float y2, float canonical_box_size, float canonical_level,
    int k_min, int k_max, int legacy_plus_one)
{
    float width = sub(x2, x1);
    float height = sub(y2, y1);
    if (legacy_plus_one)
    {
        width = add(width, 1.0f);
        height = add(height, 1.0f);
    }
    float const area = mul(width, height);
    float const s = sqrtf(area);
    float const lvl = floorf(add(add(canonical_level, log2f(s / canonical_box_size)), 1e-6f));
    if (lvl != lvl)
    {
        return -1;
    }
    float const clamped = min_f(max_f(lvl, static_cast<float>(k_min)), static_cast<float>(k_max));
    return static_cast<int>(clamped) - k_min;
}

// Geometry of one roi on one feature map, computed once per roi (torchvision roi_align, forward).
struct RoiGeometry
{
    float start_h;
    float start_w;
    float bin_h;
    float bin_w;
    int grid_h;
    int grid_w;
    float count;
};

MRD_HD RoiGeometry roi_geometry(float x1, float y1, float x2, float y2, float spatial_scale, int aligned,
    int pooled_height, int pooled_width, int sampling_ratio)
{
    float const offset = aligned ? 0.5f : 0.0f;
    RoiGeometry g;
    g.start_w = sub(mul(x1, spatial_scale), offset);
    g.start_h = sub(mul(y1, spatial_scale), offset);
    float const end_w = sub(mul(x2, spatial_scale), offset);
    float const end_h = sub(mul(y2, spatial_scale), offset);
    float roi_width = sub(end_w, g.start_w);
    float roi_height = sub(end_h, g.start_h);
    if (!aligned)
    {
        // legacy (aligned=False) behaviour: force malformed rois to be 1x1
        roi_width = max_f(roi_width, 1.0f);
        roi_height = max_f(roi_height, 1.0f);
    }
    g.bin_h = roi_height / static_cast<float>(pooled_height);
    g.bin_w = roi_width / static_cast<float>(pooled_width);
    // A roi with a non-finite coordinate (an FP16 box decode that overflowed, a crafted input) pools to 0: no
    // sample position of it is a number, and casting one to an index is undefined. Adaptive grids are capped
    // (MRD_MAX_SAMPLING: no legitimate roi reaches it), so a huge roi cannot loop for ever.
    bool const finite = finite_f(g.start_h) && finite_f(g.start_w) && finite_f(end_h) && finite_f(end_w)
        && finite_f(roi_height) && finite_f(roi_width);
    float const adaptive_h = min_f(ceilf(roi_height / pooled_height), static_cast<float>(MRD_MAX_SAMPLING));
    float const adaptive_w = min_f(ceilf(roi_width / pooled_width), static_cast<float>(MRD_MAX_SAMPLING));
    g.grid_h = !finite ? 0 : sampling_ratio > 0 ? sampling_ratio : static_cast<int>(adaptive_h);
    g.grid_w = !finite ? 0 : sampling_ratio > 0 ? sampling_ratio : static_cast<int>(adaptive_w);
    int const n = g.grid_h * g.grid_w;
    g.count = static_cast<float>(n > 1 ? n : 1);
    return g;
}

// Bilinear interpolation at (y, x) of one H x W plane; 0 outside [-1, H] x [-1, W] (torchvision's border rule).
template <typename T>
MRD_HD float bilinear_sample(T const* plane, int height, int width, float y, float x)
{
    // written so that a NaN position is outside too (every comparison with NaN is false)
    if (!(y >= -1.0f && y <= static_cast<float>(height) && x >= -1.0f && x <= static_cast<float>(width)))
    {
        return 0.0f;
    }
    if (y <= 0.0f)
    {
        y = 0.0f;
    }
    if (x <= 0.0f)
    {
        x = 0.0f;
    }
    int y_low = static_cast<int>(y);
    int x_low = static_cast<int>(x);
    int y_high;
    int x_high;
    if (y_low >= height - 1)
    {
        y_high = y_low = height - 1;
        y = static_cast<float>(y_low);
    }
    else
    {
        y_high = y_low + 1;
    }
    if (x_low >= width - 1)
    {
        x_high = x_low = width - 1;
        x = static_cast<float>(x_low);
    }
    else
    {
        x_high = x_low + 1;
    }
    float const ly = sub(y, static_cast<float>(y_low));
    float const lx = sub(x, static_cast<float>(x_low));
    float const hy = sub(1.0f, ly);
    float const hx = sub(1.0f, lx);
    float const w1 = mul(hy, hx);
    float const w2 = mul(hy, lx);
    float const w3 = mul(ly, hx);
    float const w4 = mul(ly, lx);
    float const v1 = to_float(plane[y_low * width + x_low]);
    float const v2 = to_float(plane[y_low * width + x_high]);
    float const v3 = to_float(plane[y_high * width + x_low]);
    float const v4 = to_float(plane[y_high * width + x_high]);
    return add(add(add(mul(w1, v1), mul(w2, v2)), mul(w3, v3)), mul(w4, v4));
}

// Average of the grid_h x grid_w bilinear samples of output bin (ph, pw); accumulates in float32.
template <typename T>
MRD_HD float roi_align_bin(T const* plane, int height, int width, RoiGeometry const& g, int ph, int pw)
{
    float sum = 0.0f;
    for (int iy = 0; iy < g.grid_h; ++iy)
    {
        float const y = add(add(g.start_h, mul(static_cast<float>(ph), g.bin_h)),
            mul(static_cast<float>(iy + 0.5f), g.bin_h) / static_cast<float>(g.grid_h));
        for (int ix = 0; ix < g.grid_w; ++ix)
        {
            float const x = add(add(g.start_w, mul(static_cast<float>(pw), g.bin_w)),
                mul(static_cast<float>(ix + 0.5f), g.bin_w) / static_cast<float>(g.grid_w));
            sum = add(sum, bilinear_sample(plane, height, width, y, x));
        }
    }
    return sum / g.count;
}

} // namespace mrd
