"""`trt`-flavor graphs with the two plugin nodes run on ONNX Runtime's CPU through the reference ops."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime_extensions")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper  # noqa: E402
from torchvision.ops import MultiScaleRoIAlign  # noqa: E402

from runtime.plugins.library import HOST_LIBRARY  # noqa: E402
from runtime.plugins.ort_reference import reference_session, with_reference_ops  # noqa: E402
from runtime.plugins.reference import batched_nms_reference  # noqa: E402
from runtime.plugins.spec import DOMAIN, NMS_OP, ROI_ALIGN_OP, BatchedNmsAttrs, MultiLevelRoiAlignAttrs  # noqa: E402
from scripts.build_plugins import BuildToolMissing, ensure_built  # noqa: E402
from tests.plugins.torchvision_reference import (  # noqa: E402
    boundary_rois,
    plus_one_levels,
    roi_align_at_levels,
    torchvision_multiscale,
    torchvision_postprocess,
)


@pytest.fixture(scope="module", autouse=True)
def host_library() -> None:
    try:
        ensure_built(HOST_LIBRARY)
    except BuildToolMissing as e:
        pytest.skip(f"cannot build the plugin libraries here: {e}")


def plugin_graph(
    levels: int, roi_attrs: dict, nms_attrs: dict, dtype: int = TensorProto.FLOAT
) -> onnx.ModelProto:
    """NMS on per-class boxes, then ROIAlign of the kept boxes: the `trt` flavor's two nodes in a row."""
    feats = [f"feature_{i}" for i in range(levels)]
    inputs = [
        helper.make_tensor_value_info("boxes", dtype, ["B", "N", "C", 4]),
        helper.make_tensor_value_info("scores", dtype, ["B", "N", "C"]),
    ] + [helper.make_tensor_value_info(f, dtype, ["B", 3, f"H{i}", f"W{i}"]) for i, f in enumerate(feats)]
    nodes = [
        helper.make_node(
            NMS_OP,
            ["boxes", "scores"],
            ["num", "det_boxes", "det_scores", "det_classes", "det_indices"],
            name="nms",
            domain=DOMAIN,
            **nms_attrs,
        ),
        helper.make_node("Cast", ["det_boxes"], ["rois"], to=TensorProto.FLOAT),
        helper.make_node(ROI_ALIGN_OP, ["rois", *feats], ["pooled"], name="pool", domain=DOMAIN, **roi_attrs),
    ]
    outputs = [
        helper.make_tensor_value_info("num", TensorProto.INT32, ["B"]),
        helper.make_tensor_value_info("det_boxes", dtype, ["B", "K", 4]),
        helper.make_tensor_value_info("det_classes", TensorProto.INT32, ["B", "K"]),
        helper.make_tensor_value_info("det_indices", TensorProto.INT32, ["B", "K"]),
        helper.make_tensor_value_info("pooled", dtype, ["BK", 3, "P", "P"]),
    ]
    graph = helper.make_graph(nodes, "plugins", inputs, outputs)
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]
    )


def make_inputs(
    rng: np.random.Generator, batch: int, image: tuple[int, int], scales
) -> dict[str, np.ndarray]:
    n, c = 60, 4
    xy = rng.uniform(-20, max(image), size=(batch, n, c, 2))
    wh = np.exp(rng.uniform(np.log(4), np.log(600), size=(batch, n, c, 2)))
    feed = {
        "boxes": np.concatenate([xy, xy + wh], -1).astype(np.float32),
        "scores": rng.random((batch, n, c)).astype(np.float32),
    }
    for i, s in enumerate(scales):
        feed[f"feature_{i}"] = rng.standard_normal((batch, 3, int(image[0] * s), int(image[1] * s))).astype(
            np.float32
        )
    return feed


def test_graph_runs_and_matches_torchvision() -> None:
    rng = np.random.default_rng(0)
    image = (128, 160)
    roi = MultiLevelRoiAlignAttrs(output_height=14, output_width=14, sampling_ratio=-1)
    nms = BatchedNmsAttrs(score_threshold=0.3, iou_threshold=0.6, keep_top_k=20, background_class=0)
    model = plugin_graph(4, roi.as_dict(), nms.as_dict())
    feed = make_inputs(rng, 2, image, roi.spatial_scales)
    num, det_boxes, classes, indices, pooled = reference_session(model).run(None, feed)

    ref = batched_nms_reference(feed["boxes"], feed["scores"], nms)
    np.testing.assert_array_equal(num, ref.num_detections)
    np.testing.assert_array_equal(det_boxes, ref.boxes)
    np.testing.assert_array_equal(classes, ref.classes)
    np.testing.assert_array_equal(indices, ref.indices)
    assert np.all(classes[num[:, None] > np.arange(20)] >= 1), "background (class 0) never comes out"

    names = [str(i) for i in range(4)]
    pooler = MultiScaleRoIAlign(names, 14, sampling_ratio=-1)
    expected = pooler(
        {n: torch.from_numpy(feed[f"feature_{n}"]) for n in names},
        [torch.from_numpy(b) for b in det_boxes],
        [image] * 2,
    ).numpy()
    assert pooled.shape == (40, 3, 14, 14)
    np.testing.assert_allclose(pooled, expected, atol=1e-5, rtol=1e-5)


def test_attributes_come_from_the_node_and_defaults_fill_the_rest() -> None:
    rng = np.random.default_rng(1)
    scales = (0.25, 0.125)
    model = plugin_graph(
        2, {"spatial_scales": list(scales), "output_height": 3, "output_width": 5}, {"keep_top_k": 7}
    )
    feed = make_inputs(rng, 1, (64, 64), scales)
    num, _, _, _, pooled = reference_session(model).run(None, feed)
    assert pooled.shape == (7, 3, 3, 5)
    ref = batched_nms_reference(feed["boxes"], feed["scores"], BatchedNmsAttrs(keep_top_k=7))
    np.testing.assert_array_equal(num, ref.num_detections)


def test_float16_graph_matches_torchvision_float32() -> None:
    """The float16 graph against torchvision in float32 on the same float16-rounded inputs: exactly its NMS
    survivors, and the pooled features within one float16 rounding of the output (atol 2e-3, rtol 1e-3)."""
    rng = np.random.default_rng(2)
    image = (96, 96)
    roi = MultiLevelRoiAlignAttrs()
    nms = BatchedNmsAttrs(keep_top_k=10)
    model = plugin_graph(4, roi.as_dict(), nms.as_dict(), dtype=TensorProto.FLOAT16)
    feed = {k: v.astype(np.float16) for k, v in make_inputs(rng, 1, image, roi.spatial_scales).items()}
    num, det_boxes, classes, indices, pooled = reference_session(model).run(None, feed)
    assert det_boxes.dtype == np.float16 and pooled.dtype == np.float16

    as32 = {k: v.astype(np.float32) for k, v in feed.items()}
    expected = torchvision_postprocess(as32["boxes"], as32["scores"], nms)
    assert expected[0].tolist() == [10]
    np.testing.assert_array_equal(num, expected[0])
    np.testing.assert_array_equal(det_boxes.astype(np.float32), expected[1])
    np.testing.assert_array_equal(classes, expected[3])
    np.testing.assert_array_equal(indices, expected[4])

    names = [str(i) for i in range(4)]
    pooler = MultiScaleRoIAlign(names, 7, sampling_ratio=2)
    expected_pooled = pooler(
        {n: torch.from_numpy(as32[f"feature_{n}"]) for n in names},
        [torch.from_numpy(b) for b in expected[1]],
        [image],
    ).numpy()
    np.testing.assert_allclose(pooled.astype(np.float32), expected_pooled, atol=2e-3, rtol=1e-3)
    assert np.abs(expected_pooled).max() > 0.5


def test_rewrite_rejects_mismatched_levels_and_unknown_attributes() -> None:
    model = plugin_graph(3, {"spatial_scales": [0.25, 0.125]}, {})
    with pytest.raises(ValueError, match="3 feature inputs but spatial_scales has 2"):
        with_reference_ops(model)
    model = plugin_graph(4, {}, {"iou": 0.5})
    with pytest.raises(ValueError, match="unknown attribute 'iou'"):
        with_reference_ops(model)


# ---------------------------------------------------------------------------------------------------------------
# legacy_plus_one: maskrcnn-benchmark's level assignment, in the `trt` node's CPU reference and the `ort` flavor


def roi_align_graph(levels: int, roi_attrs: dict) -> onnx.ModelProto:
    """One ``MRD_MultiLevelRoiAlign`` node: rois [B, R, 4] and the feature maps in, pooled out."""
    feats = [f"feature_{i}" for i in range(levels)]
    inputs = [helper.make_tensor_value_info("rois", TensorProto.FLOAT, ["B", "R", 4])] + [
        helper.make_tensor_value_info(f, TensorProto.FLOAT, ["B", "C", f"H{i}", f"W{i}"])
        for i, f in enumerate(feats)
    ]
    node = helper.make_node(
        ROI_ALIGN_OP, ["rois", *feats], ["pooled"], name="pool", domain=DOMAIN, **roi_attrs
    )
    outputs = [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["BR", "C", "P", "Q"])]
    graph = helper.make_graph([node], "roi_align", inputs, outputs)
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]
    )


def boundary_case(seed: int) -> tuple[tuple[int, int], np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    image = (640, 640)
    rois = boundary_rois(rng, batch=2, image=image)
    feats = [
        rng.standard_normal((2, 3, int(image[0] * s), int(image[1] * s))).astype(np.float32)
        for s in MultiLevelRoiAlignAttrs().spatial_scales
    ]
    return image, rois, feats


def test_node_legacy_plus_one_pools_on_the_plus_one_level() -> None:
    """The node's legacy_plus_one reaches the reference: roi_align on the level of (w + 1) * (h + 1); a node
    without the attribute (graphs exported before it existed) is torchvision's MultiScaleRoIAlign."""
    image, rois, feats = boundary_case(21)
    legacy = MultiLevelRoiAlignAttrs(legacy_plus_one=1)
    feed = {"rois": rois, **{f"feature_{i}": f for i, f in enumerate(feats)}}
    (got,) = reference_session(roi_align_graph(4, legacy.as_dict())).run(None, feed)
    levels = plus_one_levels(rois, legacy)
    np.testing.assert_allclose(got, roi_align_at_levels(rois, feats, levels, legacy), atol=1e-5, rtol=1e-5)

    old_attrs = {k: v for k, v in MultiLevelRoiAlignAttrs().as_dict().items() if k != "legacy_plus_one"}
    (got_default,) = reference_session(roi_align_graph(4, old_attrs)).run(None, feed)
    expected_default = torchvision_multiscale(rois, feats, image, MultiLevelRoiAlignAttrs())
    np.testing.assert_allclose(got_default, expected_default, atol=1e-5, rtol=1e-5)
    moved = np.abs(got - got_default).reshape(len(got), -1).max(axis=1) > 0
    assert moved.sum() > 30, "rois just below a level boundary are pooled one level up"


class _StandardOpsPooler(torch.nn.Module):
    def __init__(self, attrs: MultiLevelRoiAlignAttrs) -> None:
        super().__init__()
        self.attrs = attrs

    def forward(self, rois, f0, f1, f2, f3):  # type: ignore[no-untyped-def]
        from exporter import standard_ops

        return standard_ops.multilevel_roi_align(rois, [f0, f1, f2, f3], self.attrs)


def export_standard_ops(
    attrs: MultiLevelRoiAlignAttrs, rois: np.ndarray, feats: list, path
) -> onnx.ModelProto:
    import warnings

    names = ["rois", *[f"feature_{i}" for i in range(4)]]
    args = tuple(torch.from_numpy(a) for a in (rois, *feats))
    axes = {
        "rois": {0: "B", 1: "R"},
        **{n: {0: "B", 2: f"H{i}", 3: f"W{i}"} for i, n in enumerate(names[1:])},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's constant warnings
        torch.onnx.export(
            _StandardOpsPooler(attrs), args, str(path), dynamo=False, opset_version=17,
            input_names=names, output_names=["pooled"], dynamic_axes=axes,
        )  # fmt: skip
    return onnx.load(str(path))


def test_standard_ops_legacy_plus_one_under_onnxruntime(tmp_path) -> None:
    """The `ort` flavor's multilevel_roi_align traced to standard ONNX: with legacy_plus_one=1 it pools on the
    +1 levels; the traced graph differs from the default one by the two Adds of the +1 only."""
    import onnxruntime as ort

    from exporter import standard_ops

    image, rois, feats = boundary_case(22)
    legacy = MultiLevelRoiAlignAttrs(legacy_plus_one=1)
    default = MultiLevelRoiAlignAttrs()
    levels = plus_one_levels(rois, legacy)
    eager_levels = standard_ops.roi_levels(torch.from_numpy(rois.reshape(-1, 4)), legacy).numpy()
    np.testing.assert_array_equal(eager_levels, levels)

    feed = {"rois": rois, **{f"feature_{i}": f for i, f in enumerate(feats)}}
    outputs, op_counts = {}, {}
    for name, attrs in (("legacy", legacy), ("default", default)):
        model = export_standard_ops(attrs, rois, feats, tmp_path / f"{name}.onnx")
        assert {n.op_type for n in model.graph.node} & {"RoiAlign", "NonZero"} == {"RoiAlign", "NonZero"}
        op_counts[name] = {t: sum(n.op_type == t for n in model.graph.node) for t in {"Add", "Sub", "Mul"}}
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        (outputs[name],) = sess.run(None, feed)
    assert op_counts["legacy"] == {**op_counts["default"], "Add": op_counts["default"]["Add"] + 2}
    np.testing.assert_allclose(
        outputs["legacy"], roi_align_at_levels(rois, feats, levels, legacy), atol=1e-5, rtol=1e-5
    )
    np.testing.assert_allclose(
        outputs["default"], torchvision_multiscale(rois, feats, image, default), atol=1e-5, rtol=1e-5
    )
    assert not np.allclose(outputs["legacy"], outputs["default"], atol=1e-3)
