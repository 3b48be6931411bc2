#include "plugin_fields.h"

#include "mrd/op_spec.h"
#include "mrd/params.h"

#include <cstring>
#include <iostream>
#include <mutex>

namespace mrd::trt
{

using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;

namespace
{

std::mutex gLoggerMutex;
nvinfer1::ILoggerFinder* gLoggerFinder = nullptr;
nvinfer1::ILogger* gFallbackLogger = nullptr;

// One numeric field as double, whatever numeric type the producer used; false for other types.
bool field_value(PluginField const& f, int32_t i, double& out)
{
    switch (f.type)
    {
    case PluginFieldType::kFLOAT32: out = static_cast<float const*>(f.data)[i]; return true;
    case PluginFieldType::kFLOAT64: out = static_cast<double const*>(f.data)[i]; return true;
    case PluginFieldType::kINT32: out = static_cast<int32_t const*>(f.data)[i]; return true;
    case PluginFieldType::kINT64: out = static_cast<double>(static_cast<int64_t const*>(f.data)[i]); return true;
    default: return false;
    }
}

std::string read_scalar(PluginField const& f, double& out)
{
    if (f.data == nullptr || f.length != 1 || !field_value(f, 0, out))
    {
        return std::string("field '") + f.name + "' must be one int32/int64/float32/float64 value";
    }
    return {};
}

} // namespace

void set_logger_finder(nvinfer1::ILoggerFinder* finder) noexcept
{
    try
    {
        std::lock_guard<std::mutex> lock(gLoggerMutex);
        if (gLoggerFinder == nullptr && finder != nullptr)
        {
            gLoggerFinder = finder;
        }
    }
    catch (...)
    {
        // std::mutex::lock failed (std::system_error): keep the previous logger
    }
}

void set_fallback_logger(nvinfer1::ILogger* logger) noexcept
{
    try
    {
        std::lock_guard<std::mutex> lock(gLoggerMutex);
        gFallbackLogger = logger;
    }
    catch (...)
    {
    }
}

void log_message(nvinfer1::ILogger::Severity severity, char const* message, char const* detail) noexcept
{
    try
    {
        std::string text = message != nullptr ? message : "";
        if (detail != nullptr)
        {
            text += ": ";
            text += detail;
        }
        nvinfer1::ILogger* logger = nullptr;
        {
            std::lock_guard<std::mutex> lock(gLoggerMutex);
            logger = gLoggerFinder != nullptr ? gLoggerFinder->findLogger() : nullptr;
            if (logger == nullptr)
            {
                logger = gFallbackLogger;
            }
        }
        if (logger != nullptr)
        {
            logger->log(severity, text.c_str());
        }
        else
        {
            std::cerr << "[mrd_trt_plugins] " << text << std::endl;
        }
    }
    catch (...)
    {
        // out of memory while reporting: nothing left to report with
    }
}

void log_error(std::string const& message) noexcept
{
    log_message(nvinfer1::ILogger::Severity::kERROR, message.c_str());
}

MrdRoiAlignParams default_roi_align_params()
{
    // runtime/plugins/spec.py: MultiLevelRoiAlignAttrs defaults
    MrdRoiAlignParams p{};
    p.output_height = 7;
    p.output_width = 7;
    p.sampling_ratio = 2;
    p.aligned = 0;
    p.canonical_box_size = 224;
    p.canonical_level = 4;
    p.legacy_plus_one = 0;
    p.num_levels = 4;
    float const scales[] = {0.25f, 0.125f, 0.0625f, 0.03125f};
    std::memcpy(p.spatial_scales, scales, sizeof(scales));
    return p;
}

MrdNmsParams default_nms_params()
{
    // runtime/plugins/spec.py: BatchedNmsAttrs defaults
    return MrdNmsParams{0.05f, 0.5f, 0.01f, -1, 100, -1};
}

std::vector<PluginField> roi_align_field_declarations()
{
    std::vector<PluginField> fields;
    for (char const* name : kRoiAlignFieldNames)
    {
        bool const is_scales = std::strcmp(name, "spatial_scales") == 0;
        fields.emplace_back(name, nullptr, is_scales ? PluginFieldType::kFLOAT32 : PluginFieldType::kINT32,
            is_scales ? MRD_MAX_LEVELS : 1);
    }
    return fields;
}

std::vector<PluginField> nms_field_declarations()
{
    std::vector<PluginField> fields;
    for (char const* name : kNmsFieldNames)
    {
        bool const is_float = std::strstr(name, "threshold") != nullptr || std::strcmp(name, "min_box_size") == 0;
        fields.emplace_back(name, nullptr, is_float ? PluginFieldType::kFLOAT32 : PluginFieldType::kINT32, 1);
    }
    return fields;
}

std::string parse_roi_align_fields(PluginFieldCollection const* fc, MrdRoiAlignParams& p)
{
    p = default_roi_align_params();
    for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        std::string const name = f.name != nullptr ? f.name : "";
        if (name == "spatial_scales")
        {
            if (f.data == nullptr || f.length < 1 || f.length > MRD_MAX_LEVELS)
            {
                return "field 'spatial_scales' must have 1 to " + std::to_string(MRD_MAX_LEVELS) + " values";
            }
            p.num_levels = f.length;
            for (int32_t j = 0; j < f.length; ++j)
            {
                double v = 0;
                if (!field_value(f, j, v))
                {
                    return "field 'spatial_scales' must be float32/float64";
                }
                p.spatial_scales[j] = static_cast<float>(v);
            }
            continue;
        }
        int32_t* target = name == "output_height" ? &p.output_height
            : name == "output_width"              ? &p.output_width
            : name == "sampling_ratio"            ? &p.sampling_ratio
            : name == "aligned"                   ? &p.aligned
            : name == "canonical_box_size"        ? &p.canonical_box_size
            : name == "canonical_level"           ? &p.canonical_level
            : name == "legacy_plus_one"           ? &p.legacy_plus_one
                                                  : nullptr;
        if (target == nullptr)
        {
            return "unknown field '" + name + "'";
        }
        double v = 0;
        std::string const err = read_scalar(f, v);
        if (!err.empty())
        {
            return err;
        }
        *target = static_cast<int32_t>(v);
    }
    return validate(p);
}

std::string parse_nms_fields(PluginFieldCollection const* fc, MrdNmsParams& p, int64_t* workspace_bytes)
{
    p = default_nms_params();
    if (workspace_bytes != nullptr)
    {
        *workspace_bytes = 0;
    }
    for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        std::string const name = f.name != nullptr ? f.name : "";
        double v = 0;
        std::string const err = read_scalar(f, v);
        if (name == "score_threshold" || name == "iou_threshold" || name == "min_box_size")
        {
            if (!err.empty())
            {
                return err;
            }
            float& target = name == "score_threshold" ? p.score_threshold
                : name == "iou_threshold"             ? p.iou_threshold
                                                      : p.min_box_size;
            target = static_cast<float>(v);
        }
        else if (name == "pre_nms_top_k" || name == "keep_top_k" || name == "background_class")
        {
            if (!err.empty())
            {
                return err;
            }
            int32_t& target = name == "pre_nms_top_k" ? p.pre_nms_top_k
                : name == "keep_top_k"                ? p.keep_top_k
                                                      : p.background_class;
            target = static_cast<int32_t>(v);
        }
        else if (name == kNmsWorkspaceField)
        {
            // written by getFieldsToSerialize only (see NmsPlugin::getWorkspaceSize), never an ONNX attribute
            if (!err.empty() || !(v >= 0.0) || v > 9.0e18)
            {
                return std::string("field '") + kNmsWorkspaceField + "' must be one non-negative integer";
            }
            if (workspace_bytes != nullptr)
            {
                *workspace_bytes = f.type == PluginFieldType::kINT64 ? *static_cast<int64_t const*>(f.data)
                                                                      : static_cast<int64_t>(v);
            }
        }
        else
        {
            return "unknown field '" + name + "'";
        }
    }
    return validate(p);
}

std::vector<PluginField> roi_align_fields_of(MrdRoiAlignParams const& p)
{
    return {
        PluginField(kRoiAlignFieldNames[0], &p.output_height, PluginFieldType::kINT32, 1),
        PluginField(kRoiAlignFieldNames[1], &p.output_width, PluginFieldType::kINT32, 1),
        PluginField(kRoiAlignFieldNames[2], &p.sampling_ratio, PluginFieldType::kINT32, 1),
        PluginField(kRoiAlignFieldNames[3], &p.aligned, PluginFieldType::kINT32, 1),
        PluginField(kRoiAlignFieldNames[4], p.spatial_scales, PluginFieldType::kFLOAT32, p.num_levels),
        PluginField(kRoiAlignFieldNames[5], &p.canonical_box_size, PluginFieldType::kINT32, 1),
        PluginField(kRoiAlignFieldNames[6], &p.canonical_level, PluginFieldType::kINT32, 1),
        PluginField(kRoiAlignFieldNames[7], &p.legacy_plus_one, PluginFieldType::kINT32, 1),
    };
}

std::vector<PluginField> nms_fields_of(MrdNmsParams const& p, int64_t const& workspace_bytes)
{
    return {
        PluginField(kNmsFieldNames[0], &p.score_threshold, PluginFieldType::kFLOAT32, 1),
        PluginField(kNmsFieldNames[1], &p.iou_threshold, PluginFieldType::kFLOAT32, 1),
        PluginField(kNmsFieldNames[2], &p.min_box_size, PluginFieldType::kFLOAT32, 1),
        PluginField(kNmsFieldNames[3], &p.pre_nms_top_k, PluginFieldType::kINT32, 1),
        PluginField(kNmsFieldNames[4], &p.keep_top_k, PluginFieldType::kINT32, 1),
        PluginField(kNmsFieldNames[5], &p.background_class, PluginFieldType::kINT32, 1),
        PluginField(kNmsWorkspaceField, &workspace_bytes, PluginFieldType::kINT64, 1),
    };
}

} // namespace mrd::trt
