// How TensorRT finds the plugins: static registration when the library is loaded into a process that has
// TensorRT (REGISTER_TENSORRT_PLUGIN), and the getCreators / setLoggerFinder entry points that
// `trtexec --dynamicPlugins` and IPluginRegistry::loadLibrary look up.
#include "plugin_fields.h"
#include "plugins.h"

#include "mrd/c_api.h"

using mrd::trt::NmsPluginCreator;
using mrd::trt::RoiAlignPluginCreator;

namespace
{

nvinfer1::IPluginCreatorInterface* const* creators() noexcept
{
    static RoiAlignPluginCreator roi_align;
    static NmsPluginCreator nms;
    static nvinfer1::IPluginCreatorInterface* const list[] = {&roi_align, &nms};
    return list;
}

} // namespace

#if !defined(MRD_NO_STATIC_REGISTRATION)
REGISTER_TENSORRT_PLUGIN(RoiAlignPluginCreator);
REGISTER_TENSORRT_PLUGIN(NmsPluginCreator);
#endif

extern "C" MRD_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    nbCreators = 2;
    return creators();
}

extern "C" MRD_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    mrd::trt::set_logger_finder(finder);
}
