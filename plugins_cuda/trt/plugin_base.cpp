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

int32_t PluginBase::onShapeChange(PluginTensorDesc const*, int32_t, PluginTensorDesc const*, int32_t) noexcept
{
    return 0; // shapes are read from the descriptors in enqueue; nothing is cached
}

IPluginV3* PluginBase::attachToContext(IPluginResourceContext*) noexcept
{
    return clone(); // no per-context resources
}

} // namespace mrd::trt
