// Shape rules of the two ops (runtime/plugins/spec.py), checked wherever TensorRT shows the plugin shapes:
// getOutputShapes (extents that are build-time constants), configurePlugin (desc.dims, -1 where an extent is
// only known at run time), onShapeChange and enqueue (every extent known). A mismatch is an error message and
// a non-zero return, never an out-of-bounds read in a kernel.
#pragma once

#include "NvInferRuntime.h"
#include "mrd/c_api.h"

#include <cstdint>
#include <string>

namespace mrd::trt
{

// The extents of `e` that are build-time constants; -1 for the others.
nvinfer1::Dims known_extents(nvinfer1::DimsExprs const& e) noexcept;

// rois [B, R, 4] and num_levels feature maps [B, C, H_l, W_l] with one B and one C. Extents of -1 are unknown
// and match anything. Empty string when the shapes can be right.
std::string check_roi_align_shapes(MrdRoiAlignParams const& p, nvinfer1::Dims const* in, int32_t nbInputs);

// boxes [B, N, 4] or [B, N, C, 4] and scores [B, N, C] with the same B, N (and C). Same convention.
std::string check_nms_shapes(nvinfer1::Dims const* in, int32_t nbInputs);

// Every extent is known and fits the kernels' int32 arguments (run time: onShapeChange, enqueue).
std::string check_concrete(nvinfer1::Dims const* in, int32_t nbInputs);

std::string dims_string(nvinfer1::Dims const& d);

} // namespace mrd::trt
