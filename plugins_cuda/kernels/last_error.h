// The message behind the last non-zero status of the kernels' C API, per thread.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

namespace mrd::cuda
{

std::string& last_error();

inline int fail(int status, std::string message)
{
    last_error() = std::move(message);
    return status;
}

// MRD_OK, or MRD_CUDA_ERROR with the launch error of the last kernel.
int check_launch(char const* what);

} // namespace mrd::cuda
