/* Plain C API of libmrd_host (CPU, float32) and libmrd_kernels (CUDA, float32/float16).
 *
 * C, not C++, so that Python reaches both through ctypes (numpy arrays for the host library, torch CUDA tensors'
 * data_ptr() for the kernels) and the TensorRT plugins call the same entry points as the tests do.
 * Every function returns MRD_OK or an error code; mrd_last_error() / mrd_cuda_last_error() say why. */
#ifndef MRD_C_API_H
#define MRD_C_API_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define MRD_API __declspec(dllexport)
#else
#define MRD_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define MRD_MAX_LEVELS 8
/* Bounds on what one roi may cost, whatever a model file says: samples per bin side (a sampling_ratio
 * attribute, or the adaptive ceil(roi_size / output_size) of a huge roi) and the pooled output size. A roi
 * inside the image needs at most ceil(feature map side / output side) samples per bin side: 48 for a
 * 1344-px image at stride 4 and a 7-wide output, so the cap changes no legitimate result. */
#define MRD_MAX_SAMPLING 128
#define MRD_MAX_OUTPUT_SIDE 1024

enum MrdStatus
{
    MRD_OK = 0,
    MRD_INVALID_ARGUMENT = 1,
    MRD_CUDA_ERROR = 2,
    MRD_WORKSPACE_TOO_SMALL = 3
};

enum MrdDataType
{
    MRD_FLOAT32 = 0,
    MRD_FLOAT16 = 1
};

/* Attributes of MRD_MultiLevelRoiAlign (runtime/plugins/spec.py: MultiLevelRoiAlignAttrs). */
typedef struct MrdRoiAlignParams
{
    int32_t output_height;
    int32_t output_width;
    int32_t sampling_ratio;
    int32_t aligned;
    int32_t canonical_box_size;
    int32_t canonical_level;
    int32_t num_levels;
    float spatial_scales[MRD_MAX_LEVELS];
    int32_t legacy_plus_one; /* 0 or 1: FPN level from (x2 - x1 + 1) * (y2 - y1 + 1) (appended last) */
} MrdRoiAlignParams;

/* Attributes of MRD_BatchedNms (runtime/plugins/spec.py: BatchedNmsAttrs). */
typedef struct MrdNmsParams
{
    float score_threshold;
    float iou_threshold;
    float min_box_size;
    int32_t pre_nms_top_k;
    int32_t keep_top_k;
    int32_t background_class;
} MrdNmsParams;

/* ---- libmrd_host: CPU reference, host pointers, float32 ---- */

/* rois [batch, num_rois, 4]; features[l] [batch, channels, heights[l], widths[l]];
 * output [batch * num_rois, channels, output_height, output_width]. */
MRD_API int mrd_multilevel_roi_align_f32(MrdRoiAlignParams const* params, float const* rois, int32_t batch,
    int32_t num_rois, int32_t channels, float const* const* features, int32_t const* heights, int32_t const* widths,
    float* output);

/* boxes [batch, num_boxes, 4] (per_class_boxes == 0) or [batch, num_boxes, num_classes, 4];
 * scores [batch, num_boxes, num_classes]; outputs num_detections [batch], out_boxes [batch, K, 4],
 * out_scores [batch, K], out_classes [batch, K], out_indices [batch, K] with K = params->keep_top_k. */
MRD_API int mrd_batched_nms_f32(MrdNmsParams const* params, float const* boxes, float const* scores, int32_t batch,
    int32_t num_boxes, int32_t num_classes, int32_t per_class_boxes, int32_t* num_detections, float* out_boxes,
    float* out_scores, int32_t* out_classes, int32_t* out_indices);

MRD_API char const* mrd_last_error(void);

/* ---- libmrd_kernels: CUDA, device pointers, float32 or float16 (dtype: MrdDataType) ----
 * rois are always float32 (coordinates in float16 would move rois across FPN levels); features/outputs, boxes and
 * scores are `dtype`. `features` is a HOST array of DEVICE pointers. stream is a cudaStream_t (0: default). */

MRD_API int mrd_cuda_multilevel_roi_align(int32_t dtype, MrdRoiAlignParams const* params, float const* rois,
    int32_t batch, int32_t num_rois, int32_t channels, void const* const* features, int32_t const* heights,
    int32_t const* widths, void* output, void* stream);

/* Bytes of device workspace mrd_cuda_batched_nms needs for these sizes, into *bytes. It asks cub how much its
 * radix sort needs, which takes a CUDA device: MRD_CUDA_ERROR (and *bytes = 0) where that query fails. */
MRD_API int mrd_cuda_batched_nms_query_workspace(
    int32_t batch, int32_t num_boxes, int32_t num_classes, int32_t keep_top_k, size_t* bytes);

/* The same size as a return value, 0 when the query fails (mrd_cuda_last_error() says why). */
MRD_API size_t mrd_cuda_batched_nms_workspace_size(
    int32_t batch, int32_t num_boxes, int32_t num_classes, int32_t keep_top_k);

MRD_API int mrd_cuda_batched_nms(int32_t dtype, MrdNmsParams const* params, void const* boxes, void const* scores,
    int32_t batch, int32_t num_boxes, int32_t num_classes, int32_t per_class_boxes, int32_t* num_detections,
    void* out_boxes, void* out_scores, int32_t* out_classes, int32_t* out_indices, void* workspace,
    size_t workspace_bytes, void* stream);

MRD_API char const* mrd_cuda_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* MRD_C_API_H */
