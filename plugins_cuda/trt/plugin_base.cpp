#include "plugin_fields.h"
#include "plugins.h"

#include "mrd/op_spec.h"

namespace mrd::trt
{

using namespace nvinfer1;

IPluginCapability* PluginBase::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

char const* PluginBase::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* PluginBase::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

IPluginV3* PluginBase::attachToContext(IPluginResourceContext* context) noexcept
{
    IPluginV3* copy = clone(); // no per-context resources; clone() logs its own failure
    if (copy != nullptr)
    {
        static_cast<PluginBase*>(copy)->mRecorder = context != nullptr ? context->getErrorRecorder() : nullptr;
    }
    return copy;
}

void PluginBase::report(std::string const& message, ErrorCode code) const noexcept
{
    try
    {
        std::string const name = getPluginName();
        // the kernels' messages start with the op name already
        std::string const text = message.compare(0, name.size(), name) == 0 ? message : name + ": " + message;
        log_error(text);
        if (mRecorder != nullptr)
        {
            mRecorder->reportError(code, text.c_str());
        }
    }
    catch (...)
    {
        log_message(ILogger::Severity::kERROR, getPluginName(), "out of memory while reporting an error");
    }
}

IPluginCreatorInterface* const* plugin_creators(int32_t& nbCreators) noexcept
{
    nbCreators = 0;
    return guarded<IPluginCreatorInterface* const*>("mrd_trt_plugins: creating the plugin creators", nullptr, [&] {
        static RoiAlignPluginCreator roi_align;
        static NmsPluginCreator nms;
        static IPluginCreatorInterface* const list[] = {&roi_align, &nms};
        nbCreators = static_cast<int32_t>(sizeof(list) / sizeof(list[0]));
        return list;
    });
}

} // namespace mrd::trt
