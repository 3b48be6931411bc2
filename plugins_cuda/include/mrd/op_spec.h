// Plugin names, version and field names of the two ops. They must equal runtime/plugins/spec.py, the one
// written spec (tests/plugins/test_spec.py compares them), because TensorRT's ONNX parser finds a plugin by the
// node's op type and turns each ONNX attribute into the plugin field of the same name.
#pragma once

namespace mrd
{

constexpr char const* kPluginVersion = "1";
constexpr char const* kPluginNamespace = "";

constexpr char const* kRoiAlignPluginName = "MRD_MultiLevelRoiAlign";
constexpr char const* kRoiAlignFieldNames[] = {
    "output_height",
    "output_width",
    "sampling_ratio",
    "aligned",
    "spatial_scales",
    "canonical_box_size",
    "canonical_level",
    "legacy_plus_one",
};

constexpr char const* kNmsPluginName = "MRD_BatchedNms";
constexpr char const* kNmsFieldNames[] = {
    "score_threshold",
    "iou_threshold",
    "min_box_size",
    "pre_nms_top_k",
    "keep_top_k",
    "background_class",
};

// Not an ONNX attribute (the creator does not declare it, so the ONNX parser never passes it): the NMS plugin
// writes the workspace size it asked TensorRT for into the engine (getFieldsToSerialize), so that the plugin
// created from the engine checks the workspace it is given against that size.
constexpr char const* kNmsWorkspaceField = "workspace_bytes";

} // namespace mrd
