#include "last_error.h"

#include "mrd/c_api.h"

namespace mrd::host
{

std::string& last_error()
{
    thread_local std::string message;
    return message;
}

} // namespace mrd::host

extern "C" MRD_API char const* mrd_last_error(void)
{
    return mrd::host::last_error().c_str();
}
