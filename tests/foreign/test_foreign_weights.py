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
