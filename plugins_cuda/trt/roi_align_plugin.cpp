// MRD_MultiLevelRoiAlign as a TensorRT plugin: inputs rois [B,R,4] float32 and L feature maps [B,C,H_l,W_l]
// (float32 or float16, all the same), output [B*R,C,P_h,P_w] in the features' type.
#include "plugin_fields.h"
#include "plugins.h"

#include "mrd/op_spec.h"

#include <new>

namespace mrd::trt
{

using namespace nvinfer1;

RoiAlignPlugin::RoiAlignPlugin(MrdRoiAlignParams const& params)
    : mParams(params)
{
}

IPluginV3* RoiAlignPlugin::clone() noexcept
{
    return new (std::nothrow) RoiAlignPlugin(mParams);
}

char const* RoiAlignPlugin::getPluginName() const noexcept
{
    return kRoiAlignPluginName;
}

int32_t RoiAlignPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t RoiAlignPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const*, int32_t nbOutputs) noexcept
{
    if (nbInputs != mParams.num_levels + 1 || nbOutputs != 1)
    {
        log_error(std::string(kRoiAlignPluginName) + ": " + std::to_string(nbInputs - 1) + " feature inputs but "
            + std::to_string(mParams.num_levels) + " spatial_scales");
        return -1;
    }
    if (in[0].desc.dims.nbDims != 3 || in[0].desc.dims.d[2] != 4)
    {
        log_error(std::string(kRoiAlignPluginName) + ": rois must be [B, R, 4]");
        return -1;
    }
    for (int32_t i = 1; i < nbInputs; ++i)
    {
        if (in[i].desc.dims.nbDims != 4)
        {
            log_error(std::string(kRoiAlignPluginName) + ": feature maps must be [B, C, H, W]");
            return -1;
        }
    }
    return 0;
}

int32_t RoiAlignPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbOutputs != 1 || nbInputs < 2)
    {
        return -1;
    }
    outputTypes[0] = inputTypes[1];
    return 0;
}

int32_t RoiAlignPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t,
    DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    if (nbInputs != mParams.num_levels + 1 || nbOutputs != 1 || inputs[0].nbDims != 3 || inputs[1].nbDims != 4)
    {
        log_error(std::string(kRoiAlignPluginName) + ": expected rois [B,R,4] and "
            + std::to_string(mParams.num_levels) + " feature maps [B,C,H,W]");
        return -1;
    }
    outputs[0].nbDims = 4;
    outputs[0].d[0] = exprBuilder.operation(DimensionOperation::kPROD, *inputs[0].d[0], *inputs[0].d[1]);
    outputs[0].d[1] = inputs[1].d[1];
    outputs[0].d[2] = exprBuilder.constant(mParams.output_height);
    outputs[0].d[3] = exprBuilder.constant(mParams.output_width);
    return 0;
}

bool RoiAlignPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (pos < 0 || pos >= nbInputs + nbOutputs || inOut[pos].desc.format != TensorFormat::kLINEAR)
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

int32_t RoiAlignPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const*,
    void const* const* inputs, void* const* outputs, void*, cudaStream_t stream) noexcept
{
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
        log_error(mrd_cuda_last_error());
        return -1;
    }
    return 0;
}

PluginFieldCollection const* RoiAlignPlugin::getFieldsToSerialize() noexcept
{
    mSerialFields = roi_align_fields_of(mParams);
    mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialCollection.fields = mSerialFields.data();
    return &mSerialCollection;
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
    MrdRoiAlignParams params{};
    std::string const err = parse_roi_align_fields(fc, params);
    if (!err.empty())
    {
        log_error(std::string(kRoiAlignPluginName) + " '" + (name != nullptr ? name : "") + "': " + err);
        return nullptr;
    }
    return new (std::nothrow) RoiAlignPlugin(params);
}

} // namespace mrd::trt
