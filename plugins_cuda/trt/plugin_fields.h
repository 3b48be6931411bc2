// Reading plugin fields (the ONNX attributes TensorRT's parser hands over) into the C API's parameter structs,
// and the logging both plugins share.
#pragma once

#include "NvInferRuntime.h"
#include "mrd/c_api.h"

#include <string>
#include <vector>

namespace mrd::trt
{

// Reports through TensorRT's logger when the loading process gave one (setLoggerFinder), else to stderr.
void log_error(std::string const& message) noexcept;
void set_logger_finder(nvinfer1::ILoggerFinder* finder) noexcept;

// Field declarations (names from mrd/op_spec.h) for IPluginCreatorV3One::getFieldNames.
std::vector<nvinfer1::PluginField> roi_align_field_declarations();
std::vector<nvinfer1::PluginField> nms_field_declarations();

// Parse a field collection; fields that are absent keep the spec's defaults. Empty string when valid.
std::string parse_roi_align_fields(nvinfer1::PluginFieldCollection const* fc, MrdRoiAlignParams& p);
std::string parse_nms_fields(nvinfer1::PluginFieldCollection const* fc, MrdNmsParams& p);

MrdRoiAlignParams default_roi_align_params();
MrdNmsParams default_nms_params();

// Fields pointing into `p` (which must outlive them), for getFieldsToSerialize.
std::vector<nvinfer1::PluginField> roi_align_fields_of(MrdRoiAlignParams const& p);
std::vector<nvinfer1::PluginField> nms_fields_of(MrdNmsParams const& p);

} // namespace mrd::trt
