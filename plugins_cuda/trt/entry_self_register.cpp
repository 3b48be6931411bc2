// Static registration for libmrd_trt_plugins_selfregister.so, the library for loaders that only dlopen a plugin
// library and expect it to register itself: Triton's `--backend-config=tensorrt,plugins=...`, `LD_PRELOAD`,
// `trtexec --staticPlugins` (the older `--plugins`), or dlopen/ctypes in an application that then deserializes.
//
// When the library is loaded, its creators (the same objects libmrd_trt_plugins.so hands out through
// getCreators) are registered with the process's plugin registry, getPluginRegistry() of libnvinfer:
// - built with libnvinfer found (MRD_LINKED_NVINFER), the library links it and calls getPluginRegistry();
// - built against TensorRT headers only, it looks the function up in the running process: globally loaded
//   (trtexec, Triton, an application linked against libnvinfer), else the libnvinfer.so.<major> already
//   loaded with RTLD_LOCAL (Python's tensorrt), never loading one itself. Without TensorRT in the process it
//   says so on stderr and registers nothing, instead of failing on an undefined symbol.
// A creator that is already registered (the library loaded twice, or together with libmrd_trt_plugins.so
// through loadLibrary) is reported and left as it is: the registry keeps the first one.
#include "plugin_fields.h"
#include "plugins.h"

#include "NvInferVersion.h"
#include "mrd/op_spec.h"

#include <iostream>
#include <string>

#if !defined(MRD_LINKED_NVINFER)
#include <dlfcn.h>
#endif

namespace
{

using nvinfer1::ILogger;
using nvinfer1::IPluginRegistry;

char const* const kLibrary = "libmrd_trt_plugins_selfregister.so";

#if defined(MRD_LINKED_NVINFER)

IPluginRegistry* process_registry()
{
    return getPluginRegistry();
}

ILogger* process_logger()
{
    return getLogger();
}

#else

void* process_symbol(char const* name)
{
    if (void* symbol = dlsym(RTLD_DEFAULT, name))
    {
        return symbol;
    }
    std::string const nvinfer = "libnvinfer.so." + std::to_string(NV_TENSORRT_MAJOR);
    // RTLD_NOLOAD: only a libnvinfer that is loaded already; the reference is kept on purpose, the registered
    // creators must not outlive the registry's library.
    if (void* handle = dlopen(nvinfer.c_str(), RTLD_LAZY | RTLD_NOLOAD))
    {
        return dlsym(handle, name);
    }
    return nullptr;
}

IPluginRegistry* process_registry()
{
    auto const fn = reinterpret_cast<IPluginRegistry* (*) ()>(process_symbol("getPluginRegistry"));
    return fn != nullptr ? fn() : nullptr;
}

ILogger* process_logger()
{
    auto const fn = reinterpret_cast<ILogger* (*) ()>(process_symbol("getLogger"));
    return fn != nullptr ? fn() : nullptr;
}

#endif

void register_creators() noexcept
{
    try
    {
        IPluginRegistry* const registry = process_registry();
        if (registry == nullptr)
        {
            std::cerr << "[mrd_trt_plugins] " << kLibrary << ": no TensorRT plugin registry in this process "
                      << "(getPluginRegistry not found, or it returned none), nothing registered. Load TensorRT "
                      << "(libnvinfer.so." << NV_TENSORRT_MAJOR
                      << ") before this library, or load libmrd_trt_plugins.so with IPluginRegistry::loadLibrary "
                      << "/ trtexec --dynamicPlugins instead." << std::endl;
            return;
        }
        if (ILogger* const logger = process_logger())
        {
            mrd::trt::set_fallback_logger(logger);
        }
        int32_t count = 0;
        nvinfer1::IPluginCreatorInterface* const* const creators = mrd::trt::plugin_creators(count);
        for (int32_t i = 0; i < count; ++i)
        {
            if (!registry->registerCreator(*creators[i], mrd::kPluginNamespace))
            {
                auto const* creator = static_cast<nvinfer1::IPluginCreatorV3One const*>(creators[i]);
                mrd::trt::log_error(std::string(kLibrary) + ": TensorRT refused to register "
                    + creator->getPluginName() + " version " + creator->getPluginVersion()
                    + ": a creator of that name, version and namespace is registered already (this library "
                      "loaded twice, or together with libmrd_trt_plugins.so); the registered one stays in use");
            }
        }
    }
    catch (...)
    {
        mrd::trt::log_message(ILogger::Severity::kERROR, kLibrary, "registering the plugin creators failed");
    }
}

struct SelfRegistration
{
    SelfRegistration() noexcept
    {
        register_creators();
    }
};

SelfRegistration const gSelfRegistration;

} // namespace
