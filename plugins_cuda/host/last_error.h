// The message behind the last non-zero status of this library's C API, per thread.
#pragma once

#include <string>

namespace mrd::host
{

std::string& last_error();

// Records `message` and returns `status`, so a check reads `return fail(MRD_INVALID_ARGUMENT, "...")`.
inline int fail(int status, std::string message)
{
    last_error() = std::move(message);
    return status;
}

} // namespace mrd::host
