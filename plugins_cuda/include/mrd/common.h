// Portability layer for the math shared by the CPU library, the CUDA kernels and the TensorRT plugins.
//
// Every function that decides a number (a sample position, a level, an IoU) is written once, as an MRD_HD
// inline function, so the host reference that CI tests against torchvision is the very code the GPU runs.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define MRD_HD __host__ __device__ __forceinline__
#else
#define MRD_HD inline
#endif

namespace mrd
{

// Multiplication and addition that the compiler may not fuse into an FMA. torchvision's CPU kernels round
// after every operation; on the GPU an FMA would round once and move an IoU across a threshold, so the
// device would keep a different box than the reference.
MRD_HD float mul(float a, float b)
{
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

MRD_HD float add(float a, float b)
{
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

MRD_HD float sub(float a, float b)
{
#if defined(__CUDA_ARCH__)
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

MRD_HD float to_float(float v)
{
    return v;
}

#if defined(__CUDACC__)
MRD_HD float to_float(__half v)
{
    return __half2float(v);
}
#endif

template <typename T>
MRD_HD T from_float(float v);

template <>
MRD_HD float from_float<float>(float v)
{
    return v;
}

#if defined(__CUDACC__)
template <>
MRD_HD __half from_float<__half>(float v)
{
    return __float2half_rn(v);
}
#endif

MRD_HD float max_f(float a, float b)
{
    return a > b ? a : b;
}

MRD_HD float min_f(float a, float b)
{
    return a < b ? a : b;
}

// Neither NaN nor infinite (no fast-math here: the comparisons mean what they say)
MRD_HD bool finite_f(float v)
{
    return v == v && v <= 3.402823466e38f && v >= -3.402823466e38f;
}

} // namespace mrd
