"""maskrcnn-benchmark and detectron2 configs read as those projects read them, translated into ours."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.foreign_reference import MODELS, config_of
from trainer.config import ConfigError
from trainer.foreign import load_any_config

# YAML text of ours in the style of the sources' configs/ files (their own files are not in the repository)
MRB_MASK_YAML = """\
MODEL:
  META_ARCHITECTURE: "GeneralizedRCNN"
  WEIGHT: "catalog://ImageNetPretrained/MSRA/R-50"
  BACKBONE:
    CONV_BODY: "R-50-FPN"
  RESNETS:
    BACKBONE_OUT_CHANNELS: 256
  RPN:
    USE_FPN: True
    ANCHOR_STRIDE: (4, 8, 16, 32, 64)
    PRE_NMS_TOP_N_TRAIN: 2000
    PRE_NMS_TOP_N_TEST: 1000
    POST_NMS_TOP_N_TEST: 1000
    FPN_POST_NMS_TOP_N_TEST: 1000
  ROI_HEADS:
    USE_FPN: True
  ROI_BOX_HEAD:
    POOLER_RESOLUTION: 7
    POOLER_SCALES: (0.25, 0.125, 0.0625, 0.03125)
    POOLER_SAMPLING_RATIO: 2
    FEATURE_EXTRACTOR: "FPN2MLPFeatureExtractor"
    PREDICTOR: "FPNPredictor"
  ROI_MASK_HEAD:
    POOLER_SCALES: (0.25, 0.125, 0.0625, 0.03125)
    FEATURE_EXTRACTOR: "MaskRCNNFPNFeatureExtractor"
    PREDICTOR: "MaskRCNNC4Predictor"
    POOLER_RESOLUTION: 14
    POOLER_SAMPLING_RATIO: 2
    RESOLUTION: 28
    SHARE_BOX_FEATURE_EXTRACTOR: False
  MASK_ON: True
DATASETS:
  TRAIN: ("coco_2014_train", "coco_2014_valminusminival")
  TEST: ("coco_2014_minival",)
DATALOADER:
  SIZE_DIVISIBILITY: 32
SOLVER:
  BASE_LR: 0.02
  WEIGHT_DECAY: 0.0001
  STEPS: (60000, 80000)
  MAX_ITER: 90000
"""

D2_BASE_YAML = """\
MODEL:
  META_ARCHITECTURE: "GeneralizedRCNN"
  BACKBONE:
    NAME: "build_resnet_fpn_backbone"
  RESNETS:
    OUT_FEATURES: ["res2", "res3", "res4", "res5"]
  FPN:
    IN_FEATURES: ["res2", "res3", "res4", "res5"]
  ANCHOR_GENERATOR:
    SIZES: [[32], [64], [128], [256], [512]]
    ASPECT_RATIOS: [[0.5, 1.0, 2.0]]
  RPN:
    IN_FEATURES: ["p2", "p3", "p4", "p5", "p6"]
    PRE_NMS_TOPK_TRAIN: 2000
    PRE_NMS_TOPK_TEST: 1000
    POST_NMS_TOPK_TRAIN: 1000
    POST_NMS_TOPK_TEST: 1000
  ROI_HEADS:
    NAME: "StandardROIHeads"
    IN_FEATURES: ["p2", "p3", "p4", "p5"]
  ROI_BOX_HEAD:
    NAME: "FastRCNNConvFCHead"
    NUM_FC: 2
    POOLER_RESOLUTION: 7
  ROI_MASK_HEAD:
    NAME: "MaskRCNNConvUpsampleHead"
    NUM_CONV: 4
    POOLER_RESOLUTION: 14
DATASETS:
  TRAIN: ("coco_2017_train",)
  TEST: ("coco_2017_val",)
SOLVER:
  IMS_PER_BATCH: 16
  BASE_LR: 0.02
  STEPS: (60000, 80000)
  MAX_ITER: 90000
INPUT:
  MIN_SIZE_TRAIN: (640, 672, 704, 736, 768, 800)
VERSION: 2
"""

D2_MASK_YAML = """\
_BASE_: "../Base-RCNN-FPN.yaml"
MODEL:
  WEIGHTS: "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
  MASK_ON: True
  RESNETS:
    DEPTH: 50
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def d2_mask(tmp_path: Path) -> Path:
    _write(tmp_path / "configs" / "Base-RCNN-FPN.yaml", D2_BASE_YAML)
    return _write(
        tmp_path / "configs" / "COCO-InstanceSegmentation" / "mask_rcnn_R_50_FPN_1x.yaml", D2_MASK_YAML
    )


@pytest.mark.parametrize("name", MODELS)
def test_full_dumps_translate_every_key(name: str) -> None:
    imported = load_any_config(config_of(name))
    cfg = imported.cfg
    assert imported.source == ("maskrcnn-benchmark" if name.startswith("mrb_") else "detectron2")
    assert cfg.MODEL.SOURCE == imported.source
    # the narrowed widths of the test checkpoints come through
    assert (
        cfg.MODEL.BACKBONE.BASE_WIDTH,
        cfg.MODEL.BACKBONE.STEM_WIDTH,
        cfg.MODEL.BACKBONE.OUT_CHANNELS,
    ) == (6, 8, 32)
    assert cfg.MODEL.BACKBONE.STRIDE_IN_1X1 and cfg.INPUT.TO_BGR255
    assert cfg.MODEL.RPN.ANCHOR_STRIDE == (4, 8, 16, 32, 64)
    if imported.source == "maskrcnn-benchmark":
        assert cfg.MODEL.LEGACY_PLUS_ONE and cfg.MODEL.RPN.ANCHOR_STYLE == "detectron"
        assert cfg.INPUT.PIXEL_MEAN == pytest.approx((102.9801, 115.9465, 122.7717))
        assert not cfg.MODEL.ROI_BOX_HEAD.POOLER_ALIGNED and cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO == 2
    else:
        assert not cfg.MODEL.LEGACY_PLUS_ONE and cfg.MODEL.RPN.ANCHOR_STYLE == "detectron2"
        assert cfg.MODEL.ROI_BOX_HEAD.POOLER_ALIGNED and cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO == 0
        assert cfg.INPUT.PIXEL_MEAN == pytest.approx((103.53, 116.28, 123.675))
        assert cfg.TEST.OUTPUT_CONVENTION == "detectron2"
        assert 0.0 < cfg.MODEL.RPN.MIN_SIZE < 1e-40  # detectron2 keeps sides > 0, strictly
    keypoint = "keypoint" in name
    assert cfg.MODEL.KEYPOINT_ON == keypoint and cfg.MODEL.MASK_ON == ("mask" in name)
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == (2 if keypoint else 81)
    assert imported.class_names is not None and imported.class_names[1] == "person"
    assert len(imported.class_names) == cfg.MODEL.ROI_HEADS.NUM_CLASSES


def test_user_yaml_takes_the_sources_defaults(tmp_path: Path) -> None:
    imported = load_any_config(_write(tmp_path / "e2e_mask_rcnn_R_50_FPN_1x.yaml", MRB_MASK_YAML))
    cfg = imported.cfg
    assert imported.source == "maskrcnn-benchmark"
    # not in the file: maskrcnn-benchmark's defaults
    assert (cfg.MODEL.BACKBONE.BASE_WIDTH, cfg.MODEL.BACKBONE.STEM_WIDTH) == (64, 64)
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 81 and cfg.TEST.DETECTIONS_PER_IMG == 100
    assert cfg.MODEL.BACKBONE.TRAINABLE_LAYERS == 3  # FREEZE_CONV_BODY_AT 2
    # tuple strings as yacs reads them
    assert cfg.MODEL.RPN.POST_NMS_TOP_N_TEST == 1000 and cfg.SOLVER.STEPS == (60000, 80000)
    assert cfg.DATASETS.TEST == ("coco_2014_minival",)


def test_detectron2_base_files_resolve_relative_to_the_file(d2_mask: Path) -> None:
    imported = load_any_config(d2_mask)
    cfg = imported.cfg
    assert imported.source == "detectron2"
    assert cfg.MODEL.MASK_ON and cfg.MODEL.ROI_MASK_HEAD.CONV_LAYERS == (256,) * 4
    assert cfg.MODEL.BACKBONE.OUT_CHANNELS == 256 and cfg.MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM == 1024
    assert cfg.MODEL.RPN.PRE_NMS_TOP_N_TEST == 1000  # from the base file; detectron2's default is 6000
    assert cfg.INPUT.MIN_SIZE_TRAIN == (640, 672, 704, 736, 768, 800)


def test_missing_base_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "COCO-InstanceSegmentation" / "mask.yaml", D2_MASK_YAML)
    with pytest.raises(
        ConfigError, match=r"_BASE_ config '\.\./Base-RCNN-FPN\.yaml' named by .*mask\.yaml does not exist"
    ):
        load_any_config(path)


@pytest.mark.parametrize(
    ("replace", "match"),
    [
        (
            ('CONV_BODY: "R-50-FPN"', 'CONV_BODY: "R-50-C4"'),
            r"MODEL\.BACKBONE\.CONV_BODY = 'R-50-C4' is not supported",
        ),
        (
            ("  MASK_ON: True", "  MASK_ON: True\n  RETINANET_ON: True"),
            r"MODEL\.RETINANET_ON = True .*RetinaNet",
        ),
        (
            ("  RESNETS:\n", "  RESNETS:\n    STAGE_WITH_DCN: (False, True, True, True)\n"),
            r"STAGE_WITH_DCN .*deformable",
        ),
        (("  RESNETS:\n", "  RESNETS:\n    NUM_GROUPS: 32\n"), r"NUM_GROUPS = 32 .*ResNeXt"),
        (
            (
                '    PREDICTOR: "MaskRCNNC4Predictor"',
                '    PREDICTOR: "MaskRCNNC4Predictor"\n    USE_GN: True',
            ),
            r"ROI_MASK_HEAD\.USE_GN = True",
        ),
        (
            ("    POOLER_RESOLUTION: 7", "    POOLER_RESOLUTION: 7\n    POOLER_RESOLUTON: 7"),
            r"unknown maskrcnn-benchmark config key\(s\) MODEL\.ROI_BOX_HEAD\.POOLER_RESOLUTON.*did you mean MODEL\.ROI_BOX_HEAD\.POOLER_RESOLUTION",
        ),
    ],
)
def test_maskrcnn_benchmark_unsupported_refused_by_name(
    tmp_path: Path, replace: tuple[str, str], match: str
) -> None:
    text = MRB_MASK_YAML.replace(*replace)
    assert text != MRB_MASK_YAML
    with pytest.raises(ConfigError, match=match):
        load_any_config(_write(tmp_path / "c.yaml", text))


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (
            "  ROI_HEADS:\n    NAME: CascadeROIHeads\n",
            r"MODEL\.ROI_HEADS\.NAME = 'CascadeROIHeads' is not supported",
        ),
        ("  KEYPOINT_ON: True\n", r"MODEL\.KEYPOINT_ON = True .*keypoint models are not supported"),
        ("  META_ARCHITECTURE: PanopticFPN\n", r"META_ARCHITECTURE = 'PanopticFPN'"),
        ("  RESNETS:\n    DEFORM_ON_PER_STAGE: [False, True, True, True]\n", r"DEFORM_ON_PER_STAGE"),
        ("  ROI_BOX_HEAD:\n    NUM_CONV: 4\n", r"ROI_BOX_HEAD\.NUM_CONV = 4"),
    ],
)
def test_detectron2_unsupported_refused_by_name(d2_mask: Path, extra: str, match: str) -> None:
    text = D2_MASK_YAML.replace("  RESNETS:\n    DEPTH: 50\n", "")  # one RESNETS section: the variant's
    path = _write(d2_mask.parent / "variant.yaml", text.replace("MODEL:\n", "MODEL:\n" + extra, 1))
    with pytest.raises(ConfigError, match=match):
        load_any_config(path)


def test_source_detection_and_override(tmp_path: Path) -> None:
    ours = _write(tmp_path / "ours.yaml", "MODEL:\n  MASK_ON: True\n")
    assert load_any_config(ours).source == "torchvision"
    # keys of neither project: ours, with a typo named
    odd = _write(tmp_path / "odd.yaml", "MODEL:\n  MASK_ON: True\nSOLVER:\n  BASE_RL: 0.1\n")
    with pytest.raises(ConfigError, match="unknown config key 'SOLVER.BASE_RL'.*did you mean SOLVER.BASE_LR"):
        load_any_config(odd)
    both = _write(tmp_path / "both.yaml", "MODEL:\n  RPN_ONLY: False\n  PIXEL_MEAN: [1, 2, 3]\n")
    with pytest.raises(ConfigError, match="cannot tell which project wrote .*--source"):
        load_any_config(both)
    # a maskrcnn-benchmark file whose keys all exist in ours too is ours unless --source says otherwise
    tiny = _write(tmp_path / "tiny.yaml", "MODEL:\n  MASK_ON: True\n  BACKBONE:\n    CONV_BODY: R-50-FPN\n")
    assert load_any_config(tiny).source == "torchvision"
    with pytest.raises(ConfigError, match="SIZE_DIVISIBILITY = 0 is not supported"):
        load_any_config(tiny, source="maskrcnn-benchmark")  # maskrcnn-benchmark's default divisibility


def test_overrides_are_ours_or_the_sources(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", MRB_MASK_YAML)
    cfg = load_any_config(
        path, ["TEST.DETECTIONS_PER_IMG", "50", "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST", "500"]
    ).cfg
    assert cfg.TEST.DETECTIONS_PER_IMG == 50
    assert cfg.MODEL.RPN.POST_NMS_TOP_N_TEST == 500  # their per-image key becomes ours
    assert math.isinf(cfg.MODEL.ROI_HEADS.MIN_SIZE)
