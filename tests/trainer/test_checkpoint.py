"""Checkpoints load into torchvision's own models (and back), and bad weights files get clear errors."""

from pathlib import Path

import pytest
import torch
import torchvision

from trainer.checkpoint import CheckpointError, load_checkpoint_file, load_model_weights, save_checkpoint
from trainer.config import load_config
from trainer.model import build_model


def _outputs_equal(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            torch.testing.assert_close(x[k], y[k], rtol=0, atol=0)


def test_r50_checkpoint_loads_into_torchvision_strictly_and_back(tmp_path: Path) -> None:
    # NORM BN is what torchvision builds without pretrained weights, so the key sets are identical
    cfg = load_config(
        None, ["MODEL.BACKBONE.NORM", "BN", "INPUT.MIN_SIZE_TEST", "320", "INPUT.MAX_SIZE_TEST", "400"]
    )
    torch.manual_seed(0)
    ours = build_model(cfg).eval()
    path = save_checkpoint(tmp_path, "model_final", ours, None, None, 0, cfg.dump(), ["__background__"])

    tv = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=320, max_size=400
    ).eval()
    tv.load_state_dict(load_checkpoint_file(path)["model"], strict=True)
    images = [torch.rand(3, 240, 300), torch.rand(3, 300, 200)]
    with torch.no_grad():
        ref = ours(images)
        _outputs_equal(ref, tv(images))
        assert len(ref[0]["boxes"]) > 0  # a random model still detects: the comparison is not vacuous

    # and back: torchvision's state dict, saved as the plain file torchvision publishes, loads into ours
    plain = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), plain)
    again = build_model(cfg).eval()
    load_model_weights(again, load_checkpoint_file(plain)["model"])
    with torch.no_grad():
        _outputs_equal(ref, again(images))


def test_frozen_bn_config_has_torchvision_published_keys() -> None:
    """torchvision's COCO weights come from FrozenBN models: our default R-50 has exactly their keys."""
    ours = set(build_model(load_config(None, [])).state_dict())
    tv = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    published = {k for k in tv if not k.endswith("num_batches_tracked")}
    assert ours == published


def test_class_count_mismatch_explains_and_offers_skipping(tmp_path: Path) -> None:
    small = ["MODEL.BACKBONE.CONV_BODY", "R-18-FPN", "MODEL.BACKBONE.OUT_CHANNELS", "64"]
    src = build_model(load_config(None, small + ["MODEL.ROI_HEADS.NUM_CLASSES", "6"]))
    dst = build_model(load_config(None, small + ["MODEL.ROI_HEADS.NUM_CLASSES", "3"]))
    with pytest.raises(CheckpointError, match=r"6 classes.*NUM_CLASSES 3.*--skip-class-heads"):
        load_model_weights(dst, src.state_dict())
    load_model_weights(dst, src.state_dict(), skip_class_heads=True)
    torch.testing.assert_close(
        dst.backbone.fpn.layer_blocks[0][0].weight, src.backbone.fpn.layer_blocks[0][0].weight
    )
    assert dst.roi_heads.box_predictor.cls_score.out_features == 3


def test_architecture_mismatch_is_explained() -> None:
    src = build_model(load_config(None, ["MODEL.BACKBONE.CONV_BODY", "R-18-FPN", "MODEL.MASK_ON", "False"]))
    dst = build_model(load_config(None, ["MODEL.BACKBONE.CONV_BODY", "R-18-FPN"]))
    with pytest.raises(CheckpointError, match=r"missing.*MASK_ON"):
        load_model_weights(dst, src.state_dict())


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint_file(tmp_path / "nope.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint_file(tmp_path / "empty.pth")
    (tmp_path / "text.pth").write_text("hello, not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint_file(tmp_path / "text.pth")
    good = tmp_path / "good.pth"
    torch.save({"model": {"w": torch.zeros(3)}, "iteration": 3}, good)
    data = good.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint_file(tmp_path / "truncated.pth")
    torch.save({"iteration": 3}, tmp_path / "noweights.pth")
    with pytest.raises(CheckpointError, match="no model weights"):
        load_checkpoint_file(tmp_path / "noweights.pth")


def test_base_width_scales_every_stage_and_64_is_torchvisions_resnet() -> None:
    """BASE_WIDTH 64 draws torchvision's resnet18 weights exactly (goldens depend on it); 32 halves each stage."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    reference = resnet18(weights=None, norm_layer=torch.nn.BatchNorm2d).state_dict()
    torch.manual_seed(0)
    body = build_model(
        load_config(None, ["MODEL.BACKBONE.CONV_BODY", "R-18-FPN", "MODEL.BACKBONE.NORM", "BN"])
    )
    ours = {
        k[len("backbone.body.") :]: v for k, v in body.state_dict().items() if k.startswith("backbone.body.")
    }
    assert set(ours) == set(reference) - {"fc.weight", "fc.bias"}
    assert all(torch.equal(ours[k], reference[k]) for k in ours)
    narrow = build_model(
        load_config(None, ["MODEL.BACKBONE.CONV_BODY", "R-18-FPN", "MODEL.BACKBONE.BASE_WIDTH", "32"])
    )
    widths = [narrow.backbone.body[f"layer{i}"][0].conv1.out_channels for i in range(1, 5)]
    assert widths == [32, 64, 128, 256]
    assert narrow.backbone.fpn.inner_blocks[3][0].in_channels == 256
