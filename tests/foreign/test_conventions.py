"""The sources' box conventions on torchvision's modules, and fine-tuning an imported checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models.detection._utils import BoxCoder

from tests.common import tiny_train_opts
from tests.foreign_reference import config_of, model_dir
from trainer.checkpoint import load_checkpoint_file
from trainer.conventions import PlusOneBoxCoder, batched_nms, cell_anchors, clip_boxes
from trainer.engine import train
from trainer.foreign import load_any_config
from trainer.loading import load_trained_model


def test_detectron_anchors() -> None:
    # maskrcnn-benchmark's anchor of stride 4, size 32, ratio 0.5 (FINDINGS.md item 5), and its stored ones
    assert cell_anchors("detectron", 4, (32,), (0.5,)).tolist() == [[-22.0, -10.0, 25.0, 13.0]]
    assert cell_anchors("torchvision", 4, (32,), (0.5,)).tolist() == [[-23.0, -11.0, 23.0, 11.0]]
    d2 = cell_anchors("detectron2", 4, (32,), (0.5,))[0]
    torch.testing.assert_close(d2, torch.tensor([-22.627417, -11.313708, 22.627417, 11.313708]))
    stored = torch.load(model_dir("mrb_mask_rcnn_R_50_FPN_1x") / "model_final.pth", weights_only=True)[
        "model"
    ]
    for level, (stride, size) in enumerate(zip((4, 8, 16, 32, 64), (32, 64, 128, 256, 512))):
        ours = cell_anchors("detectron", stride, (size,), (0.5, 1.0, 2.0))
        assert torch.equal(ours, stored[f"rpn.anchor_generator.cell_anchors.{level}"])


def test_plus_one_box_coder() -> None:
    coder = PlusOneBoxCoder((10.0, 10.0, 5.0, 5.0))
    boxes = torch.tensor([[10.0, 20.0, 49.0, 39.0]])  # 40 x 20 pixels counted with +1
    # zero deltas give the box back; torchvision's coder gives the same box without the +1
    torch.testing.assert_close(coder.decode_single(torch.zeros(1, 4), boxes), boxes)
    torch.testing.assert_close(
        BoxCoder((10.0, 10.0, 5.0, 5.0)).decode_single(torch.zeros(1, 4), boxes), boxes
    )
    # a log(2) width delta doubles the +1 width: 80 pixels, x2 = ctr + 40 - 1
    out = coder.decode_single(torch.tensor([[0.0, 0.0, 5.0 * 0.6931472, 0.0]]), boxes)
    torch.testing.assert_close(out, torch.tensor([[-10.0, 20.0, 69.0, 39.0]]), atol=1e-4, rtol=0)
    targets = torch.tensor([[12.0, 18.0, 60.0, 41.0]])
    torch.testing.assert_close(coder.decode_single(coder.encode_single(targets, boxes), boxes), targets)


def test_plus_one_clip_and_nms() -> None:
    boxes = torch.tensor([[-5.0, 3.0, 120.0, 90.0]])
    assert clip_boxes(boxes, (80, 100), 1.0).tolist() == [[0.0, 3.0, 99.0, 79.0]]
    assert clip_boxes(boxes, (80, 100), 0.0).tolist() == [[0.0, 3.0, 100.0, 80.0]]
    # 10x10 boxes (+1) overlapping by 5 columns: +1 IoU 5*10/(150) = 0.333, plain 4*9/(2*81 - 36) = 0.286
    a = torch.tensor([[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]])
    scores, groups = torch.tensor([0.9, 0.8]), torch.zeros(2, dtype=torch.int64)
    assert batched_nms(a, scores, groups, 0.3, 1.0).tolist() == [0]
    assert batched_nms(a, scores, groups, 0.3, 0.0).tolist() == [0, 1]


def test_our_models_keep_torchvisions_modules() -> None:
    loaded = load_trained_model(
        model_dir("d2_mask_rcnn_R_50_FPN_1x") / "model_final.pth", config_of("d2_mask_rcnn_R_50_FPN_1x")
    )
    assert type(loaded.model.rpn).__name__ == "ConventionRPN"
    from trainer.config import load_config
    from trainer.model import build_model

    ours = build_model(load_config(None))
    assert type(ours.rpn).__name__ == "RegionProposalNetwork" and type(ours.roi_heads).__name__ == "RoIHeads"
    assert type(ours.rpn.anchor_generator).__name__ == "AnchorGenerator"


def test_fine_tune_an_imported_checkpoint(tiny_shapes, tmp_path: Path) -> None:
    """``trainer train --config-file their.yaml MODEL.WEIGHT their.pth``: a few steps on the shapes data."""
    name = "mrb_mask_rcnn_R_50_FPN_1x"
    opts = [*tiny_train_opts(tiny_shapes, tmp_path, max_iter=2), "MODEL.WEIGHT", str(model_dir(name) / "model_final.pth"),
            "MODEL.ROI_HEADS.NUM_CLASSES", "6", "SOLVER.AMP", "False"]  # fmt: skip
    cfg = load_any_config(config_of(name), opts).cfg
    final = train(cfg, progress=False, skip_class_heads=True)
    ckpt = load_checkpoint_file(final)
    assert ckpt["iteration"] == 2
    # a checkpoint of ours (torchvision names) that keeps the source's conventions in its saved config
    assert "backbone.body.layer1.0.conv1.weight" in ckpt["model"]
    assert "LEGACY_PLUS_ONE: true" in ckpt["config"] and "SOURCE: maskrcnn-benchmark" in ckpt["config"]
    reloaded = load_trained_model(final)
    assert reloaded.cfg.MODEL.LEGACY_PLUS_ONE and type(reloaded.model.rpn).__name__ == "ConventionRPN"
    # the backbone started from the imported weights (its frozen stem is unchanged)
    source = load_trained_model(model_dir(name) / "model_final.pth", config_of(name)).model.state_dict()
    key = "backbone.body.conv1.weight"
    assert torch.equal(ckpt["model"][key], source[key])
