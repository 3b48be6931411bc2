"""detectron2 configs -> ours: the R-50/R-101-FPN Faster and Mask R-CNN of its COCO model zoo.

``DEFAULTS`` are detectron2's own defaults (``detectron2/config/defaults.py``) of the keys read here, for
files that set only some keys; ``_BASE_`` files are merged by ``source_yaml``. Its conventions
(``tests/data/foreign/FINDINGS.md``): no "+1", ROIAlignV2 (``aligned=True``) with adaptive sampling, BGR
0..255 input resized by PIL with its own size rule, anchors centred at 0 and not rounded on fixed strides,
stride in the 1x1 conv, 0-based classes with the background last (imported as 1-based, background 0),
boxes clipped and empty ones dropped after rescaling, masks pasted with ``grid_sample``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import coco_names, resnet_fpn_keys
from .reader import KeyReader

SOURCE = "detectron2"
_LEVELS = ("p2", "p3", "p4", "p5", "p6")
_STAGES = ("res2", "res3", "res4", "res5")

DEFAULTS: dict[str, Any] = {
    "VERSION": 2,
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.MASK_ON": False,
    "MODEL.KEYPOINT_ON": False,
    "MODEL.LOAD_PROPOSALS": False,
    "MODEL.PIXEL_MEAN": (103.530, 116.280, 123.675),
    "MODEL.PIXEL_STD": (1.0, 1.0, 1.0),
    "MODEL.BACKBONE.NAME": "build_resnet_backbone",
    "MODEL.BACKBONE.FREEZE_AT": 2,
    "MODEL.RESNETS.DEPTH": 50,
    "MODEL.RESNETS.OUT_FEATURES": ("res4",),
    "MODEL.RESNETS.NUM_GROUPS": 1,
    "MODEL.RESNETS.NORM": "FrozenBN",
    "MODEL.RESNETS.WIDTH_PER_GROUP": 64,
    "MODEL.RESNETS.STRIDE_IN_1X1": True,
    "MODEL.RESNETS.RES5_DILATION": 1,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 256,
    "MODEL.RESNETS.STEM_OUT_CHANNELS": 64,
    "MODEL.RESNETS.DEFORM_ON_PER_STAGE": (False, False, False, False),
    "MODEL.FPN.IN_FEATURES": (),
    "MODEL.FPN.OUT_CHANNELS": 256,
    "MODEL.FPN.NORM": "",
    "MODEL.FPN.FUSE_TYPE": "sum",
    "MODEL.ANCHOR_GENERATOR.NAME": "DefaultAnchorGenerator",
    "MODEL.ANCHOR_GENERATOR.SIZES": ((32, 64, 128, 256, 512),),
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": ((0.5, 1.0, 2.0),),
    "MODEL.ANCHOR_GENERATOR.OFFSET": 0.0,
    "MODEL.PROPOSAL_GENERATOR.NAME": "RPN",
    "MODEL.PROPOSAL_GENERATOR.MIN_SIZE": 0,
    "MODEL.RPN.HEAD_NAME": "StandardRPNHead",
    "MODEL.RPN.IN_FEATURES": ("res4",),
    "MODEL.RPN.IOU_THRESHOLDS": (0.3, 0.7),
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE": 256,
    "MODEL.RPN.POSITIVE_FRACTION": 0.5,
    "MODEL.RPN.BBOX_REG_WEIGHTS": (1.0, 1.0, 1.0, 1.0),
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN": 12000,
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 6000,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": 2000,
    "MODEL.RPN.POST_NMS_TOPK_TEST": 1000,
    "MODEL.RPN.NMS_THRESH": 0.7,
    "MODEL.RPN.CONV_DIMS": (-1,),
    "MODEL.ROI_HEADS.NAME": "Res5ROIHeads",
    "MODEL.ROI_HEADS.NUM_CLASSES": 80,
    "MODEL.ROI_HEADS.IN_FEATURES": ("res4",),
    "MODEL.ROI_HEADS.IOU_THRESHOLDS": (0.5,),
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 512,
    "MODEL.ROI_HEADS.POSITIVE_FRACTION": 0.25,
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.05,
    "MODEL.ROI_HEADS.NMS_THRESH_TEST": 0.5,
    "MODEL.ROI_BOX_HEAD.NAME": "",
    "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS": (10.0, 10.0, 5.0, 5.0),
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 14,
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO": 0,
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE": "ROIAlignV2",
    "MODEL.ROI_BOX_HEAD.NUM_FC": 0,
    "MODEL.ROI_BOX_HEAD.FC_DIM": 1024,
    "MODEL.ROI_BOX_HEAD.NUM_CONV": 0,
    "MODEL.ROI_BOX_HEAD.NORM": "",
    "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": False,
    "MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE": False,
    "MODEL.ROI_MASK_HEAD.NAME": "MaskRCNNConvUpsampleHead",
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": 14,
    "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO": 0,
    "MODEL.ROI_MASK_HEAD.POOLER_TYPE": "ROIAlignV2",
    "MODEL.ROI_MASK_HEAD.NUM_CONV": 0,
    "MODEL.ROI_MASK_HEAD.CONV_DIM": 256,
    "MODEL.ROI_MASK_HEAD.NORM": "",
    "MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK": False,
    "INPUT.MIN_SIZE_TRAIN": (800,),
    "INPUT.MAX_SIZE_TRAIN": 1333,
    "INPUT.MIN_SIZE_TEST": 800,
    "INPUT.MAX_SIZE_TEST": 1333,
    "INPUT.FORMAT": "BGR",
    "INPUT.RANDOM_FLIP": "horizontal",
    "DATASETS.TRAIN": (),
    "DATASETS.TEST": (),
    "DATALOADER.NUM_WORKERS": 4,
    "DATALOADER.ASPECT_RATIO_GROUPING": True,
    "SOLVER.LR_SCHEDULER_NAME": "WarmupMultiStepLR",
    "SOLVER.MAX_ITER": 40000,
    "SOLVER.BASE_LR": 0.001,
    "SOLVER.MOMENTUM": 0.9,
    "SOLVER.WEIGHT_DECAY": 0.0001,
    "SOLVER.GAMMA": 0.1,
    "SOLVER.STEPS": (30000,),
    "SOLVER.WARMUP_FACTOR": 1.0 / 1000,
    "SOLVER.WARMUP_ITERS": 1000,
    "SOLVER.WARMUP_METHOD": "linear",
    "SOLVER.CHECKPOINT_PERIOD": 5000,
    "SOLVER.IMS_PER_BATCH": 16,
    "SOLVER.AMP.ENABLED": False,
    "TEST.EVAL_PERIOD": 0,
    "TEST.DETECTIONS_PER_IMAGE": 100,
    "TEST.AUG.ENABLED": False,
    "SEED": -1,
}

_INERT = (
    "_BASE_", "CUDNN_BENCHMARK", "FLOAT32_PRECISION", "OUTPUT_DIR", "VIS_PERIOD", "MODEL.DEVICE", "MODEL.WEIGHTS",
    "MODEL.RESNETS.DEFORM_MODULATED", "MODEL.RESNETS.DEFORM_NUM_GROUPS", "MODEL.ANCHOR_GENERATOR.ANGLES",
    "MODEL.RPN.IOU_LABELS", "MODEL.RPN.BOUNDARY_THRESH", "MODEL.RPN.SMOOTH_L1_BETA", "MODEL.RPN.LOSS_WEIGHT",
    "MODEL.RPN.BBOX_REG_LOSS_TYPE", "MODEL.RPN.BBOX_REG_LOSS_WEIGHT",
    "MODEL.ROI_HEADS.IOU_LABELS", "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT",
    "MODEL.ROI_BOX_HEAD.CONV_DIM", "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA", "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE",
    "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT", "MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES",
    "MODEL.ROI_BOX_HEAD.USE_FED_LOSS", "MODEL.ROI_BOX_HEAD.FED_LOSS_FREQ_WEIGHT_POWER",
    "MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES",
    "INPUT.MIN_SIZE_TRAIN_SAMPLING", "INPUT.MASK_FORMAT", "INPUT.CROP.",
    "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST", "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN",
    "DATASETS.PROPOSAL_FILES_TEST", "DATASETS.PROPOSAL_FILES_TRAIN",
    "DATALOADER.FILTER_EMPTY_ANNOTATIONS", "DATALOADER.REPEAT_SQRT", "DATALOADER.REPEAT_THRESHOLD",
    "DATALOADER.SAMPLER_TRAIN",
    "SOLVER.BASE_LR_END", "SOLVER.BIAS_LR_FACTOR", "SOLVER.CLIP_GRADIENTS.", "SOLVER.NESTEROV",
    "SOLVER.NUM_DECAYS", "SOLVER.REFERENCE_WORLD_SIZE", "SOLVER.RESCALE_INTERVAL", "SOLVER.WEIGHT_DECAY_BIAS",
    "SOLVER.WEIGHT_DECAY_NORM",
    "TEST.AUG.", "TEST.EXPECTED_RESULTS", "TEST.KEYPOINT_OKS_SIGMAS", "TEST.PRECISE_BN.", "GLOBAL.",
    # sections of architectures the model does not use
    "MODEL.RETINANET.", "MODEL.ROI_BOX_CASCADE_HEAD.", "MODEL.SEM_SEG_HEAD.", "MODEL.PANOPTIC_FPN.",
)  # fmt: skip

_COPIED = {
    "MODEL.RPN.PRE_NMS_TOP_N_TEST": "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "MODEL.RPN.PRE_NMS_TOP_N_TRAIN": "MODEL.RPN.PRE_NMS_TOPK_TRAIN",
    "MODEL.RPN.POST_NMS_TOP_N_TEST": "MODEL.RPN.POST_NMS_TOPK_TEST",
    "MODEL.RPN.POST_NMS_TOP_N_TRAIN": "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "MODEL.RPN.NMS_THRESH": "MODEL.RPN.NMS_THRESH",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE": "MODEL.RPN.BATCH_SIZE_PER_IMAGE",
    "MODEL.RPN.POSITIVE_FRACTION": "MODEL.RPN.POSITIVE_FRACTION",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "MODEL.ROI_HEADS.POSITIVE_FRACTION": "MODEL.ROI_HEADS.POSITIVE_FRACTION",
    "MODEL.ROI_HEADS.SCORE_THRESH": "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "MODEL.ROI_HEADS.NMS": "MODEL.ROI_HEADS.NMS_THRESH_TEST",
    "MODEL.ROI_HEADS.BBOX_REG_WEIGHTS": "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS",
    "TEST.DETECTIONS_PER_IMG": "TEST.DETECTIONS_PER_IMAGE",
    "INPUT.MIN_SIZE_TRAIN": "INPUT.MIN_SIZE_TRAIN",
    "INPUT.MAX_SIZE_TRAIN": "INPUT.MAX_SIZE_TRAIN",
    "INPUT.MIN_SIZE_TEST": "INPUT.MIN_SIZE_TEST",
    "INPUT.MAX_SIZE_TEST": "INPUT.MAX_SIZE_TEST",
    "DATASETS.TRAIN": "DATASETS.TRAIN",
    "DATASETS.TEST": "DATASETS.TEST",
    "DATALOADER.NUM_WORKERS": "DATALOADER.NUM_WORKERS",
    "DATALOADER.ASPECT_RATIO_GROUPING": "DATALOADER.ASPECT_RATIO_GROUPING",
    **{f"SOLVER.{k}": f"SOLVER.{k}" for k in (
        "MAX_ITER", "BASE_LR", "MOMENTUM", "WEIGHT_DECAY", "GAMMA", "STEPS", "WARMUP_FACTOR", "WARMUP_ITERS",
        "WARMUP_METHOD", "CHECKPOINT_PERIOD", "IMS_PER_BATCH",
    )},
    "SOLVER.AMP": "SOLVER.AMP.ENABLED",
    "SOLVER.TEST_PERIOD": "TEST.EVAL_PERIOD",
}  # fmt: skip


def _per_level(r: KeyReader, key: str, levels: int) -> list[tuple[float, ...]]:
    """detectron2's anchor lists: one list per level, or one list broadcast to every level."""
    value = [tuple(float(v) for v in (x if isinstance(x, (list, tuple)) else (x,))) for x in r.get(key)]
    if len(value) == 1:
        value = value * levels
    if len(value) != levels:
        raise r.unsupported(key, value, f"one list per RPN level ({levels}) or one for all")
    return value


def _pooler(r: KeyReader, section: str) -> dict[str, Any]:
    kind = r.expect(f"{section}.POOLER_TYPE", ["ROIAlignV2", "ROIAlign"], "only ROIAlign poolers are")
    return {
        f"{section}.POOLER_RESOLUTION": int(r.get(f"{section}.POOLER_RESOLUTION")),
        f"{section}.POOLER_SAMPLING_RATIO": int(r.get(f"{section}.POOLER_SAMPLING_RATIO")),
        f"{section}.POOLER_ALIGNED": kind == "ROIAlignV2",
    }


def _backbone(r: KeyReader) -> dict[str, Any]:
    r.expect("MODEL.BACKBONE.NAME", ["build_resnet_fpn_backbone"], "only ResNet-FPN backbones are")
    depth = int(r.expect("MODEL.RESNETS.DEPTH", [50, 101], "only ResNet-50 and -101 are"))
    r.expect("MODEL.RESNETS.NORM", ["FrozenBN"], "only FrozenBatchNorm ResNets are")
    r.expect("MODEL.RESNETS.NUM_GROUPS", [1], "ResNeXt (grouped convolutions)")
    r.expect("MODEL.RESNETS.RES5_DILATION", [1], "a dilated res5")
    r.expect("MODEL.RESNETS.DEFORM_ON_PER_STAGE", [(False,) * 4], "deformable convolutions")
    r.expect("MODEL.RESNETS.OUT_FEATURES", [_STAGES], "the FPN reads res2-res5")
    r.expect("MODEL.FPN.IN_FEATURES", [_STAGES], "the FPN reads res2-res5")
    r.expect("MODEL.FPN.NORM", [""], "normalization in the FPN")
    r.expect("MODEL.FPN.FUSE_TYPE", ["sum"], "only the summed top-down FPN is")
    return resnet_fpn_keys(
        r,
        f"R-{depth}-FPN",
        int(r.get("MODEL.BACKBONE.FREEZE_AT")),
        int(r.get("MODEL.FPN.OUT_CHANNELS")),
        "MODEL.RESNETS.WIDTH_PER_GROUP",
        "MODEL.RESNETS.RES2_OUT_CHANNELS",
        "MODEL.RESNETS.STEM_OUT_CHANNELS",
        "MODEL.RESNETS.STRIDE_IN_1X1",
    )


def _rpn(r: KeyReader) -> dict[str, Any]:
    r.expect("MODEL.PROPOSAL_GENERATOR.NAME", ["RPN"], "only the RPN proposal generator is")
    r.expect("MODEL.RPN.HEAD_NAME", ["StandardRPNHead"], "only the standard RPN head is")
    r.expect("MODEL.RPN.CONV_DIMS", [(-1,)], "an RPN head with other than one conv of the input's width")
    r.expect("MODEL.RPN.IN_FEATURES", [_LEVELS], "the RPN reads p2-p6")
    r.expect("MODEL.RPN.BBOX_REG_WEIGHTS", [(1.0, 1.0, 1.0, 1.0)], "RPN box weights other than 1")
    r.expect("MODEL.ANCHOR_GENERATOR.NAME", ["DefaultAnchorGenerator"], "only axis-aligned anchors are")
    r.expect("MODEL.ANCHOR_GENERATOR.OFFSET", [0.0], "an anchor offset other than 0")
    sizes = _per_level(r, "MODEL.ANCHOR_GENERATOR.SIZES", len(_LEVELS))
    ratios = _per_level(r, "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", len(_LEVELS))
    if any(len(s) != 1 for s in sizes):
        raise r.unsupported("MODEL.ANCHOR_GENERATOR.SIZES", sizes, "one anchor size per FPN level")
    if any(q != ratios[0] for q in ratios):
        raise r.unsupported(
            "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", ratios, "the same aspect ratios on every level"
        )
    bg, fg = _two(r, "MODEL.RPN.IOU_THRESHOLDS")
    # detectron2 keeps proposals with sides > MIN_SIZE (strictly); ours keep >=, so the next float up
    min_size = float(np.nextafter(np.float32(r.get("MODEL.PROPOSAL_GENERATOR.MIN_SIZE")), np.float32(np.inf)))
    return {
        "MODEL.RPN.ANCHOR_SIZES": tuple(s[0] for s in sizes),
        "MODEL.RPN.ASPECT_RATIOS": ratios[0],
        "MODEL.RPN.ANCHOR_STRIDE": (4, 8, 16, 32, 64),
        "MODEL.RPN.ANCHOR_STYLE": "detectron2",
        "MODEL.RPN.BG_IOU_THRESHOLD": bg,
        "MODEL.RPN.FG_IOU_THRESHOLD": fg,
        "MODEL.RPN.MIN_SIZE": min_size,
        "MODEL.RPN.NMS_ON_LOGITS": True,
    }


def _two(r: KeyReader, key: str) -> tuple[float, float]:
    value = tuple(float(v) for v in r.get(key))
    if len(value) != 2:
        raise r.unsupported(key, value, "two thresholds (background, foreground)")
    return value[0], value[1]


def _heads(r: KeyReader, mask_on: bool) -> dict[str, Any]:
    r.expect(
        "MODEL.ROI_HEADS.NAME", ["StandardROIHeads"], "only the standard (non-cascade, FPN) ROI heads are"
    )
    r.expect("MODEL.ROI_HEADS.IN_FEATURES", [_LEVELS[:4]], "the ROI heads pool from p2-p5")
    thresholds = tuple(float(v) for v in r.get("MODEL.ROI_HEADS.IOU_THRESHOLDS"))
    if len(thresholds) != 1:
        raise r.unsupported("MODEL.ROI_HEADS.IOU_THRESHOLDS", thresholds, "one IoU threshold")
    b = "MODEL.ROI_BOX_HEAD"
    r.expect(f"{b}.NAME", ["FastRCNNConvFCHead"], "only the FastRCNNConvFCHead box head is")
    r.expect(f"{b}.NUM_CONV", [0], "convolutions in the box head")
    r.expect(f"{b}.NUM_FC", [2], "a box head with other than 2 fc layers")
    r.expect(f"{b}.NORM", [""], "normalization in the box head")
    r.expect(f"{b}.CLS_AGNOSTIC_BBOX_REG", [False], "class-agnostic box regression")
    r.expect(f"{b}.USE_SIGMOID_CE", [False], "sigmoid classification scores")
    out: dict[str, Any] = {
        "MODEL.ROI_HEADS.NUM_CLASSES": int(r.get("MODEL.ROI_HEADS.NUM_CLASSES")) + 1,  # + background
        "MODEL.ROI_HEADS.FG_IOU_THRESHOLD": thresholds[0],
        "MODEL.ROI_HEADS.BG_IOU_THRESHOLD": thresholds[0],
        "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM": int(r.get(f"{b}.FC_DIM")),
        **_pooler(r, b),
    }
    if mask_on:
        m = "MODEL.ROI_MASK_HEAD"
        r.expect(f"{m}.NAME", ["MaskRCNNConvUpsampleHead"], "only the conv + deconv mask head is")
        r.expect(f"{m}.NORM", [""], "normalization in the mask head")
        r.expect(f"{m}.CLS_AGNOSTIC_MASK", [False], "class-agnostic masks")
        out.update(_pooler(r, m))
        out[f"{m}.CONV_LAYERS"] = (int(r.get(f"{m}.CONV_DIM")),) * int(r.get(f"{m}.NUM_CONV"))
        if not out[f"{m}.CONV_LAYERS"]:
            raise r.unsupported(f"{m}.NUM_CONV", 0, "a mask head without convolutions")
    else:
        r.ignore("MODEL.ROI_MASK_HEAD.")
    return out


def translate(r: KeyReader) -> tuple[dict[str, Any], list[str] | None, list[str] | None]:
    """Our config keys for a detectron2 config, and the class names it implies (no keypoint models)."""
    r.ignore(*_INERT)
    r.expect(
        "VERSION", [2], "configs of detectron2's config version 2 only (upgrade older ones with detectron2)"
    )
    r.expect("MODEL.META_ARCHITECTURE", ["GeneralizedRCNN"], "only the R-CNN meta-architecture is")
    r.expect("MODEL.LOAD_PROPOSALS", [False], "precomputed proposals")
    r.expect("MODEL.KEYPOINT_ON", [False], "detectron2 keypoint models are not supported yet")
    r.ignore("MODEL.ROI_KEYPOINT_HEAD.")
    r.expect("TEST.AUG.ENABLED", [False], "test-time augmentation cannot be exported")
    mask_on = bool(r.get("MODEL.MASK_ON"))
    fmt = r.expect("INPUT.FORMAT", ["BGR", "RGB"], "the input must be BGR or RGB")
    mean = tuple(float(v) for v in r.get("MODEL.PIXEL_MEAN"))
    std = tuple(float(v) for v in r.get("MODEL.PIXEL_STD"))
    if fmt == "RGB":  # RGB in 0..255: the same numbers as RGB in [0, 1] with mean and std over 255
        mean, std = tuple(v / 255.0 for v in mean), tuple(v / 255.0 for v in std)
    flip = r.expect("INPUT.RANDOM_FLIP", ["horizontal", "none"], "only horizontal flips are")
    if int(r.get("INPUT.MIN_SIZE_TEST")) <= 0:
        raise r.unsupported(
            "INPUT.MIN_SIZE_TEST", r.get("INPUT.MIN_SIZE_TEST"), "a model that does not resize"
        )
    scheduler = r.expect(
        "SOLVER.LR_SCHEDULER_NAME",
        ["WarmupMultiStepLR", "WarmupCosineLR"],
        "for fine-tuning, only these schedules are",
    )
    ours: dict[str, Any] = {
        "MODEL.SOURCE": SOURCE,
        "MODEL.LEGACY_PLUS_ONE": False,
        "MODEL.MASK_ON": mask_on,
        "MODEL.KEYPOINT_ON": False,
        "MODEL.ROI_HEADS.MIN_SIZE": float("-inf"),  # empty boxes are dropped after rescaling instead
        "INPUT.TO_BGR255": fmt == "BGR",
        "INPUT.PIXEL_MEAN": mean,
        "INPUT.PIXEL_STD": std,
        "INPUT.RESIZE": SOURCE,
        "INPUT.HORIZONTAL_FLIP_PROB_TRAIN": 0.5 if flip == "horizontal" else 0.0,
        "TEST.OUTPUT_CONVENTION": SOURCE,
        "DATALOADER.SIZE_DIVISIBILITY": 32,  # the FPN's
        "SOLVER.LR_SCHEDULER_NAME": scheduler,
        **_backbone(r),
        **_rpn(r),
        **_heads(r, mask_on),
    }
    for key, theirs in _COPIED.items():
        ours[key] = r.get(theirs)
    seed = int(r.get("SEED"))
    if seed >= 0:
        ours["SOLVER.SEED"] = seed
    r.finish()
    datasets = [str(d) for d in (*ours["DATASETS.TEST"], *ours["DATASETS.TRAIN"])]
    return ours, coco_names(datasets, int(ours["MODEL.ROI_HEADS.NUM_CLASSES"])), None
