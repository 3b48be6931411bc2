"""Checkpoints as maskrcnn-benchmark and detectron2 save them: loaded safely, completely, or refused by name."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from torchvision.ops.misc import FrozenBatchNorm2d

from tests.foreign_reference import MODELS, config_of, model_dir
from trainer.checkpoint import CheckpointError
from trainer.foreign import load_pickle_checkpoint, to_torchvision
from trainer.loading import load_trained_model, read_weights


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_loads_every_tensor(name: str) -> None:
    raw = read_weights(model_dir(name) / "model_final.pth")["model"]
    loaded = load_trained_model(model_dir(name) / "model_final.pth", config_of(name))
    own = loaded.model.state_dict()
    converted, layout, anchors = to_torchvision(raw)
    assert layout == ("maskrcnn-benchmark" if name.startswith("mrb_") else "detectron2")
    # every source tensor lands in the model (anchors are checked, not loaded), and every model tensor is set
    assert len(converted) + len(anchors) == len(raw)
    assert set(converted) == set(own)
    if name.startswith("d2_"):  # background moved first, and a zero background box regressor added
        head = raw["roi_heads.box_predictor.cls_score.weight"]
        assert torch.equal(own["roi_heads.box_predictor.cls_score.weight"][0], head[-1])
        assert torch.equal(own["roi_heads.box_predictor.cls_score.weight"][1:], head[:-1])
        assert not own["roi_heads.box_predictor.bbox_pred.weight"][:4].any()


def test_model_zoo_pkl_equals_the_pth() -> None:
    d = model_dir("d2_mask_rcnn_R_50_FPN_1x")
    pth = read_weights(d / "model_final.pth")["model"]
    pkl = read_weights(d / "model_final.pkl")["model"]
    assert set(pkl) == set(pth)
    assert all(torch.equal(pkl[k], pth[k]) for k in pth)


def test_frozen_bn_without_eps_is_folded() -> None:
    """maskrcnn-benchmark's FrozenBatchNorm computes w / sqrt(var) (no eps); the folded torchvision one agrees."""
    g = torch.Generator().manual_seed(0)
    w, b, mean = (torch.randn(8, generator=g) for _ in range(3))
    var = torch.rand(8, generator=g) * 1e-4 + 1e-6  # small variances: where a dropped eps matters most
    x = torch.randn(2, 8, 5, 5, generator=g)
    scale = w * var.rsqrt()
    theirs = x * scale[None, :, None, None] + (b - mean * scale)[None, :, None, None]
    state = {
        f"backbone.body.stem.bn1.{k}": v
        for k, v in zip(("weight", "bias", "running_mean", "running_var"), (w, b, mean, var))
    }
    state["backbone.body.stem.conv1.weight"] = torch.zeros(8, 3, 7, 7)
    converted, _, _ = to_torchvision(state)
    bn = FrozenBatchNorm2d(8)
    bn.load_state_dict({k.rsplit(".", 1)[1]: v for k, v in converted.items() if ".bn1." in k})
    torch.testing.assert_close(bn(x), theirs, rtol=1e-4, atol=1e-4)
    unfolded = FrozenBatchNorm2d(8)
    unfolded.load_state_dict({"weight": w, "bias": b, "running_mean": mean, "running_var": var})
    assert (unfolded(x) - theirs).abs().max() > 1e-2  # the naive rename would be wrong


def test_truncated_pkl(tmp_path: Path) -> None:
    data = (model_dir("d2_mask_rcnn_R_50_FPN_1x") / "model_final.pkl").read_bytes()
    path = tmp_path / "model_final.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable detectron2 .pkl"):
        load_pickle_checkpoint(path)


class _Exploit:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo pwned",))


def test_pkl_with_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model_final.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": _Exploit()}, "__author__": "x"}))
    with pytest.raises(CheckpointError, match=r"refusing to load (posix|nt|os)\.system"):
        read_weights(path)


def test_detectron1_pkl_is_named(tmp_path: Path) -> None:
    path = tmp_path / "model_final.pkl"
    path.write_bytes(pickle.dumps({"blobs": {}}))
    with pytest.raises(CheckpointError, match="Detectron1/Caffe2 .pkl"):
        read_weights(path)


def test_checkpoint_for_another_config_lists_the_names() -> None:
    weights = model_dir("mrb_mask_rcnn_R_50_FPN_1x") / "model_final.pth"
    with pytest.raises(
        CheckpointError, match=r"unexpected: roi_heads\.mask_head\.0\.0\.bias, .*\(12 in all\)"
    ):
        load_trained_model(weights, config_of("mrb_faster_rcnn_R_50_FPN_1x"))
    with pytest.raises(
        CheckpointError, match="a detectron2 checkpoint but the config is maskrcnn-benchmark's"
    ):
        load_trained_model(
            model_dir("d2_mask_rcnn_R_50_FPN_1x") / "model_final.pth", config_of("mrb_mask_rcnn_R_50_FPN_1x")
        )
    with pytest.raises(
        CheckpointError, match="maskrcnn-benchmark checkpoint but the config is torchvision's.*--config-file"
    ):
        load_trained_model(weights)


def test_stored_anchors_must_match_the_config() -> None:
    name = "mrb_mask_rcnn_R_50_FPN_1x"
    with pytest.raises(CheckpointError, match=r"anchors \(rpn\.anchor_generator\.cell_anchors\.0\) differ"):
        load_trained_model(
            model_dir(name) / "model_final.pth",
            config_of(name),
            ["MODEL.RPN.ANCHOR_SIZES", "(16, 32, 64, 128, 256)"],
        )


def test_older_detectron2_checkpoints_with_stored_anchors() -> None:
    """detectron2 saved its cell anchors as buffers before they became non-persistent (model-zoo files)."""
    from trainer.conventions import cell_anchors
    from trainer.loading import load_weights_into
    from trainer.model import build_model

    name = "d2_mask_rcnn_R_50_FPN_1x"
    cfg = load_trained_model(model_dir(name) / "model_final.pth", config_of(name)).cfg
    state = dict(read_weights(model_dir(name) / "model_final.pth")["model"])
    sizes = (32, 64, 128, 256, 512)
    for level, size in enumerate(sizes):
        state[f"proposal_generator.anchor_generator.cell_anchors.{level}"] = cell_anchors(
            "detectron2", 0, (size,), (0.5, 1.0, 2.0)
        )
    load_weights_into(build_model(cfg), cfg, state)
    state["proposal_generator.anchor_generator.cell_anchors.0"] = cell_anchors(
        "detectron2", 0, (16,), (0.5, 1.0, 2.0)
    )
    with pytest.raises(
        CheckpointError, match=r"anchors \(proposal_generator\.anchor_generator\.cell_anchors\.0\) differ"
    ):
        load_weights_into(build_model(cfg), cfg, state)


class _Reduce:
    """Pickles as ``fn(*args)`` followed by ``__setstate__(state)``: how numpy pickles arrays, with any values."""

    def __init__(self, fn: object, args: tuple, state: object = None) -> None:
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):  # noqa: ANN204
        return (self.fn, self.args, self.state)


def _array(shape: tuple, dtype: object, data: object) -> _Reduce:
    import numpy as np
    from numpy._core.multiarray import _reconstruct

    return _Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, shape, np.dtype(dtype), False, data))


def _hostile_pickles() -> dict[str, tuple[bytes, str]]:
    """The issue's crafted .pkl files (each crashed, or allocated gigabytes, or raised a traceback before)."""
    import numpy as np
    from numpy._core.multiarray import scalar

    def pkl(weights: object) -> bytes:
        return pickle.dumps({"model": weights, "__author__": "x"}, protocol=2)

    return {
        # an object array whose state is shorter than its shape: numpy read past its list (segfault)
        "object array, short state": (pkl({"w": _array((100000,), object, [1])}), "numeric arrays only"),
        "object array": (pkl({"w": np.array([1, "a"], dtype=object)}), "numeric arrays only"),
        # each scalar(dtype('V<n>')) allocated n bytes: 4.9 GB resident from 240 bytes
        "void scalars": (
            pkl({"w": [_Reduce(scalar, (np.dtype("V200000000"), b""))] * 3}),
            "numeric arrays only",
        ),
        "structured array": (pkl({"w": np.zeros(2, dtype=[("a", "f4"), ("b", "i4")])}), "structured|numeric"),
        "shape beyond the bytes": (
            pkl({"w": _array((10**12,), "f4", b"\0" * 4)}),
            "needs 4000000000000 bytes",
        ),
        "negative dimension": (pkl({"w": _array((-1,), "f4", b"")}), "refusing array shape"),
        "strings": (pkl({"w": np.array(["a", "b"])}), "numeric arrays only"),
        "nested too deep": (pkl({"w": [[[[[[[[[[1]]]]]]]]]]}), "nested deeper"),
    }


@pytest.mark.parametrize("case", list(_hostile_pickles()))
def test_hostile_pkl_is_refused_before_allocating(case: str, tmp_path: Path) -> None:
    import resource

    data, says = _hostile_pickles()[case]
    path = tmp_path / "model_final.pkl"
    path.write_bytes(data)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match=says):
        read_weights(path)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 50, f"{case}: peak memory grew by {grown_mb:.0f} MB for a {len(data)}-byte file"


def test_numeric_pkl_of_every_kind_loads(tmp_path: Path) -> None:
    import numpy as np

    arrays = {
        "f4": np.arange(6, dtype=np.float32).reshape(2, 3),
        "f8 fortran": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
        "big endian": np.arange(4, dtype=">i4"),
        "f2": np.ones(3, np.float16),
        "bool": np.array([True, False]),
        "u1": np.arange(3, dtype=np.uint8),
        "empty": np.zeros((0, 4), np.float32),
    }
    path = tmp_path / "model_final.pkl"
    path.write_bytes(
        pickle.dumps({"model": arrays, "__author__": "x", "matching_heuristics": True}, protocol=2)
    )
    loaded = load_pickle_checkpoint(path)["model"]
    for name, value in arrays.items():
        np.testing.assert_array_equal(loaded[name].numpy(), value, err_msg=name)


def test_pkl_reader_fuzzed(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Random byte edits of a small valid .pkl: every one loads numeric arrays or is a CheckpointError."""
    import numpy as np
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base = pickle.dumps(
        {
            "model": {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(2, np.int64)},
            "__author__": "x",
        },
        protocol=2,
    )
    folder = tmp_path_factory.mktemp("fuzz_pkl")

    @settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)), min_size=1, max_size=6),
           st.integers(0, len(base)))  # fmt: skip
    def check(edits: list[tuple[int, int]], cut: int) -> None:
        data = bytearray(base)
        for at, value in edits:
            data[at] = value
        path = folder / "model_final.pkl"
        path.write_bytes(bytes(data[: max(cut, 1)]))
        try:
            weights = load_pickle_checkpoint(path)["model"]
        except CheckpointError:
            return
        assert all(isinstance(v, torch.Tensor) for v in weights.values())

    check()


def test_pth_with_a_tensor_beyond_its_storage_is_refused(tmp_path: Path) -> None:
    """A torch zip whose tensor claims more elements than its storage holds: one line, nothing allocated."""
    import io
    import resource
    import zipfile

    buf = io.BytesIO()
    torch.save({"model": {"w": torch.ones(1)}}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("data.pkl"):
                assert b"K\x01\x85" in data  # the size tuple (1,)
                data = data.replace(b"K\x01\x85", b"J\x00\xe1\xf5\x05\x85", 1)  # (100000000,)
            dst.writestr(name, data)
    path = tmp_path / "model.pth"
    path.write_bytes(out.getvalue())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_weights(path)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 50
