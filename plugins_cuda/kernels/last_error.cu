#include "last_error.h"

#include "mrd/c_api.h"

namespace mrd::cuda
{

std::string& last_error()
{
    thread_local std::string message;
    return message;
}

int check_launch(char const* what)
{
    cudaError_t const err = cudaGetLastError();
    if (err != cudaSuccess)
    {
        return fail(MRD_CUDA_ERROR, std::string(what) + ": " + cudaGetErrorString(err));
    }
    return MRD_OK;
}

} // namespace mrd::cuda

extern "C" MRD_API char const* mrd_cuda_last_error(void)
{
    return mrd::cuda::last_error().c_str();
}
