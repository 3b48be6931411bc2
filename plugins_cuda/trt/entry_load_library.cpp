// Entry points of libmrd_trt_plugins.so, the library for IPluginRegistry::loadLibrary (Python's
// IPluginRegistry.load_library, `trtexec --dynamicPlugins`, plugin libraries serialized into an engine with
// `--setPluginsToSerialize` / IBuilderConfig::setPluginsToSerialize).
//
// TensorRT dlopens the library, calls setLoggerFinder, then registers every creator getCreators returns, and
// fails if one of them is registered already. So this library registers nothing itself when it is loaded (no
// static registration) and needs nothing from libnvinfer: it is not linked against it and has no undefined
// TensorRT symbol. The exported symbols are exactly these two (exports_load_library.map).
#include "plugin_fields.h"
#include "plugins.h"

#include "mrd/c_api.h"

extern "C" MRD_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    return mrd::trt::plugin_creators(nbCreators);
}

extern "C" MRD_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    mrd::trt::set_logger_finder(finder);
}
