// Reading plugin fields (the ONNX attributes TensorRT's parser hands over) into the C API's parameter structs,
// and the logging both plugins share.
#pragma once

#include "NvInferRuntime.h"
#include "mrd/c_api.h"

#include <cstdint>
#include <exception>
#include <string>
#include <vector>

namespace mrd::trt
{

// Errors go to TensorRT's logger: the one the loading process handed over through setLoggerFinder
// (IPluginRegistry::loadLibrary does), else the fallback logger (the self-registering library sets TensorRT's
// global logger), else stderr. None of these throws.
void set_logger_finder(nvinfer1::ILoggerFinder* finder) noexcept;
void set_fallback_logger(nvinfer1::ILogger* logger) noexcept;
void log_message(nvinfer1::ILogger::Severity severity, char const* message, char const* detail = nullptr) noexcept;
void log_error(std::string const& message) noexcept;

// Runs `body`; an exception escaping it (std::bad_alloc from a string or vector) is logged as an error from
// `where` and `fallback` returned, so that no exception crosses TensorRT's noexcept interface.
template <typename R, typename F>
R guarded(char const* where, R fallback, F&& body) noexcept
{
    try
    {
        return body();
    }
    catch (std::exception const& e)
    {
        log_message(nvinfer1::ILogger::Severity::kERROR, where, e.what());
    }
    catch (...)
    {
        log_message(nvinfer1::ILogger::Severity::kERROR, where, "unknown exception");
    }
    return fallback;
}

// Field declarations (names from mrd/op_spec.h) for IPluginCreatorV3One::getFieldNames.
std::vector<nvinfer1::PluginField> roi_align_field_declarations();
std::vector<nvinfer1::PluginField> nms_field_declarations();

// Parse a field collection; fields that are absent keep the spec's defaults. Empty string when valid.
// Numbers are accepted as int32/int64/float32/float64 scalars: TensorRT's ONNX parser passes INT attributes as
// kINT32, FLOAT as kFLOAT32 and FLOATS as a kFLOAT32 array; getFieldsToSerialize writes the same types.
std::string parse_roi_align_fields(nvinfer1::PluginFieldCollection const* fc, MrdRoiAlignParams& p);
// `workspace_bytes` (may be null) receives the serialized kNmsWorkspaceField, 0 when absent.
std::string parse_nms_fields(nvinfer1::PluginFieldCollection const* fc, MrdNmsParams& p, int64_t* workspace_bytes);

MrdRoiAlignParams default_roi_align_params();
MrdNmsParams default_nms_params();

// Fields pointing into `p` (and `workspace_bytes`), which must outlive them, for getFieldsToSerialize.
std::vector<nvinfer1::PluginField> roi_align_fields_of(MrdRoiAlignParams const& p);
std::vector<nvinfer1::PluginField> nms_fields_of(MrdNmsParams const& p, int64_t const& workspace_bytes);

} // namespace mrd::trt
