"""The C++ side declares exactly the ops of runtime/plugins/spec.py: names, version, fields, defaults, C structs.

TensorRT's ONNX parser matches a node to a plugin by op type and version and passes each attribute as the
field of the same name, so a typo on either side would only show up as a failed engine build on a GPU machine.
"""

from __future__ import annotations

import re

from runtime.plugins import abi, spec
from tests.common import REPO

PLUGINS = REPO / "plugins_cuda"
OP_SPEC_H = (PLUGINS / "include" / "mrd" / "op_spec.h").read_text()


def cpp_string(name: str) -> str:
    m = re.search(rf'constexpr char const\* {name} = "([^"]*)";', OP_SPEC_H)
    assert m, f"{name} not declared in op_spec.h"
    return m.group(1)


def cpp_string_array(name: str) -> tuple[str, ...]:
    m = re.search(rf"constexpr char const\* {name}\[\] = \{{(.*?)\}};", OP_SPEC_H, re.S)
    assert m, f"{name} not declared in op_spec.h"
    return tuple(re.findall(r'"([^"]*)"', m.group(1)))


def test_plugin_names_version_namespace() -> None:
    assert cpp_string("kRoiAlignPluginName") == spec.ROI_ALIGN_OP
    assert cpp_string("kNmsPluginName") == spec.NMS_OP
    assert cpp_string("kPluginVersion") == spec.PLUGIN_VERSION
    assert cpp_string("kPluginNamespace") == spec.PLUGIN_NAMESPACE


def test_field_names_in_declared_order() -> None:
    assert cpp_string_array("kRoiAlignFieldNames") == spec.ROI_ALIGN_FIELDS
    assert cpp_string_array("kNmsFieldNames") == spec.NMS_FIELDS


def test_plugins_take_names_only_from_op_spec() -> None:
    """No plugin source spells a plugin or field name itself, so op_spec.h is the C++ side's one copy."""
    names = {spec.ROI_ALIGN_OP, spec.NMS_OP, *spec.ROI_ALIGN_FIELDS, *spec.NMS_FIELDS}
    for source in sorted((PLUGINS / "trt").glob("*.*")):
        if source.name == "plugin_fields.cpp":  # the field parser, checked against the spec below
            continue
        literals = set(re.findall(r'"([A-Za-z_]+)"', source.read_text()))
        assert not literals & names, f"{source.name} spells {literals & names}; use mrd/op_spec.h"
    fields_cpp = (PLUGINS / "trt" / "plugin_fields.cpp").read_text()
    for getter in ("getPluginName", "getPluginVersion"):
        for source in ("roi_align_plugin.cpp", "nms_plugin.cpp"):
            body = (PLUGINS / "trt" / source).read_text()
            assert re.search(rf"{getter}\(\) const noexcept\s*\{{\s*return k\w+;", body), (source, getter)
    # every field the parser accepts is a spec field
    accepted = set(re.findall(r'name == "([a-z_]+)"', fields_cpp))
    assert accepted == set(spec.ROI_ALIGN_FIELDS + spec.NMS_FIELDS)


def test_plugin_defaults_equal_the_spec_defaults() -> None:
    fields_cpp = (PLUGINS / "trt" / "plugin_fields.cpp").read_text()
    nms = re.search(r"return MrdNmsParams\{(.*?)\};", fields_cpp).group(1)
    values = [float(v.strip().rstrip("f")) for v in nms.split(",")]
    assert values == [float(v) for v in spec.BatchedNmsAttrs().as_dict().values()]
    roi = spec.MultiLevelRoiAlignAttrs()
    for name in (
        "output_height",
        "output_width",
        "sampling_ratio",
        "aligned",
        "canonical_box_size",
        "canonical_level",
        "legacy_plus_one",
    ):
        m = re.search(rf"p\.{name} = (-?\d+);", fields_cpp)
        assert m and int(m.group(1)) == getattr(roi, name), name
    scales = re.search(r"float const scales\[\] = \{(.*?)\};", fields_cpp).group(1)
    assert tuple(float(s.strip().rstrip("f")) for s in scales.split(",")) == roi.spatial_scales


def c_struct_fields(name: str) -> list[str]:
    c_api = (PLUGINS / "include" / "mrd" / "c_api.h").read_text()
    body = re.search(rf"typedef struct {name}\s*\{{(.*?)\}}", c_api, re.S).group(1)
    return re.findall(r"(\w+)(?:\[\w+\])?;", body)


def test_ctypes_structs_mirror_c_api() -> None:
    assert c_struct_fields("MrdRoiAlignParams") == [f[0] for f in abi.RoiAlignParams._fields_]
    assert c_struct_fields("MrdNmsParams") == [f[0] for f in abi.NmsParams._fields_]
    assert set(c_struct_fields("MrdNmsParams")) == set(spec.NMS_FIELDS)
    assert set(c_struct_fields("MrdRoiAlignParams")) - {"num_levels"} == set(spec.ROI_ALIGN_FIELDS)
    assert f"#define MRD_MAX_LEVELS {abi.MAX_LEVELS}" in (PLUGINS / "include" / "mrd" / "c_api.h").read_text()


def test_legacy_plus_one_is_appended_and_reaches_every_level_computation() -> None:
    """legacy_plus_one came last (the fields before it keep their order, in the spec, the plugin's field list and
    the C struct), the TensorRT plugin serializes every declared field, and every caller of the shared level
    function passes it on (the CUDA call site cannot be run here, so it is checked in the source)."""
    old_fields = (
        "output_height",
        "output_width",
        "sampling_ratio",
        "aligned",
        "spatial_scales",
        "canonical_box_size",
        "canonical_level",
    )
    assert spec.ROI_ALIGN_FIELDS == (*old_fields, "legacy_plus_one")
    assert spec.MultiLevelRoiAlignAttrs().legacy_plus_one == 0
    assert c_struct_fields("MrdRoiAlignParams")[-1] == "legacy_plus_one"
    fields_cpp = (PLUGINS / "trt" / "plugin_fields.cpp").read_text()
    serialized = re.search(
        r"roi_align_fields_of\(MrdRoiAlignParams const& p\)\s*\{(.*?)\n\}", fields_cpp, re.S
    )
    assert serialized, "roi_align_fields_of not found"
    indices = [int(i) for i in re.findall(r"kRoiAlignFieldNames\[(\d+)\]", serialized.group(1))]
    assert indices == list(range(len(spec.ROI_ALIGN_FIELDS)))
    assert "&p.legacy_plus_one" in serialized.group(1)
    math_h = (PLUGINS / "include" / "mrd" / "roi_align_math.h").read_text()
    signature = re.search(r"MRD_HD int roi_level\((.*?)\)", math_h, re.S).group(1)
    assert signature.split(",")[-1].split() == ["int", "legacy_plus_one"]
    for source in (PLUGINS / "host" / "roi_align_host.cpp", PLUGINS / "kernels" / "roi_align_kernel.cu"):
        calls = re.findall(r"mrd::roi_level\((.*?)\);", source.read_text(), re.S)
        assert calls and all(c.split(",")[-1].strip().endswith("legacy_plus_one") for c in calls), source.name
    params_h = (PLUGINS / "include" / "mrd" / "params.h").read_text()
    assert "legacy_plus_one must be 0 or 1" in params_h
