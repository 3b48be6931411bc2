// The TensorRT plugin libraries as TensorRT's loaders see them, without TensorRT's libraries and without a GPU.
//
//   mrd_test_trt_plugins <libmrd_trt_plugins.so> <libmrd_trt_plugins_selfregister.so>
//
// Built only where TensorRT's headers are (CMake: TENSORRT_ROOT / TENSORRT_INCLUDE_DIR); links nothing of
// TensorRT. The process exports a small stand-in for getPluginRegistry() (and getLogger()): a registry that,
// like TensorRT's, refuses a second creator of the same name, version and namespace, and whose loadLibrary
// does what IPluginRegistry::loadLibrary does (dlopen, setLoggerFinder, register every creator of getCreators,
// fail if one is registered already). Against it the test checks
//   - route (a), libmrd_trt_plugins.so: loadLibrary works, registers nothing by itself when dlopened, a second
//     loadLibrary is refused; it exports getCreators and setLoggerFinder and nothing of the kernels;
//   - route (b), libmrd_trt_plugins_selfregister.so: dlopen with RTLD_LOCAL (as Python and Triton load it)
//     registers both creators; it has no getCreators, so loadLibrary on it fails; loaded into a process whose
//     registry has them already, its registrations are refused and reported, nothing crashes;
//   - the creators and plugins: fields typed as TensorRT's ONNX parser types them (onnx-tensorrt's loadFields:
//     INT -> kINT32, FLOAT -> kFLOAT32, FLOATS -> kFLOAT32 array, only declared fields, absent ones skipped),
//     output shapes with symbolic dimensions (a stand-in IExprBuilder), output types, format combinations,
//     configurePlugin with -1 wildcards, serialize -> createPlugin(kRUNTIME) round trip, clone,
//     attachToContext with an error recorder, and mismatched shapes rejected with a message.
// No kernel runs: enqueue is only called with shapes or a workspace it must refuse before any CUDA work.
#include "NvInferRuntime.h"
#include "mrd/op_spec.h"

#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

using namespace nvinfer1;

namespace
{

int gChecks = 0;
int gFailures = 0;

#define CHECK(cond)                                                                                                    \
    do                                                                                                                 \
    {                                                                                                                  \
        ++gChecks;                                                                                                     \
        if (!(cond))                                                                                                   \
        {                                                                                                              \
            ++gFailures;                                                                                               \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                             \
        }                                                                                                              \
    } while (0)

// ---------------------------------------------------------------------------------------------------------------
// Logging and error recording

class CaptureLogger final : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        if (severity <= Severity::kWARNING)
        {
            messages.emplace_back(msg != nullptr ? msg : "");
        }
    }

    // true if a message since `mark` contains `text`
    bool said(std::string const& text, size_t mark = 0) const
    {
        for (size_t i = mark; i < messages.size(); ++i)
        {
            if (messages[i].find(text) != std::string::npos)
            {
                return true;
            }
        }
        return false;
    }

    size_t mark() const
    {
        return messages.size();
    }

    std::vector<std::string> messages;
};

class Finder final : public ILoggerFinder
{
public:
    ILogger* findLogger() override
    {
        return &logger;
    }
    CaptureLogger logger;
};

class Recorder final : public IErrorRecorder
{
public:
    int32_t getNbErrors() const noexcept override
    {
        return static_cast<int32_t>(errors.size());
    }
    ErrorCode getErrorCode(int32_t i) const noexcept override
    {
        return std::get<0>(errors.at(i));
    }
    ErrorDesc getErrorDesc(int32_t i) const noexcept override
    {
        return std::get<1>(errors.at(i)).c_str();
    }
    bool hasOverflowed() const noexcept override
    {
        return false;
    }
    void clear() noexcept override
    {
        errors.clear();
    }
    bool reportError(ErrorCode code, ErrorDesc desc) noexcept override
    {
        errors.emplace_back(code, desc != nullptr ? desc : "");
        return true;
    }
    RefCount incRefCount() noexcept override
    {
        return ++refs;
    }
    RefCount decRefCount() noexcept override
    {
        return --refs;
    }
    std::vector<std::tuple<ErrorCode, std::string>> errors;
    RefCount refs{0};
};

class ResourceContext final : public IPluginResourceContext
{
public:
    IGpuAllocator* getGpuAllocator() const noexcept override
    {
        return nullptr;
    }
    IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return recorder;
    }
    IErrorRecorder* recorder{nullptr};
};

// ---------------------------------------------------------------------------------------------------------------
// A plugin registry that behaves like TensorRT's where the plugins can tell

IPluginCreatorV3One* as_v3(IPluginCreatorInterface* c)
{
    return c != nullptr && std::strcmp(c->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0
        ? static_cast<IPluginCreatorV3One*>(c)
        : nullptr;
}

class StandInRegistry final : public IPluginRegistry
{
public:
    struct Entry
    {
        std::string name;
        std::string version;
        std::string ns;
        IPluginCreatorInterface* creator;
    };

    ~StandInRegistry() override = default;

    void setErrorRecorder(IErrorRecorder* const) noexcept override {}
    IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return nullptr;
    }
    bool isParentSearchEnabled() const override
    {
        return false;
    }
    void setParentSearchEnabled(bool const) override {}

    // TensorRT's rule: false if a creator with the same name, version and namespace is registered already.
    bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const pluginNamespace) noexcept override
    {
        IPluginCreatorV3One* const v3 = as_v3(&creator);
        if (v3 == nullptr)
        {
            ++refused;
            return false;
        }
        std::string const ns = pluginNamespace != nullptr ? pluginNamespace : "";
        if (find(v3->getPluginName(), v3->getPluginVersion(), ns.c_str()) != nullptr)
        {
            ++refused;
            return false;
        }
        entries.push_back(Entry{v3->getPluginName(), v3->getPluginVersion(), ns, &creator});
        return true;
    }

    IPluginCreatorInterface* const* getAllCreators(int32_t* const numCreators) const noexcept override
    {
        mList.clear();
        for (Entry const& e : entries)
        {
            mList.push_back(e.creator);
        }
        *numCreators = static_cast<int32_t>(mList.size());
        return mList.empty() ? nullptr : mList.data();
    }

    // not `override`: TensorRT 10.0's registry does not have it yet
    IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const numCreators) noexcept
    {
        return getAllCreators(numCreators);
    }

    IPluginCreatorInterface* getCreator(AsciiChar const* const pluginName, AsciiChar const* const pluginVersion,
        AsciiChar const* const pluginNamespace = "") noexcept override
    {
        return find(pluginName, pluginVersion, pluginNamespace);
    }

    bool deregisterCreator(IPluginCreatorInterface const& creator) noexcept override
    {
        for (auto it = entries.begin(); it != entries.end(); ++it)
        {
            if (it->creator == &creator)
            {
                entries.erase(it);
                return true;
            }
        }
        return false;
    }

    // IPluginRegistry::loadLibrary: dlopen, hand over the logger, register every creator of getCreators; fail
    // (nullptr) if the library cannot be opened, lacks getCreators, or one of its creators is registered already.
    PluginLibraryHandle loadLibrary(AsciiChar const* pluginPath) noexcept override
    {
        lastError.clear();
        size_t const before = entries.size();
        void* const handle = dlopen(pluginPath, RTLD_LAZY | RTLD_LOCAL);
        if (handle == nullptr)
        {
            lastError = dlerror();
            return nullptr;
        }
        registeredByDlopen += entries.size() - before;
        using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
        using SetLoggerFinder = void (*)(ILoggerFinder*);
        auto const get_creators = reinterpret_cast<GetCreators>(dlsym(handle, "getCreators"));
        auto const set_logger_finder = reinterpret_cast<SetLoggerFinder>(dlsym(handle, "setLoggerFinder"));
        if (get_creators == nullptr)
        {
            lastError = "no getCreators";
            return nullptr;
        }
        if (set_logger_finder != nullptr)
        {
            set_logger_finder(&finder);
        }
        int32_t count = 0;
        IPluginCreatorInterface* const* creators = get_creators(count);
        for (int32_t i = 0; i < count; ++i)
        {
            IPluginCreatorV3One* const v3 = as_v3(creators[i]);
            if (v3 == nullptr || find(v3->getPluginName(), v3->getPluginVersion(), v3->getPluginNamespace()) != nullptr)
            {
                ++refused;
                lastError = "a creator is registered already";
                return nullptr;
            }
        }
        for (int32_t i = 0; i < count; ++i)
        {
            registerCreator(*creators[i], as_v3(creators[i])->getPluginNamespace());
        }
        return handle;
    }

    void deregisterLibrary(PluginLibraryHandle) noexcept override {}

    IPluginResource* acquirePluginResource(AsciiChar const*, IPluginResource*) noexcept override
    {
        return nullptr;
    }
    int32_t releasePluginResource(AsciiChar const*) noexcept override
    {
        return -1;
    }

#if NV_TENSORRT_MAJOR < 11
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    bool registerCreator(IPluginCreator&, AsciiChar const* const) noexcept override
    {
        ++refused;
        return false;
    }
    IPluginCreator* const* getPluginCreatorList(int32_t* const numCreators) const noexcept override
    {
        *numCreators = 0;
        return nullptr;
    }
    IPluginCreator* getPluginCreator(AsciiChar const* const, AsciiChar const* const, AsciiChar const* const) noexcept override
    {
        return nullptr;
    }
    bool deregisterCreator(IPluginCreator const&) noexcept override
    {
        return false;
    }
#pragma GCC diagnostic pop
#endif

    IPluginCreatorInterface* find(char const* name, char const* version, char const* ns) const
    {
        std::string const n = ns != nullptr ? ns : "";
        for (Entry const& e : entries)
        {
            if (e.name == name && e.version == version && e.ns == n)
            {
                return e.creator;
            }
        }
        return nullptr;
    }

    std::vector<Entry> entries;
    size_t refused{0};
    size_t registeredByDlopen{0};
    std::string lastError;
    Finder finder;

private:
    mutable std::vector<IPluginCreatorInterface*> mList;
};

StandInRegistry* gRegistry = nullptr;
CaptureLogger gGlobalLogger;

} // namespace

// What libnvinfer would provide to a self-registering plugin library loaded into this process (exported: the
// headers' TENSORRTAPI is empty outside TensorRT's own build, and this target hides symbols by default).
extern "C" __attribute__((visibility("default"))) IPluginRegistry* getPluginRegistry() noexcept
{
    return gRegistry;
}

extern "C" __attribute__((visibility("default"))) ILogger* getLogger() noexcept
{
    return &gGlobalLogger;
}

namespace
{

// ---------------------------------------------------------------------------------------------------------------
// Symbolic dimensions: a stand-in for TensorRT's IExprBuilder

struct ExprImpl final : apiv::VDimensionExpr
{
    ExprImpl(std::string t, bool c, int64_t v)
        : text(std::move(t))
        , constant(c)
        , value(v)
    {
    }
    bool isConstant() const override
    {
        return constant;
    }
    int64_t getConstantValue() const override
    {
        return constant ? value : std::numeric_limits<int64_t>::min();
    }
    bool isSizeTensor() const override
    {
        return false;
    }
    std::string text;
    bool constant;
    int64_t value;
};

class Expr final : public IDimensionExpr
{
public:
    explicit Expr(ExprImpl* impl)
    {
        mImpl = impl;
    }
    ExprImpl const& impl() const
    {
        return *static_cast<ExprImpl const*>(mImpl);
    }
};

struct ExprBuilderImpl final : apiv::VExprBuilder
{
    IDimensionExpr const* make(std::string text, bool constant, int64_t value)
    {
        impls.push_back(std::make_unique<ExprImpl>(std::move(text), constant, value));
        exprs.push_back(std::make_unique<Expr>(impls.back().get()));
        return exprs.back().get();
    }
    IDimensionExpr const* constant(int64_t value) override
    {
        return make(std::to_string(value), true, value);
    }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a, IDimensionExpr const& b) override
    {
        ExprImpl const& x = static_cast<Expr const&>(a).impl();
        ExprImpl const& y = static_cast<Expr const&>(b).impl();
        char const* sign = op == DimensionOperation::kPROD ? "*" : op == DimensionOperation::kSUM ? "+" : "?";
        if (x.constant && y.constant && (op == DimensionOperation::kPROD || op == DimensionOperation::kSUM))
        {
            return constant(op == DimensionOperation::kPROD ? x.value * y.value : x.value + y.value);
        }
        return make("(" + x.text + sign + y.text + ")", false, 0);
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
    {
        return nullptr;
    }
    std::vector<std::unique_ptr<ExprImpl>> impls;
    std::vector<std::unique_ptr<Expr>> exprs;
};

class ExprBuilder final : public IExprBuilder
{
public:
    ExprBuilder()
    {
        mImpl = &mBuilder;
    }
    // a symbolic extent (a dimension TensorRT only knows at run time); digits give a build-time constant
    IDimensionExpr const* dim(std::string const& text)
    {
        bool const digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
        return mBuilder.make(text, digits, digits ? std::stoll(text) : 0);
    }
    DimsExprs dims(std::initializer_list<char const*> extents)
    {
        DimsExprs e{};
        for (char const* x : extents)
        {
            e.d[e.nbDims++] = dim(x);
        }
        return e;
    }
    static std::string text(IDimensionExpr const* e)
    {
        return e == nullptr ? "<null>" : static_cast<Expr const*>(e)->impl().text;
    }

private:
    ExprBuilderImpl mBuilder;
};

std::string shape_text(DimsExprs const& e)
{
    std::string s = "[";
    for (int32_t i = 0; i < e.nbDims; ++i)
    {
        s += (i ? ", " : "") + ExprBuilder::text(e.d[i]);
    }
    return s + "]";
}

// ---------------------------------------------------------------------------------------------------------------
// Tensor descriptors

Dims dims(std::initializer_list<int64_t> extents)
{
    Dims d{};
    for (int64_t x : extents)
    {
        d.d[d.nbDims++] = x;
    }
    return d;
}

DynamicPluginTensorDesc dyn(Dims const& d, DataType type, TensorFormat format = TensorFormat::kLINEAR)
{
    DynamicPluginTensorDesc t{};
    t.desc.dims = d;
    t.desc.type = type;
    t.desc.format = format;
    t.desc.scale = 1.0F;
    t.min = d;
    t.opt = d;
    t.max = d;
    for (int32_t i = 0; i < d.nbDims; ++i)
    {
        if (d.d[i] < 0)
        {
            t.min.d[i] = 1;
            t.opt.d[i] = 64;
            t.max.d[i] = 128;
        }
    }
    return t;
}

PluginTensorDesc desc(Dims const& d, DataType type)
{
    PluginTensorDesc t{};
    t.dims = d;
    t.type = type;
    t.format = TensorFormat::kLINEAR;
    t.scale = 1.0F;
    return t;
}

// ---------------------------------------------------------------------------------------------------------------
// Plugin fields as TensorRT's ONNX parser builds them (onnx-tensorrt onnxOpImporters.cpp, loadFields): one
// field per *declared* field name whose attribute the node has; INT -> kINT32 x1, FLOAT -> kFLOAT32 x1,
// FLOATS -> kFLOAT32 xN.

struct Attribute
{
    std::string name;
    std::vector<int32_t> ints;
    std::vector<float> floats;
};

class OnnxFields
{
public:
    OnnxFields(IPluginCreatorV3One& creator, std::vector<Attribute> attrs)
        : mAttrs(std::move(attrs))
    {
        PluginFieldCollection const* declared = creator.getFieldNames();
        for (int32_t i = 0; declared != nullptr && i < declared->nbFields; ++i)
        {
            for (Attribute const& a : mAttrs)
            {
                if (a.name == declared->fields[i].name)
                {
                    if (!a.ints.empty())
                    {
                        mFields.emplace_back(a.name.c_str(), a.ints.data(), PluginFieldType::kINT32,
                            static_cast<int32_t>(a.ints.size()));
                    }
                    else
                    {
                        mFields.emplace_back(a.name.c_str(), a.floats.data(), PluginFieldType::kFLOAT32,
                            static_cast<int32_t>(a.floats.size()));
                    }
                }
            }
        }
        mCollection.nbFields = static_cast<int32_t>(mFields.size());
        mCollection.fields = mFields.data();
    }
    PluginFieldCollection const* get() const
    {
        return &mCollection;
    }

private:
    std::vector<Attribute> mAttrs;
    std::vector<PluginField> mFields;
    PluginFieldCollection mCollection{};
};

size_t field_bytes(PluginField const& f)
{
    switch (f.type)
    {
    case PluginFieldType::kFLOAT64:
    case PluginFieldType::kINT64: return 8 * static_cast<size_t>(f.length);
    case PluginFieldType::kFLOAT32:
    case PluginFieldType::kINT32: return 4 * static_cast<size_t>(f.length);
    case PluginFieldType::kFLOAT16:
    case PluginFieldType::kINT16: return 2 * static_cast<size_t>(f.length);
    default: return static_cast<size_t>(f.length);
    }
}

// A deep copy of a serialized field collection (what TensorRT writes into the engine and hands back to
// createPlugin(kRUNTIME)).
class SavedFields
{
public:
    explicit SavedFields(PluginFieldCollection const* fc)
    {
        for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
        {
            PluginField const& f = fc->fields[i];
            auto const* bytes = static_cast<unsigned char const*>(f.data);
            mNames.emplace_back(f.name);
            mData.emplace_back(bytes, bytes + field_bytes(f));
            mTypes.push_back(f.type);
            mLengths.push_back(f.length);
        }
        for (size_t i = 0; i < mNames.size(); ++i)
        {
            mFields.emplace_back(mNames[i].c_str(), mData[i].data(), mTypes[i], mLengths[i]);
        }
        mCollection.nbFields = static_cast<int32_t>(mFields.size());
        mCollection.fields = mFields.data();
    }
    PluginFieldCollection const* get() const
    {
        return &mCollection;
    }
    bool operator==(SavedFields const& o) const
    {
        return mNames == o.mNames && mData == o.mData && mTypes == o.mTypes && mLengths == o.mLengths;
    }
    // the field's value as a number (first element), NaN if absent
    double value(std::string const& name) const
    {
        for (size_t i = 0; i < mNames.size(); ++i)
        {
            if (mNames[i] == name)
            {
                void const* p = mData[i].data();
                switch (mTypes[i])
                {
                case PluginFieldType::kINT32: return *static_cast<int32_t const*>(p);
                case PluginFieldType::kINT64: return static_cast<double>(*static_cast<int64_t const*>(p));
                case PluginFieldType::kFLOAT32: return *static_cast<float const*>(p);
                case PluginFieldType::kFLOAT64: return *static_cast<double const*>(p);
                default: break;
                }
            }
        }
        return std::numeric_limits<double>::quiet_NaN();
    }
    int32_t length(std::string const& name) const
    {
        for (size_t i = 0; i < mNames.size(); ++i)
        {
            if (mNames[i] == name)
            {
                return mLengths[i];
            }
        }
        return -1;
    }

private:
    std::vector<std::string> mNames;
    std::vector<std::vector<unsigned char>> mData;
    std::vector<PluginFieldType> mTypes;
    std::vector<int32_t> mLengths;
    std::vector<PluginField> mFields;
    PluginFieldCollection mCollection{};
};

struct Capabilities
{
    IPluginV3OneCore* core;
    IPluginV3OneBuild* build;
    IPluginV3OneRuntime* runtime;
};

Capabilities caps(IPluginV3* p)
{
    return Capabilities{static_cast<IPluginV3OneCore*>(p->getCapabilityInterface(PluginCapabilityType::kCORE)),
        static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(PluginCapabilityType::kBUILD)),
        static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME))};
}

IPluginCreatorV3One* creator_of(StandInRegistry& r, char const* name)
{
    // the parser's lookup: op type, plugin_version (default "1"), plugin_namespace (default "")
    return as_v3(r.getCreator(name, "1", ""));
}

// ---------------------------------------------------------------------------------------------------------------
// Route (a) and route (b)

void test_load_library_route(char const* path, StandInRegistry& registry)
{
    std::printf("route (a): IPluginRegistry::loadLibrary(%s)\n", path);
    void* const handle = registry.loadLibrary(path);
    if (handle == nullptr)
    {
        std::fprintf(stderr, "loadLibrary failed: %s\n", registry.lastError.c_str());
    }
    CHECK(handle != nullptr);
    CHECK(registry.registeredByDlopen == 0); // no static registration
    CHECK(registry.entries.size() == 2);
    CHECK(creator_of(registry, mrd::kRoiAlignPluginName) != nullptr);
    CHECK(creator_of(registry, mrd::kNmsPluginName) != nullptr);
    if (handle != nullptr)
    {
        CHECK(dlsym(handle, "getCreators") != nullptr);
        CHECK(dlsym(handle, "setLoggerFinder") != nullptr);
        // the kernels' C entry points and the static CUDA runtime stay inside the library
        CHECK(dlsym(handle, "mrd_cuda_batched_nms") == nullptr);
        CHECK(dlsym(handle, "mrd_cuda_multilevel_roi_align") == nullptr);
        CHECK(dlsym(handle, "cudaMalloc") == nullptr);
    }
    // TensorRT refuses the second load: every creator is registered already
    size_t const refused = registry.refused;
    CHECK(registry.loadLibrary(path) == nullptr);
    CHECK(registry.refused == refused + 1);
    CHECK(registry.entries.size() == 2);
}

std::string copy_file(char const* from, std::string const& to)
{
    std::ifstream in(from, std::ios::binary);
    std::ofstream out(to, std::ios::binary);
    out << in.rdbuf();
    return to;
}

void test_self_register_route(char const* path, StandInRegistry& fresh, StandInRegistry& loaded)
{
    std::printf("route (b): dlopen(%s, RTLD_LAZY | RTLD_LOCAL) with self-registration\n", path);
    gRegistry = &fresh;
    void* const handle = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
    if (handle == nullptr)
    {
        std::fprintf(stderr, "dlopen failed: %s\n", dlerror());
    }
    CHECK(handle != nullptr);
    CHECK(fresh.entries.size() == 2);
    CHECK(creator_of(fresh, mrd::kRoiAlignPluginName) != nullptr);
    CHECK(creator_of(fresh, mrd::kNmsPluginName) != nullptr);
    CHECK(fresh.refused == 0);
    if (handle != nullptr)
    {
        CHECK(dlsym(handle, "getCreators") == nullptr); // not a loadLibrary library: it would register twice
        CHECK(dlsym(handle, "mrd_cuda_batched_nms") == nullptr);
    }
    // loadLibrary on it fails instead of registering anything a second time
    CHECK(fresh.loadLibrary(path) == nullptr);
    CHECK(fresh.entries.size() == 2);

    // Into a process whose registry has the creators already (route (a) loaded before): refused and reported.
    // A copy under another name, so that dlopen runs its initializers again.
    gRegistry = &loaded;
    std::string const copy = copy_file(path, std::string(path) + ".copy.so");
    size_t const mark = gGlobalLogger.mark();
    size_t const refused = loaded.refused;
    void* const second = dlopen(copy.c_str(), RTLD_LAZY | RTLD_LOCAL);
    CHECK(second != nullptr);
    CHECK(loaded.refused == refused + 2);
    CHECK(loaded.entries.size() == 2);
    CHECK(gGlobalLogger.said("refused to register", mark));
    CHECK(gGlobalLogger.said(mrd::kNmsPluginName, mark));

    // A process without TensorRT's registry: a message on stderr, nothing registered, no crash.
    gRegistry = nullptr;
    std::string const third = copy_file(path, std::string(path) + ".copy2.so");
    CHECK(dlopen(third.c_str(), RTLD_LAZY | RTLD_LOCAL) != nullptr);
    std::remove(copy.c_str());
    std::remove(third.c_str());
    gRegistry = &loaded;
}

// ---------------------------------------------------------------------------------------------------------------
// ROIAlign

void test_roi_align(IPluginCreatorV3One& creator, CaptureLogger& log)
{
    std::printf("MRD_MultiLevelRoiAlign\n");
    CHECK(std::strcmp(creator.getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0);
    CHECK(std::string(creator.getPluginName()) == mrd::kRoiAlignPluginName);
    CHECK(std::string(creator.getPluginVersion()) == mrd::kPluginVersion);
    CHECK(std::string(creator.getPluginNamespace()) == mrd::kPluginNamespace);
    PluginFieldCollection const* declared = creator.getFieldNames();
    CHECK(declared != nullptr && declared->nbFields == 8);
    for (int32_t i = 0; declared != nullptr && i < declared->nbFields && i < 8; ++i)
    {
        CHECK(std::string(declared->fields[i].name) == mrd::kRoiAlignFieldNames[i]);
    }

    OnnxFields const fields(creator,
        {{"output_height", {14}, {}}, {"output_width", {14}, {}}, {"sampling_ratio", {0}, {}}, {"aligned", {1}, {}},
            {"spatial_scales", {}, {0.25F, 0.125F, 0.0625F, 0.03125F}}, {"canonical_box_size", {224}, {}},
            {"canonical_level", {4}, {}}, {"legacy_plus_one", {1}, {}}});
    IPluginV3* plugin = creator.createPlugin("pool", fields.get(), TensorRTPhase::kBUILD);
    CHECK(plugin != nullptr);
    if (plugin == nullptr)
    {
        return;
    }
    Capabilities const c = caps(plugin);
    CHECK(c.core != nullptr && c.build != nullptr && c.runtime != nullptr);
    CHECK(std::string(c.core->getPluginName()) == mrd::kRoiAlignPluginName);
    CHECK(std::string(c.core->getPluginVersion()) == mrd::kPluginVersion);
    CHECK(c.build->getNbOutputs() == 1);

    // output shape with symbolic dimensions: [B*R, C, 14, 14]
    ExprBuilder eb;
    DimsExprs in[5] = {eb.dims({"B", "R", "4"}), eb.dims({"B", "256", "H0", "W0"}), eb.dims({"B", "256", "H1", "W1"}),
        eb.dims({"B", "256", "H2", "W2"}), eb.dims({"B", "256", "H3", "W3"})};
    DimsExprs out[1]{};
    CHECK(c.build->getOutputShapes(in, 5, nullptr, 0, out, 1, eb) == 0);
    std::printf("  output shape %s\n", shape_text(out[0]).c_str());
    CHECK(out[0].nbDims == 4);
    CHECK(ExprBuilder::text(out[0].d[0]) == "(B*R)");
    CHECK(out[0].d[1] == in[1].d[1]);
    CHECK(out[0].d[2] != nullptr && out[0].d[2]->isConstant() && out[0].d[2]->getConstantValue() == 14);
    CHECK(out[0].d[3] != nullptr && out[0].d[3]->isConstant() && out[0].d[3]->getConstantValue() == 14);

    // mismatched shapes are errors with a message, at every place TensorRT shows shapes
    struct Bad
    {
        int32_t input;
        DimsExprs shape;
        char const* says;
    };
    Bad const bad[] = {
        {3, eb.dims({"B", "128", "H2", "W2"}), "feature_2"},            // other channels
        {4, eb.dims({"2", "256", "H3", "W3"}), "feature_3"},            // a batch where the others are symbolic: fine
        {0, eb.dims({"B", "R", "5"}), "rois must be [B, R, 4]"},         // not boxes
        {2, eb.dims({"B", "256", "H1"}), "feature_1 must be [B, C, H, W]"}, // rank
    };
    for (Bad const& b : bad)
    {
        DimsExprs changed[5] = {in[0], in[1], in[2], in[3], in[4]};
        changed[b.input] = b.shape;
        size_t const mark = log.mark();
        int32_t const status = c.build->getOutputShapes(changed, 5, nullptr, 0, out, 1, eb);
        bool const symbolic_batch_only = b.input == 4; // "2" vs "B": cannot be told apart at build time
        CHECK((status == 0) == symbolic_batch_only);
        CHECK(symbolic_batch_only || log.said(b.says, mark));
    }
    {
        DimsExprs constants[5] = {eb.dims({"2", "R", "4"}), eb.dims({"1", "256", "H0", "W0"}), in[2], in[3], in[4]};
        size_t const mark = log.mark();
        CHECK(c.build->getOutputShapes(constants, 5, nullptr, 0, out, 1, eb) != 0); // rois batch 2, features 1
        CHECK(log.said("have batch 2", mark));
        size_t const mark2 = log.mark();
        CHECK(c.build->getOutputShapes(in, 4, nullptr, 0, out, 1, eb) != 0); // 3 feature maps, 4 scales
        CHECK(log.said("3 feature inputs but spatial_scales has 4 levels", mark2));
    }

    // output type follows the features; rois stay float32
    DataType types_in[5] = {DataType::kFLOAT, DataType::kHALF, DataType::kHALF, DataType::kHALF, DataType::kHALF};
    DataType types_out[1] = {DataType::kFLOAT};
    CHECK(c.build->getOutputDataTypes(types_out, 1, types_in, 5) == 0);
    CHECK(types_out[0] == DataType::kHALF);

    // format combinations: linear only, rois float32, features and output one type (float32 or float16)
    Dims const wild_rois = dims({-1, -1, -1});
    Dims const wild_feat = dims({-1, 256, -1, -1});
    DynamicPluginTensorDesc io[6] = {dyn(wild_rois, DataType::kFLOAT), dyn(wild_feat, DataType::kHALF),
        dyn(wild_feat, DataType::kHALF), dyn(wild_feat, DataType::kHALF), dyn(wild_feat, DataType::kHALF),
        dyn(dims({-1, 256, 14, 14}), DataType::kHALF)};
    for (int32_t pos = 0; pos < 6; ++pos)
    {
        CHECK(c.build->supportsFormatCombination(pos, io, 5, 1));
    }
    DynamicPluginTensorDesc alt[6] = {io[0], io[1], io[2], io[3], io[4], io[5]};
    alt[0].desc.type = DataType::kHALF;
    CHECK(!c.build->supportsFormatCombination(0, alt, 5, 1));
    alt[1].desc.type = DataType::kINT32;
    CHECK(!c.build->supportsFormatCombination(1, alt, 5, 1));
    alt[1].desc.type = DataType::kFLOAT;
    CHECK(!c.build->supportsFormatCombination(2, alt, 5, 1)); // feature_1 half, feature_0 float
    CHECK(!c.build->supportsFormatCombination(5, alt, 5, 1)); // output half, features float
    alt[3].desc.format = TensorFormat::kHWC8;
    CHECK(!c.build->supportsFormatCombination(3, alt, 5, 1));
    CHECK(!c.build->supportsFormatCombination(6, io, 5, 1));

    // configurePlugin: -1 wildcards (every extent of the rois included) are fine at build time
    size_t mark = log.mark();
    CHECK(c.build->configurePlugin(io, 5, io + 5, 1) == 0);
    CHECK(log.mark() == mark);
    {
        DynamicPluginTensorDesc other[5] = {io[0], io[1], io[2], dyn(dims({-1, 128, -1, -1}), DataType::kHALF), io[4]};
        mark = log.mark();
        CHECK(c.build->configurePlugin(other, 5, io + 5, 1) != 0);
        CHECK(log.said("feature_2", mark));
        other[3] = io[3];
        other[0] = dyn(dims({-1, -1, 5}), DataType::kFLOAT);
        CHECK(c.build->configurePlugin(other, 5, io + 5, 1) != 0);
    }

    // run time: onShapeChange with real shapes
    PluginTensorDesc rt[5] = {desc(dims({2, 100, 4}), DataType::kFLOAT), desc(dims({2, 256, 200, 304}), DataType::kHALF),
        desc(dims({2, 256, 100, 152}), DataType::kHALF), desc(dims({2, 256, 50, 76}), DataType::kHALF),
        desc(dims({2, 256, 25, 38}), DataType::kHALF)};
    PluginTensorDesc rt_out[1] = {desc(dims({200, 256, 14, 14}), DataType::kHALF)};
    CHECK(c.runtime->onShapeChange(rt, 5, rt_out, 1) == 0);
    PluginTensorDesc rt_bad[5] = {rt[0], rt[1], desc(dims({1, 256, 100, 152}), DataType::kHALF), rt[3], rt[4]};
    mark = log.mark();
    CHECK(c.runtime->onShapeChange(rt_bad, 5, rt_out, 1) != 0);
    CHECK(log.said("feature_1", mark));
    // enqueue refuses the same shapes before any CUDA work (the pointers are never touched)
    void const* fake_in[5] = {nullptr, nullptr, nullptr, nullptr, nullptr};
    void* fake_out[1] = {nullptr};
    mark = log.mark();
    CHECK(c.runtime->enqueue(rt_bad, rt_out, fake_in, fake_out, nullptr, nullptr) != 0);
    CHECK(log.said("must have the batch and channels of feature_0", mark));

    // serialize -> createPlugin(kRUNTIME) -> the same fields
    SavedFields const saved(c.runtime->getFieldsToSerialize());
    CHECK(saved.value("output_height") == 14 && saved.value("sampling_ratio") == 0 && saved.value("aligned") == 1);
    CHECK(saved.length("spatial_scales") == 4 && saved.value("spatial_scales") == 0.25);
    CHECK(saved.value("legacy_plus_one") == 1);
    IPluginV3* restored = creator.createPlugin("pool", saved.get(), TensorRTPhase::kRUNTIME);
    CHECK(restored != nullptr);
    if (restored != nullptr)
    {
        CHECK(SavedFields(caps(restored).runtime->getFieldsToSerialize()) == saved);
        delete restored;
    }

    // clone: same attributes, all three capabilities
    IPluginV3* copy = plugin->clone();
    CHECK(copy != nullptr);
    if (copy != nullptr)
    {
        Capabilities const cc = caps(copy);
        CHECK(cc.core != nullptr && cc.build != nullptr && cc.runtime != nullptr);
        CHECK(SavedFields(cc.runtime->getFieldsToSerialize()) == saved);
        DimsExprs again[1]{};
        CHECK(cc.build->getOutputShapes(in, 5, nullptr, 0, again, 1, eb) == 0);
        CHECK(ExprBuilder::text(again[0].d[0]) == "(B*R)");
        delete copy;
    }

    // attachToContext: a clone that reports run-time errors to the context's error recorder
    Recorder recorder;
    ResourceContext context;
    context.recorder = &recorder;
    IPluginV3* attached = c.runtime->attachToContext(&context);
    CHECK(attached != nullptr && attached != plugin);
    if (attached != nullptr)
    {
        Capabilities const ac = caps(attached);
        CHECK(SavedFields(ac.runtime->getFieldsToSerialize()) == saved);
        CHECK(ac.runtime->onShapeChange(rt, 5, rt_out, 1) == 0);
        CHECK(recorder.errors.empty());
        CHECK(ac.runtime->onShapeChange(rt_bad, 5, rt_out, 1) != 0);
        CHECK(recorder.errors.size() == 1);
        CHECK(!recorder.errors.empty() && std::get<1>(recorder.errors[0]).find(mrd::kRoiAlignPluginName) == 0);
        delete attached;
    }
    delete plugin;

    // attributes: absent ones take the spec defaults; bad ones are refused with a message
    OnnxFields const few(creator, {{"spatial_scales", {}, {0.25F, 0.125F}}});
    IPluginV3* defaults = creator.createPlugin("pool", few.get(), TensorRTPhase::kBUILD);
    CHECK(defaults != nullptr);
    if (defaults != nullptr)
    {
        SavedFields const d(caps(defaults).runtime->getFieldsToSerialize());
        CHECK(d.value("output_height") == 7 && d.value("sampling_ratio") == 2 && d.value("canonical_box_size") == 224);
        CHECK(d.length("spatial_scales") == 2);
        CHECK(d.value("legacy_plus_one") == 0);
        delete defaults;
    }
    mark = log.mark();
    OnnxFields const odd(creator, {{"spatial_scales", {}, {0.3F, 0.15F}}});
    CHECK(creator.createPlugin("pool", odd.get(), TensorRTPhase::kBUILD) == nullptr);
    CHECK(log.said("powers of two", mark));
    mark = log.mark();
    OnnxFields const bad_legacy(creator, {{"legacy_plus_one", {2}, {}}});
    CHECK(creator.createPlugin("pool", bad_legacy.get(), TensorRTPhase::kBUILD) == nullptr);
    CHECK(log.said("legacy_plus_one must be 0 or 1", mark));
    int32_t const word = 1;
    PluginField const unknown("sampling", &word, PluginFieldType::kINT32, 1);
    PluginFieldCollection const unknown_fc{1, &unknown};
    mark = log.mark();
    CHECK(creator.createPlugin("pool", &unknown_fc, TensorRTPhase::kBUILD) == nullptr);
    CHECK(log.said("unknown field 'sampling'", mark));
}

// ---------------------------------------------------------------------------------------------------------------
// NMS

void test_nms(IPluginCreatorV3One& creator, CaptureLogger& log)
{
    std::printf("MRD_BatchedNms\n");
    CHECK(std::string(creator.getPluginName()) == mrd::kNmsPluginName);
    PluginFieldCollection const* declared = creator.getFieldNames();
    CHECK(declared != nullptr && declared->nbFields == 6); // the workspace field is not an ONNX attribute
    for (int32_t i = 0; declared != nullptr && i < declared->nbFields && i < 6; ++i)
    {
        CHECK(std::string(declared->fields[i].name) == mrd::kNmsFieldNames[i]);
    }
    OnnxFields const fields(creator,
        {{"score_threshold", {}, {0.05F}}, {"iou_threshold", {}, {0.5F}}, {"min_box_size", {}, {0.01F}},
            {"pre_nms_top_k", {-1}, {}}, {"keep_top_k", {100}, {}}, {"background_class", {0}, {}}});
    IPluginV3* plugin = creator.createPlugin("nms", fields.get(), TensorRTPhase::kBUILD);
    CHECK(plugin != nullptr);
    if (plugin == nullptr)
    {
        return;
    }
    Capabilities const c = caps(plugin);
    CHECK(c.core != nullptr && c.build != nullptr && c.runtime != nullptr);
    CHECK(c.build->getNbOutputs() == 5);

    ExprBuilder eb;
    DimsExprs in[2] = {eb.dims({"B", "N", "C", "4"}), eb.dims({"B", "N", "C"})};
    DimsExprs out[5]{};
    CHECK(c.build->getOutputShapes(in, 2, nullptr, 0, out, 5, eb) == 0);
    std::printf("  output shapes %s %s %s %s %s\n", shape_text(out[0]).c_str(), shape_text(out[1]).c_str(),
        shape_text(out[2]).c_str(), shape_text(out[3]).c_str(), shape_text(out[4]).c_str());
    CHECK(shape_text(out[0]) == "[B]");
    CHECK(shape_text(out[1]) == "[B, 100, 4]");
    CHECK(shape_text(out[2]) == "[B, 100]" && shape_text(out[3]) == "[B, 100]" && shape_text(out[4]) == "[B, 100]");
    CHECK(out[0].d[0] == in[1].d[0]);
    DimsExprs shared[2] = {eb.dims({"B", "N", "4"}), eb.dims({"B", "N", "C"})};
    CHECK(c.build->getOutputShapes(shared, 2, nullptr, 0, out, 5, eb) == 0);

    struct Bad
    {
        DimsExprs boxes;
        DimsExprs scores;
        char const* says;
    };
    Bad const bad[] = {
        {eb.dims({"B", "1000", "81", "4"}), eb.dims({"B", "999", "81"}), "disagree on B, N or C"},
        {eb.dims({"B", "N", "91", "4"}), eb.dims({"B", "N", "81"}), "disagree on B, N or C"},
        {eb.dims({"2", "N", "4"}), eb.dims({"1", "N", "C"}), "disagree on B, N"},
        {eb.dims({"B", "N", "C", "5"}), eb.dims({"B", "N", "C"}), "boxes must be [B, N, 4] or [B, N, C, 4]"},
        {eb.dims({"B", "N", "C", "4"}), eb.dims({"B", "N"}), "scores must be [B, N, C]"},
    };
    for (Bad const& b : bad)
    {
        DimsExprs changed[2] = {b.boxes, b.scores};
        size_t const mark = log.mark();
        CHECK(c.build->getOutputShapes(changed, 2, nullptr, 0, out, 5, eb) != 0);
        CHECK(log.said(b.says, mark));
    }

    DataType const types_in[2] = {DataType::kHALF, DataType::kHALF};
    DataType types_out[5]{};
    CHECK(c.build->getOutputDataTypes(types_out, 5, types_in, 2) == 0);
    CHECK(types_out[0] == DataType::kINT32 && types_out[1] == DataType::kHALF && types_out[2] == DataType::kHALF
        && types_out[3] == DataType::kINT32 && types_out[4] == DataType::kINT32);

    DynamicPluginTensorDesc io[7] = {dyn(dims({-1, -1, 81, 4}), DataType::kFLOAT), dyn(dims({-1, -1, 81}), DataType::kFLOAT),
        dyn(dims({-1}), DataType::kINT32), dyn(dims({-1, 100, 4}), DataType::kFLOAT), dyn(dims({-1, 100}), DataType::kFLOAT),
        dyn(dims({-1, 100}), DataType::kINT32), dyn(dims({-1, 100}), DataType::kINT32)};
    for (int32_t pos = 0; pos < 7; ++pos)
    {
        CHECK(c.build->supportsFormatCombination(pos, io, 2, 5));
    }
    DynamicPluginTensorDesc alt[7] = {io[0], io[1], io[2], io[3], io[4], io[5], io[6]};
    alt[1].desc.type = DataType::kHALF;
    CHECK(!c.build->supportsFormatCombination(1, alt, 2, 5)); // scores half, boxes float
    alt[2].desc.type = DataType::kFLOAT;
    CHECK(!c.build->supportsFormatCombination(2, alt, 2, 5)); // num_detections is int32
    alt[4].desc.type = DataType::kHALF;
    CHECK(!c.build->supportsFormatCombination(4, alt, 2, 5));
    alt[0].desc.type = DataType::kINT32;
    CHECK(!c.build->supportsFormatCombination(0, alt, 2, 5));

    size_t mark = log.mark();
    CHECK(c.build->configurePlugin(io, 2, io + 2, 5) == 0);
    CHECK(log.mark() == mark);
    DynamicPluginTensorDesc wrong[2] = {dyn(dims({-1, -1, 91, 4}), DataType::kFLOAT), io[1]};
    CHECK(c.build->configurePlugin(wrong, 2, io + 2, 5) != 0);
    CHECK(log.said("disagree", mark));

    // The workspace for the profile's largest shapes, and the size recorded for the engine. Without a CUDA
    // device cub cannot say how much its sort needs: then 0 and an error, never a made-up size.
    DynamicPluginTensorDesc sized[2] = {io[0], io[1]};
    sized[1].max = dims({4, 1000, 81});
    mark = log.mark();
    size_t const bytes = c.build->getWorkspaceSize(sized, 2, io + 2, 5);
    bool const query_failed = log.said("size query failed", mark);
    std::printf("  getWorkspaceSize(max [4, 1000, 81]) = %zu bytes%s\n", bytes,
        query_failed ? " (no CUDA device: cub's size query failed and said so)" : "");
    CHECK((bytes == 0) == query_failed);
    CHECK(bytes == 0 || bytes >= size_t{4} * 1000 * 81 * 24); // keys and values in and out at least

    SavedFields const saved(c.runtime->getFieldsToSerialize());
    CHECK(saved.value(mrd::kNmsWorkspaceField) == static_cast<double>(bytes));
    CHECK(saved.value("keep_top_k") == 100 && saved.value("background_class") == 0);
    CHECK(std::abs(saved.value("score_threshold") - 0.05) < 1e-7);
    IPluginV3* restored = creator.createPlugin("nms", saved.get(), TensorRTPhase::kRUNTIME);
    CHECK(restored != nullptr);
    if (restored != nullptr)
    {
        CHECK(SavedFields(caps(restored).runtime->getFieldsToSerialize()) == saved);
        delete restored;
    }

    // A plugin from an engine whose recorded workspace is too small: enqueue refuses before any CUDA work.
    int64_t const tiny = 16;
    std::vector<PluginField> small_fields;
    PluginFieldCollection const* fc = fields.get();
    small_fields.assign(fc->fields, fc->fields + fc->nbFields);
    small_fields.emplace_back(mrd::kNmsWorkspaceField, &tiny, PluginFieldType::kINT64, 1);
    PluginFieldCollection const small_fc{static_cast<int32_t>(small_fields.size()), small_fields.data()};
    IPluginV3* small = creator.createPlugin("nms", &small_fc, TensorRTPhase::kRUNTIME);
    CHECK(small != nullptr);
    PluginTensorDesc rt[2] = {desc(dims({1, 1000, 81, 4}), DataType::kFLOAT), desc(dims({1, 1000, 81}), DataType::kFLOAT)};
    PluginTensorDesc rt_out[5] = {desc(dims({1}), DataType::kINT32), desc(dims({1, 100, 4}), DataType::kFLOAT),
        desc(dims({1, 100}), DataType::kFLOAT), desc(dims({1, 100}), DataType::kINT32), desc(dims({1, 100}), DataType::kINT32)};
    if (small != nullptr)
    {
        Capabilities const sc = caps(small);
        CHECK(sc.runtime->onShapeChange(rt, 2, rt_out, 5) == 0);
        alignas(256) static unsigned char workspace[16];
        void const* fake_in[2] = {workspace, workspace};
        void* fake_out[5] = {workspace, workspace, workspace, workspace, workspace};
        mark = log.mark();
        CHECK(sc.runtime->enqueue(rt, rt_out, fake_in, fake_out, workspace, nullptr) != 0);
        // on a GPU: "workspace of 16 bytes, N needed"; without one the layout's cub query fails first
        CHECK(log.said("workspace of 16 bytes", mark) || log.said("size query failed", mark));
        delete small;
    }

    // run-time shape checks, and the error recorder of an attached plugin
    PluginTensorDesc rt_bad[2] = {desc(dims({1, 1000, 80, 4}), DataType::kFLOAT), rt[1]};
    mark = log.mark();
    CHECK(c.runtime->onShapeChange(rt_bad, 2, rt_out, 5) != 0);
    CHECK(log.said("disagree", mark));
    Recorder recorder;
    ResourceContext context;
    context.recorder = &recorder;
    IPluginV3* attached = c.runtime->attachToContext(&context);
    CHECK(attached != nullptr);
    if (attached != nullptr)
    {
        Capabilities const ac = caps(attached);
        CHECK(SavedFields(ac.runtime->getFieldsToSerialize()) == saved); // the recorded workspace comes along
        void const* fake_in[2] = {nullptr, nullptr};
        void* fake_out[5] = {nullptr, nullptr, nullptr, nullptr, nullptr};
        CHECK(ac.runtime->enqueue(rt_bad, rt_out, fake_in, fake_out, nullptr, nullptr) != 0);
        CHECK(recorder.errors.size() == 1);
        CHECK(!recorder.errors.empty() && std::get<0>(recorder.errors[0]) == ErrorCode::kFAILED_EXECUTION);
        delete attached;
    }
    IPluginV3* copy = plugin->clone();
    CHECK(copy != nullptr);
    if (copy != nullptr)
    {
        CHECK(SavedFields(caps(copy).runtime->getFieldsToSerialize()) == saved);
        delete copy;
    }
    delete plugin;

    // a field of the wrong type, and a bad value
    char const text[] = "100";
    PluginField const wrong_type("keep_top_k", text, PluginFieldType::kCHAR, 3);
    PluginFieldCollection const wrong_fc{1, &wrong_type};
    mark = log.mark();
    CHECK(creator.createPlugin("nms", &wrong_fc, TensorRTPhase::kBUILD) == nullptr);
    CHECK(log.said("keep_top_k", mark));
    OnnxFields const zero(creator, {{"keep_top_k", {0}, {}}});
    mark = log.mark();
    CHECK(creator.createPlugin("nms", zero.get(), TensorRTPhase::kBUILD) == nullptr);
    CHECK(log.said("keep_top_k must be positive", mark));
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 3)
    {
        std::fprintf(stderr, "usage: %s <libmrd_trt_plugins.so> <libmrd_trt_plugins_selfregister.so>\n", argv[0]);
        return 2;
    }
    std::printf("TensorRT headers %d.%d.%d\n", NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR, NV_TENSORRT_PATCH);
    StandInRegistry loaded;
    gRegistry = &loaded;
    test_load_library_route(argv[1], loaded);
    StandInRegistry fresh;
    test_self_register_route(argv[2], fresh, loaded);

    // the creators as TensorRT's parser finds them, from the loadLibrary library (route a) ...
    if (IPluginCreatorV3One* roi = creator_of(loaded, mrd::kRoiAlignPluginName))
    {
        test_roi_align(*roi, loaded.finder.logger);
    }
    if (IPluginCreatorV3One* nms = creator_of(loaded, mrd::kNmsPluginName))
    {
        test_nms(*nms, loaded.finder.logger);
    }
    // ... and from the self-registering library (route b), which logs through TensorRT's global logger
    if (IPluginCreatorV3One* roi = creator_of(fresh, mrd::kRoiAlignPluginName))
    {
        test_roi_align(*roi, gGlobalLogger);
    }
    if (IPluginCreatorV3One* nms = creator_of(fresh, mrd::kNmsPluginName))
    {
        test_nms(*nms, gGlobalLogger);
    }
    if (std::getenv("MRD_TEST_VERBOSE") != nullptr)
    {
        for (CaptureLogger const* log : {&loaded.finder.logger, &gGlobalLogger})
        {
            std::printf("%s logged:\n", log == &gGlobalLogger ? "route (b), TensorRT's global logger" : "route (a), setLoggerFinder's logger");
            for (std::string const& m : log->messages)
            {
                std::printf("  %s\n", m.c_str());
            }
        }
    }
    std::printf("%d checks, %d failed\n", gChecks, gFailures);
    return gFailures == 0 ? 0 : 1;
}
