// MRD_BatchedNms as a TensorRT plugin: inputs boxes [B,N,4] or [B,N,C,4] and scores [B,N,C] (float32 or float16),
// outputs num_detections [B] int32, boxes [B,K,4], scores [B,K], classes [B,K] int32, indices [B,K] int32.
#include "plugin_fields.h"
#include "plugins.h"
#include "shape_checks.h"

#include "mrd/op_spec.h"

#include <climits>

namespace mrd::trt
{

using namespace nvinfer1;

NmsPlugin::NmsPlugin(MrdNmsParams const& params, int64_t workspaceBytes)
    : mParams(params)
    , mWorkspaceBytes(workspaceBytes)
{
}

IPluginV3* NmsPlugin::clone() noexcept
{
    return guarded<IPluginV3*>(
        "MRD_BatchedNms clone", nullptr, [&] { return new NmsPlugin(mParams, mWorkspaceBytes.load()); });
}

char const* NmsPlugin::getPluginName() const noexcept
{
    return kNmsPluginName;
}

int32_t NmsPlugin::getNbOutputs() const noexcept
{
    return 5;
}

std::string NmsPlugin::check(PluginTensorDesc const* in, int32_t nbInputs) const
{
    if (in == nullptr || nbInputs != 2)
    {
        return "needs 2 inputs (boxes, scores), got " + std::to_string(in == nullptr ? 0 : nbInputs);
    }
    Dims const dims[2] = {in[0].dims, in[1].dims};
    std::string err = check_nms_shapes(dims, 2);
    return err.empty() ? check_concrete(dims, 2) : err;
}

int32_t NmsPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const*, int32_t nbOutputs) noexcept
{
    return guarded<int32_t>("MRD_BatchedNms configurePlugin", -1, [&] {
        if (in == nullptr || nbInputs != 2 || nbOutputs != 5)
        {
            report("needs 2 inputs (boxes, scores) and 5 outputs, got " + std::to_string(nbInputs) + " and "
                + std::to_string(nbOutputs));
            return -1;
        }
        // -1 (an extent known only at run time) matches anything here; onShapeChange checks the real shapes.
        Dims const dims[2] = {in[0].desc.dims, in[1].desc.dims};
        std::string const err = check_nms_shapes(dims, 2);
        if (!err.empty())
        {
            report(err);
            return -1;
        }
        return 0;
    });
}

int32_t NmsPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 5 || nbInputs != 2)
    {
        report("getOutputDataTypes: expected 2 inputs and 5 outputs");
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
    return guarded<int32_t>("MRD_BatchedNms getOutputShapes", -1, [&] {
        if (inputs == nullptr || outputs == nullptr || nbInputs != 2 || nbOutputs != 5)
        {
            report("expected boxes and scores [B, N, C] and 5 outputs, got " + std::to_string(nbInputs) + " inputs");
            return -1;
        }
        Dims const dims[2] = {known_extents(inputs[0]), known_extents(inputs[1])};
        std::string const err = check_nms_shapes(dims, 2);
        if (!err.empty())
        {
            report(err);
            return -1;
        }
        IDimensionExpr const* batch = inputs[1].d[0];
        IDimensionExpr const* k = exprBuilder.constant(mParams.keep_top_k);
        IDimensionExpr const* four = exprBuilder.constant(4);
        if (k == nullptr || four == nullptr)
        {
            report("the expression builder returned no expression");
            return -1;
        }
        outputs[0].nbDims = 1;
        outputs[0].d[0] = batch;
        outputs[1].nbDims = 3;
        outputs[1].d[0] = batch;
        outputs[1].d[1] = k;
        outputs[1].d[2] = four;
        for (int32_t i = 2; i < 5; ++i)
        {
            outputs[i].nbDims = 2;
            outputs[i].d[0] = batch;
            outputs[i].d[1] = k;
        }
        return 0;
    });
}

bool NmsPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs || inOut[pos].desc.format != TensorFormat::kLINEAR)
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
    return guarded<size_t>("MRD_BatchedNms getWorkspaceSize", 0, [&]() -> size_t {
        if (inputs == nullptr || nbInputs != 2)
        {
            report("getWorkspaceSize: expected boxes and scores");
            return 0;
        }
        Dims const& scores = inputs[1].max;
        std::string const err = check_concrete(&scores, 1);
        if (scores.nbDims != 3 || !err.empty())
        {
            report("getWorkspaceSize: the largest scores shape " + dims_string(scores) + " is not [B, N, C]");
            return 0;
        }
        size_t bytes = 0;
        if (mrd_cuda_batched_nms_query_workspace(static_cast<int32_t>(scores.d[0]), static_cast<int32_t>(scores.d[1]),
                static_cast<int32_t>(scores.d[2]), mParams.keep_top_k, &bytes)
            != MRD_OK)
        {
            report(std::string("getWorkspaceSize: ") + mrd_cuda_last_error(), ErrorCode::kINTERNAL_ERROR);
            return 0;
        }
        // remember the largest size asked for: getFieldsToSerialize writes it into the engine
        int64_t const asked = static_cast<int64_t>(bytes);
        int64_t seen = mWorkspaceBytes.load();
        while (seen < asked && !mWorkspaceBytes.compare_exchange_weak(seen, asked))
        {
        }
        return bytes;
    });
}

int32_t NmsPlugin::onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const*, int32_t) noexcept
{
    return guarded<int32_t>("MRD_BatchedNms onShapeChange", -1, [&] {
        std::string const err = check(in, nbInputs);
        if (!err.empty())
        {
            report(err);
            return -1;
        }
        return 0;
    });
}

int32_t NmsPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const*, void const* const* inputs,
    void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    return guarded<int32_t>("MRD_BatchedNms enqueue", -1, [&] {
        // checked in onShapeChange already; again here for a few comparisons (no allocation unless an error)
        std::string const err = check(inputDesc, 2);
        if (!err.empty())
        {
            report(err, ErrorCode::kFAILED_EXECUTION);
            return -1;
        }
        Dims const& scores = inputDesc[1].dims;
        int32_t const batch = static_cast<int32_t>(scores.d[0]);
        int32_t const num_boxes = static_cast<int32_t>(scores.d[1]);
        int32_t const num_classes = static_cast<int32_t>(scores.d[2]);
        // The workspace TensorRT reserved is what getWorkspaceSize asked for at build time, recorded in the
        // engine; the kernels check that their layout for these shapes fits in it. An engine without the record
        // (getFieldsToSerialize on a plugin that never saw getWorkspaceSize) falls back to TensorRT's contract
        // that the workspace fits any shape of the profile, i.e. to the size these shapes need.
        size_t given = static_cast<size_t>(mWorkspaceBytes.load());
        if (given == 0
            && mrd_cuda_batched_nms_query_workspace(batch, num_boxes, num_classes, mParams.keep_top_k, &given) != MRD_OK)
        {
            report(mrd_cuda_last_error(), ErrorCode::kFAILED_EXECUTION);
            return -1;
        }
        int32_t const dtype = inputDesc[0].type == DataType::kHALF ? MRD_FLOAT16 : MRD_FLOAT32;
        int const status = mrd_cuda_batched_nms(dtype, &mParams, inputs[0], inputs[1], batch, num_boxes, num_classes,
            inputDesc[0].dims.nbDims == 4 ? 1 : 0, static_cast<int32_t*>(outputs[0]), outputs[1], outputs[2],
            static_cast<int32_t*>(outputs[3]), static_cast<int32_t*>(outputs[4]), workspace, given, stream);
        if (status != MRD_OK)
        {
            report(mrd_cuda_last_error(), ErrorCode::kFAILED_EXECUTION);
            return -1;
        }
        return 0;
    });
}

PluginFieldCollection const* NmsPlugin::getFieldsToSerialize() noexcept
{
    return guarded<PluginFieldCollection const*>("MRD_BatchedNms getFieldsToSerialize", nullptr, [&] {
        mSerialWorkspaceBytes = mWorkspaceBytes.load();
        mSerialFields = nms_fields_of(mParams, mSerialWorkspaceBytes);
        mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
        mSerialCollection.fields = mSerialFields.data();
        return &mSerialCollection;
    });
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
    return guarded<IPluginV3*>("MRD_BatchedNms createPlugin", nullptr, [&]() -> IPluginV3* {
        MrdNmsParams params{};
        int64_t workspace_bytes = 0;
        std::string const err = parse_nms_fields(fc, params, &workspace_bytes);
        if (!err.empty())
        {
            log_error(std::string(kNmsPluginName) + " '" + (name != nullptr ? name : "") + "': " + err);
            return nullptr;
        }
        return new NmsPlugin(params, workspace_bytes);
    });
}

} // namespace mrd::trt
