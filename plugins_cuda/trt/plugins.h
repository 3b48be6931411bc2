// TensorRT IPluginV3 wrappers of the two ops (names, fields and semantics: runtime/plugins/spec.py).
// Each plugin holds only its attributes (and NMS the workspace size it asked for); enqueue reads shapes from the
// tensor descriptors and calls the same C entry points (libmrd_kernels) that Python calls through ctypes.
//
// Every method is noexcept, as TensorRT's interface demands: anything that can throw (a string, a vector, a
// new) runs inside mrd::trt::guarded, which logs the exception and returns the failure value.
#pragma once

#include "NvInferRuntime.h"
#include "mrd/c_api.h"

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace mrd::trt
{

// The capability plumbing both plugins share.
class PluginBase : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime
{
public:
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    // A clone that reports run-time errors to the execution context's error recorder as well as the logger.
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;

protected:
    // `message` (prefixed with the plugin name) to TensorRT's logger and, once attached to an execution
    // context, to that context's error recorder.
    void report(std::string const& message, nvinfer1::ErrorCode code = nvinfer1::ErrorCode::kINVALID_ARGUMENT) const
        noexcept;

    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialCollection{};

private:
    nvinfer1::IErrorRecorder* mRecorder{nullptr};
};

class RoiAlignPlugin final : public PluginBase
{
public:
    explicit RoiAlignPlugin(MrdRoiAlignParams const& params);

    nvinfer1::IPluginV3* clone() noexcept override;
    char const* getPluginName() const noexcept override;
    int32_t getNbOutputs() const noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    // check_roi_align_shapes on plain descriptors; empty string when they fit.
    std::string check(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs) const;

    MrdRoiAlignParams mParams;
};

class NmsPlugin final : public PluginBase
{
public:
    NmsPlugin(MrdNmsParams const& params, int64_t workspaceBytes);

    nvinfer1::IPluginV3* clone() noexcept override;
    char const* getPluginName() const noexcept override;
    int32_t getNbOutputs() const noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    // What the kernels need for the largest shapes of the profile (inputs[i].max). The largest value this
    // plugin (or the plugin it was cloned from) returned is serialized into the engine, so the plugin that runs
    // it knows how many bytes TensorRT reserved and enqueue checks the workspace against that.
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    std::string check(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs) const;

    MrdNmsParams mParams;
    // bytes of workspace this plugin asked TensorRT for (0: unknown); getWorkspaceSize is const, hence mutable
    mutable std::atomic<int64_t> mWorkspaceBytes;
    int64_t mSerialWorkspaceBytes{0};
};

// Creators: field declarations for the parser, and plugins from fields (build and runtime phase alike).
class RoiAlignPluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    RoiAlignPluginCreator();
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mCollection{};
};

class NmsPluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    NmsPluginCreator();
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mCollection{};
};

// The library's creators, constructed on first use: what getCreators returns and what the self-registering
// library registers (one set of objects for both, so no name is ever registered twice by this library).
// nullptr and nbCreators = 0 if they cannot be constructed (out of memory; logged).
nvinfer1::IPluginCreatorInterface* const* plugin_creators(int32_t& nbCreators) noexcept;

} // namespace mrd::trt
