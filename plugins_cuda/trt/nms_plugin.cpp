// MRD_BatchedNms as a TensorRT plugin: inputs boxes [B,N,4] or [B,N,C,4] and scores [B,N,C] (float32 or float16),
// outputs num_detections [B] int32, boxes [B,K,4], scores [B,K], classes [B,K] int32, indices [B,K] int32.
#include "plugin_fields.h"
#include "plugins.h"

#include "mrd/op_spec.h"

#include <new>

namespace mrd::trt
{

using namespace nvinfer1;

NmsPlugin::NmsPlugin(MrdNmsParams const& params)
    : mParams(params)
{
}

IPluginV3* NmsPlugin::clone() noexcept
{
    return new (std::nothrow) NmsPlugin(mParams);
}

char const* NmsPlugin::getPluginName() const noexcept
{
    return kNmsPluginName;
}

int32_t NmsPlugin::getNbOutputs() const noexcept
{
    return 5;
}

int32_t NmsPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const*, int32_t nbOutputs) noexcept
{
    if (nbInputs != 2 || nbOutputs != 5)
    {
        log_error(std::string(kNmsPluginName) + ": needs 2 inputs (boxes, scores) and 5 outputs");
        return -1;
    }
    int32_t const box_rank = in[0].desc.dims.nbDims;
    if (in[1].desc.dims.nbDims != 3 || (box_rank != 3 && box_rank != 4))
    {
        log_error(std::string(kNmsPluginName) + ": boxes must be [B,N,4] or [B,N,C,4] and scores [B,N,C]");
        return -1;
    }
    return 0;
}

int32_t NmsPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbOutputs != 5 || nbInputs != 2)
    {
        return -1;
    }
    outputTypes[0] = DataType::kINT32;
    outputTypes[1] = inputTypes[0];
    outputTypes[2] = inputTypes[1];
    outputTypes[3] = DataType::kINT32;
    outputTypes[4] = DataType::kINT32;
    return 0;
}

int32_t NmsPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t,
    DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    if (nbInputs != 2 || nbOutputs != 5 || inputs[1].nbDims != 3)
    {
        log_error(std::string(kNmsPluginName) + ": expected boxes and scores [B,N,C]");
        return -1;
    }
    IDimensionExpr const* batch = inputs[1].d[0];
    IDimensionExpr const* k = exprBuilder.constant(mParams.keep_top_k);
    outputs[0].nbDims = 1;
    outputs[0].d[0] = batch;
    outputs[1].nbDims = 3;
    outputs[1].d[0] = batch;
    outputs[1].d[1] = k;
    outputs[1].d[2] = exprBuilder.constant(4);
    for (int32_t i = 2; i < 5; ++i)
    {
        outputs[i].nbDims = 2;
        outputs[i].d[0] = batch;
        outputs[i].d[1] = k;
    }
    return 0;
}

bool NmsPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (pos < 0 || pos >= nbInputs + nbOutputs || inOut[pos].desc.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    DataType const type = inOut[pos].desc.type;
    switch (pos)
    {
    case 0: return type == DataType::kFLOAT || type == DataType::kHALF; // boxes
    case 1:                                                             // scores
    case 3:                                                             // out boxes
    case 4: return type == inOut[0].desc.type;                          // out scores
    default: return type == DataType::kINT32;                           // num, classes, indices
    }
}

size_t NmsPlugin::getWorkspaceSize(
    DynamicPluginTensorDesc const* inputs, int32_t nbInputs, DynamicPluginTensorDesc const*, int32_t) const noexcept
{
    if (nbInputs != 2)
    {
        return 0;
    }
    Dims const& scores = inputs[1].max;
    return mrd_cuda_batched_nms_workspace_size(static_cast<int32_t>(scores.d[0]), static_cast<int32_t>(scores.d[1]),
        static_cast<int32_t>(scores.d[2]), mParams.keep_top_k);
}

int32_t NmsPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const*, void const* const* inputs,
    void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    Dims const& scores = inputDesc[1].dims;
    int32_t const batch = static_cast<int32_t>(scores.d[0]);
    int32_t const num_boxes = static_cast<int32_t>(scores.d[1]);
    int32_t const num_classes = static_cast<int32_t>(scores.d[2]);
    int32_t const dtype = inputDesc[0].type == DataType::kHALF ? MRD_FLOAT16 : MRD_FLOAT32;
    size_t const ws = mrd_cuda_batched_nms_workspace_size(batch, num_boxes, num_classes, mParams.keep_top_k);
    int const status = mrd_cuda_batched_nms(dtype, &mParams, inputs[0], inputs[1], batch, num_boxes, num_classes,
        inputDesc[0].dims.nbDims == 4 ? 1 : 0, static_cast<int32_t*>(outputs[0]), outputs[1], outputs[2],
        static_cast<int32_t*>(outputs[3]), static_cast<int32_t*>(outputs[4]), workspace, ws, stream);
    if (status != MRD_OK)
    {
        log_error(mrd_cuda_last_error());
        return -1;
    }
    return 0;
}

PluginFieldCollection const* NmsPlugin::getFieldsToSerialize() noexcept
{
    mSerialFields = nms_fields_of(mParams);
    mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialCollection.fields = mSerialFields.data();
    return &mSerialCollection;
}

NmsPluginCreator::NmsPluginCreator()
    : mFields(nms_field_declarations())
{
    mCollection.nbFields = static_cast<int32_t>(mFields.size());
    mCollection.fields = mFields.data();
}

char const* NmsPluginCreator::getPluginName() const noexcept
{
    return kNmsPluginName;
}

char const* NmsPluginCreator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* NmsPluginCreator::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

PluginFieldCollection const* NmsPluginCreator::getFieldNames() noexcept
{
    return &mCollection;
}

IPluginV3* NmsPluginCreator::createPlugin(char const* name, PluginFieldCollection const* fc, TensorRTPhase) noexcept
{
    MrdNmsParams params{};
    std::string const err = parse_nms_fields(fc, params);
    if (!err.empty())
    {
        log_error(std::string(kNmsPluginName) + " '" + (name != nullptr ? name : "") + "': " + err);
        return nullptr;
    }
    return new (std::nothrow) NmsPlugin(params);
}

} // namespace mrd::trt
