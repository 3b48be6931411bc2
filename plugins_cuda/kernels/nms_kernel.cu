// CUDA MRD_BatchedNms with fixed-size outputs, in three steps per batch:
//   1. every (n, c) gets a 64-bit sort key: image index, then score descending; non-candidates sort last;
//   2. one stable device-wide radix sort (ties keep ascending flat index n * C + c, torchvision's order);
//   3. one block per image walks its sorted candidates in tiles of kTile: each candidate is first checked
//      against the boxes already kept, then a kTile x kTile suppression bitmask resolves the tile in order.
//      The walk stops at keep_top_k survivors, so the cost follows K, not the number of candidates.
// Greedy NMS keeps a candidate unless an earlier *kept* box of its class overlaps it, which is what both the
// CPU reference and torchvision compute; the IoU is mrd/nms_math.h, shared with the reference.
#include "last_error.h"

#include "mrd/c_api.h"
#include "mrd/nms_math.h"
#include "mrd/params.h"

#include <cub/device/device_radix_sort.cuh>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cstdint>

namespace
{

constexpr int kTile = 256;
constexpr int kMaskWords = kTile / 32;
constexpr size_t kAlign = 256;

size_t align_up(size_t n)
{
    return (n + kAlign - 1) / kAlign * kAlign;
}

// Carves the caller's workspace into the arrays below; the same arithmetic sizes and splits it.
struct Workspace
{
    uint64_t* keys_in;
    uint64_t* keys_out;
    int32_t* vals_in;
    int32_t* vals_out;
    int32_t* counts;
    mrd::Box* kept_boxes;
    int32_t* kept_classes;
    void* sort_temp;
    size_t sort_temp_bytes;
    size_t total;
};

int key_bits(int32_t batch)
{
    int bits = 0;
    while ((int64_t{1} << bits) < batch)
    {
        ++bits;
    }
    return 32 + bits;
}

// The layout of the workspace for these sizes at `base` (nullptr: sizes only). cub's radix sort says how much
// temporary storage it needs; that query fails without a usable CUDA device, and then there is no layout.
cudaError_t layout(
    char* base, int32_t batch, int32_t num_boxes, int32_t num_classes, int32_t keep_top_k, Workspace& w)
{
    size_t const items = static_cast<size_t>(batch) * num_boxes * num_classes;
    size_t sort_bytes = 0;
    cudaError_t const err = cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes,
        static_cast<uint64_t const*>(nullptr), static_cast<uint64_t*>(nullptr), static_cast<int32_t const*>(nullptr),
        static_cast<int32_t*>(nullptr), static_cast<int>(items), 0, key_bits(batch));
    if (err != cudaSuccess)
    {
        (void) cudaGetLastError(); // the query's error is reported here, not left for the next launch check
        w = Workspace{};
        return err;
    }
    w = Workspace{};
    size_t offset = 0;
    auto take = [&](size_t bytes) {
        char* p = base == nullptr ? nullptr : base + offset;
        offset += align_up(bytes);
        return p;
    };
    w.keys_in = reinterpret_cast<uint64_t*>(take(items * sizeof(uint64_t)));
    w.keys_out = reinterpret_cast<uint64_t*>(take(items * sizeof(uint64_t)));
    w.vals_in = reinterpret_cast<int32_t*>(take(items * sizeof(int32_t)));
    w.vals_out = reinterpret_cast<int32_t*>(take(items * sizeof(int32_t)));
    w.counts = reinterpret_cast<int32_t*>(take(static_cast<size_t>(batch) * sizeof(int32_t)));
    w.kept_boxes = reinterpret_cast<mrd::Box*>(take(static_cast<size_t>(batch) * keep_top_k * sizeof(mrd::Box)));
    w.kept_classes = reinterpret_cast<int32_t*>(take(static_cast<size_t>(batch) * keep_top_k * sizeof(int32_t)));
    w.sort_temp = take(sort_bytes);
    w.sort_temp_bytes = sort_bytes;
    w.total = offset;
    return cudaSuccess;
}

template <typename T>
__device__ mrd::Box load_box(
    T const* boxes, int64_t b, int32_t n, int32_t c, int32_t num_boxes, int32_t num_classes, bool per_class)
{
    T const* p = per_class ? boxes + ((b * num_boxes + n) * num_classes + c) * 4 : boxes + (b * num_boxes + n) * 4;
    return mrd::Box{mrd::to_float(p[0]), mrd::to_float(p[1]), mrd::to_float(p[2]), mrd::to_float(p[3])};
}

// Monotone map of a float onto uint32 (a < b  <=>  ordered(a) < ordered(b)), -0 folded onto +0.
__device__ uint32_t ordered(float score)
{
    uint32_t const u = __float_as_uint(mrd::add(score, 0.0f));
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

template <typename T>
__global__ void candidate_keys_kernel(T const* __restrict__ boxes, T const* __restrict__ scores, int32_t batch,
    int32_t num_boxes, int32_t num_classes, bool per_class, MrdNmsParams p, uint64_t* __restrict__ keys,
    int32_t* __restrict__ vals, int32_t* __restrict__ counts)
{
    int64_t const per_image = static_cast<int64_t>(num_boxes) * num_classes;
    int64_t const total = per_image * batch;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int64_t const b = i / per_image;
        int32_t const flat = static_cast<int32_t>(i - b * per_image);
        int32_t const n = flat / num_classes;
        int32_t const c = flat - n * num_classes;
        float const s = mrd::to_float(scores[i]);
        mrd::Box const box = load_box(boxes, b, n, c, num_boxes, num_classes, per_class);
        bool const valid = mrd::is_candidate(box, s, c, p.score_threshold, p.min_box_size, p.background_class);
        uint32_t const low = valid ? ~ordered(s) : 0xFFFFFFFFu;
        keys[i] = (static_cast<uint64_t>(b) << 32) | low;
        vals[i] = flat;
        if (valid)
        {
            atomicAdd(counts + b, 1);
        }
    }
}

template <typename T>
__global__ void __launch_bounds__(kTile) select_kernel(T const* __restrict__ boxes, T const* __restrict__ scores,
    int32_t num_boxes, int32_t num_classes, bool per_class, MrdNmsParams p, int32_t const* __restrict__ sorted,
    int32_t const* __restrict__ counts, mrd::Box* __restrict__ kept_boxes, int32_t* __restrict__ kept_classes,
    int32_t* __restrict__ num_detections, T* __restrict__ out_boxes, T* __restrict__ out_scores,
    int32_t* __restrict__ out_classes, int32_t* __restrict__ out_indices)
{
    __shared__ mrd::Box tile_box[kTile];
    __shared__ int32_t tile_cls[kTile];
    __shared__ int32_t tile_flat[kTile];
    __shared__ bool tile_alive[kTile];
    __shared__ uint32_t tile_mask[kTile][kMaskWords];
    __shared__ int32_t kept;

    int64_t const b = blockIdx.x;
    int const t = threadIdx.x;
    int32_t const k = p.keep_top_k;
    int64_t const per_image = static_cast<int64_t>(num_boxes) * num_classes;
    int32_t const* order = sorted + b * per_image;
    mrd::Box* my_kept_boxes = kept_boxes + b * k;
    int32_t* my_kept_classes = kept_classes + b * k;
    int32_t m = counts[b];
    if (p.pre_nms_top_k > 0 && m > p.pre_nms_top_k)
    {
        m = p.pre_nms_top_k;
    }
    if (t == 0)
    {
        kept = 0;
    }
    __syncthreads();

    for (int32_t start = 0; start < m && kept < k; start += kTile)
    {
        int32_t const tile_n = min(kTile, m - start);
        bool alive = t < tile_n;
        mrd::Box box{};
        int32_t cls = -1;
        if (alive)
        {
            int32_t const flat = order[start + t];
            int32_t const n = flat / num_classes;
            cls = flat - n * num_classes;
            box = load_box(boxes, b, n, cls, num_boxes, num_classes, per_class);
            tile_box[t] = box;
            tile_cls[t] = cls;
            tile_flat[t] = flat;
            for (int32_t j = 0; j < kept && alive; ++j)
            {
                alive = !mrd::suppresses(my_kept_boxes[j], my_kept_classes[j], box, cls, p.iou_threshold);
            }
        }
        tile_alive[t] = alive;
        __syncthreads();

        // row t: which later members of the tile this candidate suppresses if it is kept
        for (int w = 0; w < kMaskWords; ++w)
        {
            uint32_t bits = 0;
            if (alive)
            {
                for (int bit = 0; bit < 32; ++bit)
                {
                    int const j = w * 32 + bit;
                    if (j > t && j < tile_n && tile_alive[j]
                        && mrd::suppresses(box, cls, tile_box[j], tile_cls[j], p.iou_threshold))
                    {
                        bits |= 1u << bit;
                    }
                }
            }
            tile_mask[t][w] = bits;
        }
        __syncthreads();

        if (t == 0)
        {
            uint32_t removed[kMaskWords] = {};
            int32_t count = kept;
            for (int u = 0; u < tile_n && count < k; ++u)
            {
                if (!tile_alive[u] || ((removed[u / 32] >> (u % 32)) & 1u))
                {
                    continue;
                }
                for (int w = 0; w < kMaskWords; ++w)
                {
                    removed[w] |= tile_mask[u][w];
                }
                int32_t const flat = tile_flat[u];
                int32_t const n = flat / num_classes;
                mrd::Box const& kb = tile_box[u];
                my_kept_boxes[count] = kb;
                my_kept_classes[count] = tile_cls[u];
                int64_t const o = b * k + count;
                out_boxes[o * 4 + 0] = mrd::from_float<T>(kb.x1);
                out_boxes[o * 4 + 1] = mrd::from_float<T>(kb.y1);
                out_boxes[o * 4 + 2] = mrd::from_float<T>(kb.x2);
                out_boxes[o * 4 + 3] = mrd::from_float<T>(kb.y2);
                out_scores[o] = scores[b * per_image + flat];
                out_classes[o] = tile_cls[u];
                out_indices[o] = n;
                ++count;
            }
            kept = count;
        }
        __syncthreads();
    }

    int32_t const final_kept = kept;
    for (int32_t i = final_kept + t; i < k; i += blockDim.x)
    {
        int64_t const o = b * k + i;
        T const zero = mrd::from_float<T>(0.0f);
        out_boxes[o * 4 + 0] = zero;
        out_boxes[o * 4 + 1] = zero;
        out_boxes[o * 4 + 2] = zero;
        out_boxes[o * 4 + 3] = zero;
        out_scores[o] = zero;
        out_classes[o] = -1;
        out_indices[o] = -1;
    }
    if (t == 0)
    {
        num_detections[b] = final_kept;
    }
}

template <typename T>
int run(MrdNmsParams const& p, void const* boxes_v, void const* scores_v, int32_t batch, int32_t num_boxes,
    int32_t num_classes, bool per_class, int32_t* num_detections, void* out_boxes, void* out_scores,
    int32_t* out_classes, int32_t* out_indices, Workspace const& w, cudaStream_t stream)
{
    auto const* boxes = static_cast<T const*>(boxes_v);
    auto const* scores = static_cast<T const*>(scores_v);
    int64_t const items = static_cast<int64_t>(batch) * num_boxes * num_classes;
    cudaError_t err = cudaMemsetAsync(w.counts, 0, static_cast<size_t>(batch) * sizeof(int32_t), stream);
    if (err != cudaSuccess)
    {
        return mrd::cuda::fail(MRD_CUDA_ERROR, std::string("MRD_BatchedNms memset: ") + cudaGetErrorString(err));
    }
    if (items > 0)
    {
        int const threads = 256;
        int64_t const blocks = std::min<int64_t>((items + threads - 1) / threads, int64_t{1} << 16);
        candidate_keys_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
            boxes, scores, batch, num_boxes, num_classes, per_class, p, w.keys_in, w.vals_in, w.counts);
        if (int const s = mrd::cuda::check_launch("MRD_BatchedNms candidate kernel"))
        {
            return s;
        }
        size_t temp_bytes = w.sort_temp_bytes;
        err = cub::DeviceRadixSort::SortPairs(w.sort_temp, temp_bytes, w.keys_in, w.keys_out, w.vals_in,
            w.vals_out, static_cast<int>(items), 0, key_bits(batch), stream);
        if (err != cudaSuccess)
        {
            return mrd::cuda::fail(MRD_CUDA_ERROR, std::string("MRD_BatchedNms sort: ") + cudaGetErrorString(err));
        }
    }
    select_kernel<T><<<static_cast<unsigned>(batch), kTile, 0, stream>>>(boxes, scores, num_boxes, num_classes,
        per_class, p, w.vals_out, w.counts, w.kept_boxes, w.kept_classes, num_detections, static_cast<T*>(out_boxes),
        static_cast<T*>(out_scores), out_classes, out_indices);
    return mrd::cuda::check_launch("MRD_BatchedNms select kernel");
}

} // namespace

extern "C" MRD_API int mrd_cuda_batched_nms_query_workspace(
    int32_t batch, int32_t num_boxes, int32_t num_classes, int32_t keep_top_k, size_t* bytes)
{
    using mrd::cuda::fail;
    if (bytes == nullptr)
    {
        return fail(MRD_INVALID_ARGUMENT, "MRD_BatchedNms workspace size: null result pointer");
    }
    *bytes = 0;
    if (batch < 0 || num_boxes < 0 || num_classes < 0 || keep_top_k < 0)
    {
        return fail(MRD_INVALID_ARGUMENT, "MRD_BatchedNms workspace size: negative batch/num_boxes/num_classes/keep_top_k");
    }
    if (static_cast<int64_t>(batch) * num_boxes * num_classes > INT_MAX)
    {
        return fail(MRD_INVALID_ARGUMENT, "MRD_BatchedNms workspace size: batch * num_boxes * num_classes exceeds 2^31 - 1");
    }
    Workspace w{};
    cudaError_t const err = layout(nullptr, batch, num_boxes, num_classes, keep_top_k, w);
    if (err != cudaSuccess)
    {
        return fail(MRD_CUDA_ERROR,
            std::string("MRD_BatchedNms workspace size: cub's radix sort size query failed: ") + cudaGetErrorString(err));
    }
    *bytes = w.total;
    return MRD_OK;
}

extern "C" MRD_API size_t mrd_cuda_batched_nms_workspace_size(
    int32_t batch, int32_t num_boxes, int32_t num_classes, int32_t keep_top_k)
{
    size_t bytes = 0;
    return mrd_cuda_batched_nms_query_workspace(batch, num_boxes, num_classes, keep_top_k, &bytes) == MRD_OK ? bytes : 0;
}

extern "C" MRD_API int mrd_cuda_batched_nms(int32_t dtype, MrdNmsParams const* params, void const* boxes,
    void const* scores, int32_t batch, int32_t num_boxes, int32_t num_classes, int32_t per_class_boxes,
    int32_t* num_detections, void* out_boxes, void* out_scores, int32_t* out_classes, int32_t* out_indices,
    void* workspace, size_t workspace_bytes, void* stream)
{
    using mrd::cuda::fail;
    if (params == nullptr)
    {
        return fail(MRD_INVALID_ARGUMENT, "MRD_BatchedNms: null params");
    }
    std::string const err = mrd::validate(*params);
    if (!err.empty())
    {
        return fail(MRD_INVALID_ARGUMENT, "MRD_BatchedNms: " + err);
    }
    if (batch < 0 || num_boxes < 0 || num_classes < 0)
    {
        return fail(MRD_INVALID_ARGUMENT, "MRD_BatchedNms: negative batch/num_boxes/num_classes");
    }
    if (static_cast<int64_t>(batch) * num_boxes * num_classes > INT_MAX)
    {
        return fail(MRD_INVALID_ARGUMENT, "MRD_BatchedNms: batch * num_boxes * num_classes exceeds 2^31 - 1");
    }
    if (batch == 0)
    {
        return MRD_OK;
    }
    Workspace w{};
    cudaError_t const query = layout(static_cast<char*>(workspace), batch, num_boxes, num_classes, params->keep_top_k, w);
    if (query != cudaSuccess)
    {
        return fail(MRD_CUDA_ERROR, std::string("MRD_BatchedNms: cub's radix sort size query failed: ")
                + cudaGetErrorString(query));
    }
    if (workspace == nullptr || workspace_bytes < w.total)
    {
        return fail(MRD_WORKSPACE_TOO_SMALL,
            "MRD_BatchedNms: workspace of " + std::to_string(workspace_bytes) + " bytes, "
                + std::to_string(w.total) + " needed for these shapes (mrd_cuda_batched_nms_query_workspace)");
    }
    auto const s = static_cast<cudaStream_t>(stream);
    bool const per_class = per_class_boxes != 0;
    switch (dtype)
    {
    case MRD_FLOAT32:
        return run<float>(*params, boxes, scores, batch, num_boxes, num_classes, per_class, num_detections, out_boxes,
            out_scores, out_classes, out_indices, w, s);
    case MRD_FLOAT16:
        return run<__half>(*params, boxes, scores, batch, num_boxes, num_classes, per_class, num_detections,
            out_boxes, out_scores, out_classes, out_indices, w, s);
    default: return fail(MRD_INVALID_ARGUMENT, "MRD_BatchedNms: dtype must be MRD_FLOAT32 or MRD_FLOAT16");
    }
}
