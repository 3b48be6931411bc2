// MRD_MultiLevelRoiAlign as a TensorRT plugin: inputs rois [B,R,4] float32 and L feature maps [B,C,H_l,W_l]
// (float32 or float16, all the same), output [B*R,C,P_h,P_w] in the features' type.
#include "plugin_fields.h"
#include "plugins.h"
#include "shape_checks.h"

#include "mrd/op_spec.h"

#include <array>

namespace mrd::trt
{

using namespace nvinfer1;

namespace
{

constexpr int32_t kMaxInputs = MRD_MAX_LEVELS + 1;

} // namespace

RoiAlignPlugin::RoiAlignPlugin(MrdRoiAlignParams const& params)
    : mParams(params)
{
}

IPluginV3* RoiAlignPlugin::clone() noexcept
{
    return guarded<IPluginV3*>("MRD_MultiLevelRoiAlign clone", nullptr, [&] { return new RoiAlignPlugin(mParams); });
}

char const* RoiAlignPlugin::getPluginName() const noexcept
{
    return kRoiAlignPluginName;
}

int32_t RoiAlignPlugin::getNbOutputs() const noexcept
{
    return 1;
}

std::string RoiAlignPlugin::check(PluginTensorDesc const* in, int32_t nbInputs) const
{
    if (in == nullptr)
    {
        return "no input descriptors";
    }
    if (nbInputs != mParams.num_levels + 1)
    {
        return check_roi_align_shapes(mParams, nullptr, nbInputs); // the input count message, reads nothing
    }
    std::array<Dims, kMaxInputs> dims{};
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        dims[i] = in[i].dims;
    }
    return check_roi_align_shapes(mParams, dims.data(), nbInputs);
}

int32_t RoiAlignPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const*, int32_t nbOutputs) noexcept
{
    return guarded<int32_t>("MRD_MultiLevelRoiAlign configurePlugin", -1, [&] {
        if (nbOutputs != 1 || in == nullptr || nbInputs < 2 || nbInputs > kMaxInputs)
        {
            report("needs rois, " + std::to_string(mParams.num_levels) + " feature maps and 1 output; got "
                + std::to_string(nbInputs) + " inputs and " + std::to_string(nbOutputs) + " outputs");
            return -1;
        }
        // desc.dims holds -1 wherever an extent is only known at run time; those match anything here and are
        // checked in onShapeChange.
        std::array<Dims, kMaxInputs> dims{};
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            dims[i] = in[i].desc.dims;
        }
        std::string const err = check_roi_align_shapes(mParams, dims.data(), nbInputs);
        if (!err.empty())
        {
            report(err);
            return -1;
        }
        return 0;
    });
}

int32_t RoiAlignPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 1 || nbInputs < 2)
    {
        report("getOutputDataTypes: expected rois and feature maps, 1 output");
        return -1;
    }
    outputTypes[0] = inputTypes[1];
    return 0;
}

int32_t RoiAlignPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t,
    DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    return guarded<int32_t>("MRD_MultiLevelRoiAlign getOutputShapes", -1, [&] {
        if (inputs == nullptr || outputs == nullptr || nbOutputs != 1 || nbInputs < 2 || nbInputs > kMaxInputs)
        {
            report("expected rois [B, R, 4] and " + std::to_string(mParams.num_levels)
                + " feature maps [B, C, H, W], 1 output; got " + std::to_string(nbInputs) + " inputs");
            return -1;
        }
        std::array<Dims, kMaxInputs> dims{};
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            dims[i] = known_extents(inputs[i]);
        }
        std::string const err = check_roi_align_shapes(mParams, dims.data(), nbInputs);
        if (!err.empty())
        {
            report(err);
            return -1;
        }
        IDimensionExpr const* rows = exprBuilder.operation(DimensionOperation::kPROD, *inputs[0].d[0], *inputs[0].d[1]);
        IDimensionExpr const* height = exprBuilder.constant(mParams.output_height);
        IDimensionExpr const* width = exprBuilder.constant(mParams.output_width);
        if (rows == nullptr || height == nullptr || width == nullptr)
        {
            report("the expression builder returned no expression");
            return -1;
        }
        outputs[0].nbDims = 4;
        outputs[0].d[0] = rows;
        outputs[0].d[1] = inputs[1].d[1];
        outputs[0].d[2] = height;
        outputs[0].d[3] = width;
        return 0;
    });
}

bool RoiAlignPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs || inOut[pos].desc.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    DataType const type = inOut[pos].desc.type;
    if (pos == 0)
    {
        return type == DataType::kFLOAT; // rois stay float32: float16 coordinates would change FPN levels
    }
    if (pos == 1)
    {
        return type == DataType::kFLOAT || type == DataType::kHALF;
    }
    return type == inOut[1].desc.type; // the other levels and the output follow feature 0
}

int32_t RoiAlignPlugin::onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const*, int32_t) noexcept
{
    return guarded<int32_t>("MRD_MultiLevelRoiAlign onShapeChange", -1, [&] {
        std::string const err = check(in, nbInputs);
        if (!err.empty())
        {
            report(err);
            return -1;
        }
        return 0;
    });
}

int32_t RoiAlignPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const*,
    void const* const* inputs, void* const* outputs, void*, cudaStream_t stream) noexcept
{
    return guarded<int32_t>("MRD_MultiLevelRoiAlign enqueue", -1, [&] {
        int32_t const nbInputs = mParams.num_levels + 1;
        // onShapeChange has checked these shapes; checking again costs a few comparisons and keeps the kernel
        // from reading out of bounds should TensorRT skip it. No allocation unless there is an error.
        std::string err = check(inputDesc, nbInputs);
        if (err.empty() && inputDesc != nullptr)
        {
            std::array<Dims, kMaxInputs> dims{};
            for (int32_t i = 0; i < nbInputs; ++i)
            {
                dims[i] = inputDesc[i].dims;
            }
            err = check_concrete(dims.data(), nbInputs);
        }
        if (!err.empty())
        {
            report(err, ErrorCode::kFAILED_EXECUTION);
            return -1;
        }
        Dims const& rois = inputDesc[0].dims;
        int32_t heights[MRD_MAX_LEVELS];
        int32_t widths[MRD_MAX_LEVELS];
        for (int32_t l = 0; l < mParams.num_levels; ++l)
        {
            heights[l] = static_cast<int32_t>(inputDesc[1 + l].dims.d[2]);
            widths[l] = static_cast<int32_t>(inputDesc[1 + l].dims.d[3]);
        }
        int32_t const dtype = inputDesc[1].type == DataType::kHALF ? MRD_FLOAT16 : MRD_FLOAT32;
        int const status = mrd_cuda_multilevel_roi_align(dtype, &mParams, static_cast<float const*>(inputs[0]),
            static_cast<int32_t>(rois.d[0]), static_cast<int32_t>(rois.d[1]),
            static_cast<int32_t>(inputDesc[1].dims.d[1]), inputs + 1, heights, widths, outputs[0], stream);
        if (status != MRD_OK)
        {
            report(mrd_cuda_last_error(), ErrorCode::kFAILED_EXECUTION);
            return -1;
        }
        return 0;
    });
}

PluginFieldCollection const* RoiAlignPlugin::getFieldsToSerialize() noexcept
{
    return guarded<PluginFieldCollection const*>("MRD_MultiLevelRoiAlign getFieldsToSerialize", nullptr, [&] {
        mSerialFields = roi_align_fields_of(mParams);
        mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
        mSerialCollection.fields = mSerialFields.data();
        return &mSerialCollection;
    });
}

RoiAlignPluginCreator::RoiAlignPluginCreator()
    : mFields(roi_align_field_declarations())
{
    mCollection.nbFields = static_cast<int32_t>(mFields.size());
    mCollection.fields = mFields.data();
}

char const* RoiAlignPluginCreator::getPluginName() const noexcept
{
    return kRoiAlignPluginName;
}

char const* RoiAlignPluginCreator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* RoiAlignPluginCreator::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

PluginFieldCollection const* RoiAlignPluginCreator::getFieldNames() noexcept
{
    return &mCollection;
}

IPluginV3* RoiAlignPluginCreator::createPlugin(char const* name, PluginFieldCollection const* fc, TensorRTPhase) noexcept
{
    return guarded<IPluginV3*>("MRD_MultiLevelRoiAlign createPlugin", nullptr, [&]() -> IPluginV3* {
        MrdRoiAlignParams params{};
        std::string const err = parse_roi_align_fields(fc, params);
        if (!err.empty())
        {
            log_error(std::string(kRoiAlignPluginName) + " '" + (name != nullptr ? name : "") + "': " + err);
            return nullptr;
        }
        return new RoiAlignPlugin(params);
    });
}

} // namespace mrd::trt
