"""maskrcnn-benchmark configs -> ours: the R-50/R-101-FPN Faster, Mask and Keypoint R-CNN it trains.

``DEFAULTS`` are maskrcnn-benchmark's own defaults (``maskrcnn_benchmark/config/defaults.py``) of the keys
read here, for YAML files that set only some keys (its ``configs/*.yaml``); the full ``config.yml`` its
training writes sets every key. Its conventions (``tests/data/foreign/FINDINGS.md``): Detectron's "+1" boxes,
BGR 0..255 input resized by PIL with its own size rule, Detectron anchors on fixed strides, stride in the
1x1 conv, classes contiguous with background 0.
"""

from __future__ import annotations

from typing import Any

from runtime.coco_classes import COCO_PERSON_KEYPOINTS

from .common import coco_names, resnet_fpn_keys
from .reader import KeyReader

SOURCE = "maskrcnn-benchmark"
FPN_SCALES = (0.25, 0.125, 0.0625, 0.03125)

DEFAULTS: dict[str, Any] = {
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.RPN_ONLY": False,
    "MODEL.MASK_ON": False,
    "MODEL.KEYPOINT_ON": False,
    "MODEL.RETINANET_ON": False,
    "MODEL.CLS_AGNOSTIC_BBOX_REG": False,
    "MODEL.BACKBONE.CONV_BODY": "R-50-C4",
    "MODEL.BACKBONE.FREEZE_CONV_BODY_AT": 2,
    "MODEL.FPN.USE_GN": False,
    "MODEL.FPN.USE_RELU": False,
    "MODEL.RESNETS.NUM_GROUPS": 1,
    "MODEL.RESNETS.WIDTH_PER_GROUP": 64,
    "MODEL.RESNETS.STRIDE_IN_1X1": True,
    "MODEL.RESNETS.TRANS_FUNC": "BottleneckWithFixedBatchNorm",
    "MODEL.RESNETS.STEM_FUNC": "StemWithFixedBatchNorm",
    "MODEL.RESNETS.RES5_DILATION": 1,
    "MODEL.RESNETS.BACKBONE_OUT_CHANNELS": 1024,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 256,
    "MODEL.RESNETS.STEM_OUT_CHANNELS": 64,
    "MODEL.RESNETS.STAGE_WITH_DCN": (False, False, False, False),
    "MODEL.RPN.USE_FPN": False,
    "MODEL.RPN.ANCHOR_SIZES": (32, 64, 128, 256, 512),
    "MODEL.RPN.ANCHOR_STRIDE": (16,),
    "MODEL.RPN.ASPECT_RATIOS": (0.5, 1.0, 2.0),
    "MODEL.RPN.FG_IOU_THRESHOLD": 0.7,
    "MODEL.RPN.BG_IOU_THRESHOLD": 0.3,
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE": 256,
    "MODEL.RPN.POSITIVE_FRACTION": 0.5,
    "MODEL.RPN.PRE_NMS_TOP_N_TRAIN": 12000,
    "MODEL.RPN.PRE_NMS_TOP_N_TEST": 6000,
    "MODEL.RPN.POST_NMS_TOP_N_TRAIN": 2000,
    "MODEL.RPN.POST_NMS_TOP_N_TEST": 1000,
    "MODEL.RPN.NMS_THRESH": 0.7,
    "MODEL.RPN.MIN_SIZE": 0,
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN": 2000,
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST": 2000,
    "MODEL.RPN.RPN_HEAD": "SingleConvRPNHead",
    "MODEL.ROI_HEADS.USE_FPN": False,
    "MODEL.ROI_HEADS.FG_IOU_THRESHOLD": 0.5,
    "MODEL.ROI_HEADS.BG_IOU_THRESHOLD": 0.5,
    "MODEL.ROI_HEADS.BBOX_REG_WEIGHTS": (10.0, 10.0, 5.0, 5.0),
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 512,
    "MODEL.ROI_HEADS.POSITIVE_FRACTION": 0.25,
    "MODEL.ROI_HEADS.SCORE_THRESH": 0.05,
    "MODEL.ROI_HEADS.NMS": 0.5,
    "MODEL.ROI_HEADS.DETECTIONS_PER_IMG": 100,
    "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR": "ResNet50Conv5ROIFeatureExtractor",
    "MODEL.ROI_BOX_HEAD.PREDICTOR": "FastRCNNPredictor",
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 14,
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO": 0,
    "MODEL.ROI_BOX_HEAD.POOLER_SCALES": (1.0 / 16,),
    "MODEL.ROI_BOX_HEAD.NUM_CLASSES": 81,
    "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM": 1024,
    "MODEL.ROI_BOX_HEAD.USE_GN": False,
    "MODEL.ROI_BOX_HEAD.DILATION": 1,
    "MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR": "ResNet50Conv5ROIFeatureExtractor",
    "MODEL.ROI_MASK_HEAD.PREDICTOR": "MaskRCNNC4Predictor",
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": 14,
    "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO": 0,
    "MODEL.ROI_MASK_HEAD.POOLER_SCALES": (1.0 / 16,),
    "MODEL.ROI_MASK_HEAD.CONV_LAYERS": (256, 256, 256, 256),
    "MODEL.ROI_MASK_HEAD.RESOLUTION": 14,
    "MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR": True,
    "MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS": False,
    "MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS_THRESHOLD": 0.5,
    "MODEL.ROI_MASK_HEAD.USE_GN": False,
    "MODEL.ROI_MASK_HEAD.DILATION": 1,
    "MODEL.ROI_KEYPOINT_HEAD.FEATURE_EXTRACTOR": "KeypointRCNNFeatureExtractor",
    "MODEL.ROI_KEYPOINT_HEAD.PREDICTOR": "KeypointRCNNPredictor",
    "MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION": 14,
    "MODEL.ROI_KEYPOINT_HEAD.POOLER_SAMPLING_RATIO": 0,
    "MODEL.ROI_KEYPOINT_HEAD.POOLER_SCALES": (1.0 / 16,),
    "MODEL.ROI_KEYPOINT_HEAD.CONV_LAYERS": (512,) * 8,
    "MODEL.ROI_KEYPOINT_HEAD.RESOLUTION": 14,
    "MODEL.ROI_KEYPOINT_HEAD.NUM_CLASSES": 17,
    "MODEL.ROI_KEYPOINT_HEAD.SHARE_BOX_FEATURE_EXTRACTOR": True,
    "INPUT.MIN_SIZE_TRAIN": (800,),
    "INPUT.MAX_SIZE_TRAIN": 1333,
    "INPUT.MIN_SIZE_TEST": 800,
    "INPUT.MAX_SIZE_TEST": 1333,
    "INPUT.PIXEL_MEAN": (102.9801, 115.9465, 122.7717),
    "INPUT.PIXEL_STD": (1.0, 1.0, 1.0),
    "INPUT.TO_BGR255": True,
    "INPUT.HORIZONTAL_FLIP_PROB_TRAIN": 0.5,
    "DATASETS.TRAIN": (),
    "DATASETS.TEST": (),
    "DATALOADER.NUM_WORKERS": 4,
    "DATALOADER.SIZE_DIVISIBILITY": 0,
    "DATALOADER.ASPECT_RATIO_GROUPING": True,
    "SOLVER.MAX_ITER": 40000,
    "SOLVER.BASE_LR": 0.001,
    "SOLVER.MOMENTUM": 0.9,
    "SOLVER.WEIGHT_DECAY": 0.0005,
    "SOLVER.GAMMA": 0.1,
    "SOLVER.STEPS": (30000,),
    "SOLVER.WARMUP_FACTOR": 1.0 / 3,
    "SOLVER.WARMUP_ITERS": 500,
    "SOLVER.WARMUP_METHOD": "linear",
    "SOLVER.CHECKPOINT_PERIOD": 2500,
    "SOLVER.TEST_PERIOD": 0,
    "SOLVER.IMS_PER_BATCH": 16,
    "TEST.IMS_PER_BATCH": 8,
    "TEST.BBOX_AUG.ENABLED": False,
}

#: keys that never change the imported model: bookkeeping, devices, training knobs we have no equivalent of
_INERT = (
    "AMP_VERBOSE", "DTYPE", "OUTPUT_DIR", "PATHS_CATALOG", "MODEL.DEVICE", "MODEL.WEIGHT",
    "MODEL.RPN.STRADDLE_THRESH", "MODEL.RPN.FPN_POST_NMS_PER_BATCH",
    "MODEL.ROI_MASK_HEAD.MLP_HEAD_DIM", "MODEL.ROI_KEYPOINT_HEAD.MLP_HEAD_DIM",
    "MODEL.ROI_BOX_HEAD.CONV_HEAD_DIM", "MODEL.ROI_BOX_HEAD.NUM_STACKED_CONVS",
    "MODEL.RESNETS.DEFORMABLE_GROUPS", "MODEL.RESNETS.WITH_MODULATED_DCN",
    "INPUT.VERTICAL_FLIP_PROB_TRAIN", "INPUT.BRIGHTNESS", "INPUT.CONTRAST", "INPUT.SATURATION", "INPUT.HUE",
    "SOLVER.BIAS_LR_FACTOR", "SOLVER.WEIGHT_DECAY_BIAS", "TEST.DETECTIONS_PER_IMG",
    "TEST.EXPECTED_RESULTS", "TEST.EXPECTED_RESULTS_SIGMA_TOL",
    # sections of architectures the model does not use (RetinaNet, FBNet, GroupNorm heads are refused below)
    "MODEL.RETINANET.", "MODEL.FBNET.", "MODEL.GROUP_NORM.", "MODEL.FCOS.", "TEST.BBOX_AUG.",
)  # fmt: skip

_COPIED = {  # our key: theirs, same meaning
    "MODEL.RPN.PRE_NMS_TOP_N_TEST": "MODEL.RPN.PRE_NMS_TOP_N_TEST",
    "MODEL.RPN.PRE_NMS_TOP_N_TRAIN": "MODEL.RPN.PRE_NMS_TOP_N_TRAIN",
    "MODEL.RPN.POST_NMS_TOP_N_TEST": "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST",
    "MODEL.RPN.POST_NMS_TOP_N_TRAIN": "MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN",
    "MODEL.RPN.NMS_THRESH": "MODEL.RPN.NMS_THRESH",
    "MODEL.RPN.MIN_SIZE": "MODEL.RPN.MIN_SIZE",
    "MODEL.RPN.FG_IOU_THRESHOLD": "MODEL.RPN.FG_IOU_THRESHOLD",
    "MODEL.RPN.BG_IOU_THRESHOLD": "MODEL.RPN.BG_IOU_THRESHOLD",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE": "MODEL.RPN.BATCH_SIZE_PER_IMAGE",
    "MODEL.RPN.POSITIVE_FRACTION": "MODEL.RPN.POSITIVE_FRACTION",
    "MODEL.RPN.ASPECT_RATIOS": "MODEL.RPN.ASPECT_RATIOS",
    "MODEL.ROI_HEADS.NUM_CLASSES": "MODEL.ROI_BOX_HEAD.NUM_CLASSES",
    "MODEL.ROI_HEADS.FG_IOU_THRESHOLD": "MODEL.ROI_HEADS.FG_IOU_THRESHOLD",
    "MODEL.ROI_HEADS.BG_IOU_THRESHOLD": "MODEL.ROI_HEADS.BG_IOU_THRESHOLD",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "MODEL.ROI_HEADS.POSITIVE_FRACTION": "MODEL.ROI_HEADS.POSITIVE_FRACTION",
    "MODEL.ROI_HEADS.SCORE_THRESH": "MODEL.ROI_HEADS.SCORE_THRESH",
    "MODEL.ROI_HEADS.NMS": "MODEL.ROI_HEADS.NMS",
    "MODEL.ROI_HEADS.BBOX_REG_WEIGHTS": "MODEL.ROI_HEADS.BBOX_REG_WEIGHTS",
    "TEST.DETECTIONS_PER_IMG": "MODEL.ROI_HEADS.DETECTIONS_PER_IMG",
    "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM": "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM",
    "INPUT.MIN_SIZE_TRAIN": "INPUT.MIN_SIZE_TRAIN",
    "INPUT.MAX_SIZE_TRAIN": "INPUT.MAX_SIZE_TRAIN",
    "INPUT.MIN_SIZE_TEST": "INPUT.MIN_SIZE_TEST",
    "INPUT.MAX_SIZE_TEST": "INPUT.MAX_SIZE_TEST",
    "INPUT.PIXEL_MEAN": "INPUT.PIXEL_MEAN",
    "INPUT.PIXEL_STD": "INPUT.PIXEL_STD",
    "INPUT.TO_BGR255": "INPUT.TO_BGR255",
    "INPUT.HORIZONTAL_FLIP_PROB_TRAIN": "INPUT.HORIZONTAL_FLIP_PROB_TRAIN",
    "DATASETS.TRAIN": "DATASETS.TRAIN",
    "DATASETS.TEST": "DATASETS.TEST",
    "DATALOADER.NUM_WORKERS": "DATALOADER.NUM_WORKERS",
    "DATALOADER.ASPECT_RATIO_GROUPING": "DATALOADER.ASPECT_RATIO_GROUPING",
    **{f"SOLVER.{k}": f"SOLVER.{k}" for k in (
        "MAX_ITER", "BASE_LR", "MOMENTUM", "WEIGHT_DECAY", "GAMMA", "STEPS", "WARMUP_FACTOR", "WARMUP_ITERS",
        "WARMUP_METHOD", "CHECKPOINT_PERIOD", "TEST_PERIOD", "IMS_PER_BATCH",
    )},
    "TEST.IMS_PER_BATCH": "TEST.IMS_PER_BATCH",
}  # fmt: skip


def _pooler(r: KeyReader, section: str, ours: str) -> dict[str, Any]:
    r.expect(f"{section}.POOLER_SCALES", [FPN_SCALES], "the heads pool from P2-P5 of the FPN")
    resolution = int(r.get(f"{section}.POOLER_RESOLUTION"))
    return {
        f"{ours}.POOLER_RESOLUTION": resolution,
        f"{ours}.POOLER_SAMPLING_RATIO": int(r.get(f"{section}.POOLER_SAMPLING_RATIO")),
        f"{ours}.POOLER_ALIGNED": False,
    }


def _backbone(r: KeyReader) -> dict[str, Any]:
    body = r.expect("MODEL.BACKBONE.CONV_BODY", ["R-50-FPN", "R-101-FPN"], "only ResNet-FPN backbones are")
    r.expect("MODEL.RPN.USE_FPN", [True], "the RPN must read the FPN")
    r.expect("MODEL.ROI_HEADS.USE_FPN", [True], "the ROI heads must read the FPN")
    r.expect("MODEL.FPN.USE_GN", [False], "GroupNorm in the FPN")
    r.expect("MODEL.FPN.USE_RELU", [False], "ReLU in the FPN")
    r.expect("MODEL.RESNETS.NUM_GROUPS", [1], "ResNeXt (grouped convolutions)")
    r.expect("MODEL.RESNETS.RES5_DILATION", [1], "a dilated res5")
    r.expect("MODEL.RESNETS.STAGE_WITH_DCN", [(False,) * 4], "deformable convolutions")
    r.expect(
        "MODEL.RESNETS.TRANS_FUNC", ["BottleneckWithFixedBatchNorm"], "only FrozenBatchNorm bottlenecks are"
    )
    r.expect("MODEL.RESNETS.STEM_FUNC", ["StemWithFixedBatchNorm"], "only the FrozenBatchNorm stem is")
    return resnet_fpn_keys(
        r,
        body,
        int(r.get("MODEL.BACKBONE.FREEZE_CONV_BODY_AT")),
        int(r.get("MODEL.RESNETS.BACKBONE_OUT_CHANNELS")),
        "MODEL.RESNETS.WIDTH_PER_GROUP",
        "MODEL.RESNETS.RES2_OUT_CHANNELS",
        "MODEL.RESNETS.STEM_OUT_CHANNELS",
        "MODEL.RESNETS.STRIDE_IN_1X1",
    )


def _rpn(r: KeyReader) -> dict[str, Any]:
    r.expect("MODEL.RPN.RPN_HEAD", ["SingleConvRPNHead"], "only the single-conv RPN head is")
    strides = tuple(int(s) for s in r.get("MODEL.RPN.ANCHOR_STRIDE"))
    sizes = tuple(float(s) for s in r.get("MODEL.RPN.ANCHOR_SIZES"))
    if len(strides) != 5 or len(sizes) != 5:
        raise r.unsupported(
            "MODEL.RPN.ANCHOR_STRIDE", strides, "an FPN RPN needs one stride and one size per level (5)"
        )
    pre, post = int(r.get("MODEL.RPN.PRE_NMS_TOP_N_TEST")), int(r.get("MODEL.RPN.POST_NMS_TOP_N_TEST"))
    if post < pre:  # its per-level cap after NMS; with post >= pre it never binds
        raise r.unsupported(
            "MODEL.RPN.POST_NMS_TOP_N_TEST", post, f"a per-level cap below PRE_NMS_TOP_N_TEST ({pre})"
        )
    r.ignore("MODEL.RPN.POST_NMS_TOP_N_TRAIN")
    return {
        "MODEL.RPN.ANCHOR_STRIDE": strides,
        "MODEL.RPN.ANCHOR_SIZES": sizes,
        "MODEL.RPN.ANCHOR_STYLE": "detectron",
        "MODEL.RPN.RANK_BY_PROBABILITY": True,
    }


def _heads(r: KeyReader, mask_on: bool, keypoint_on: bool) -> dict[str, Any]:
    box = "MODEL.ROI_BOX_HEAD"
    r.expect(f"{box}.FEATURE_EXTRACTOR", ["FPN2MLPFeatureExtractor"], "only the 2-fc FPN box head is")
    r.expect(f"{box}.PREDICTOR", ["FPNPredictor"], "only the FPN box predictor is")
    r.expect(f"{box}.USE_GN", [False], "GroupNorm in the box head")
    r.expect(f"{box}.DILATION", [1], "a dilated box head")
    r.expect("MODEL.CLS_AGNOSTIC_BBOX_REG", [False], "class-agnostic box regression")
    out = _pooler(r, box, "MODEL.ROI_BOX_HEAD")
    if mask_on:
        m = "MODEL.ROI_MASK_HEAD"
        r.expect(
            f"{m}.FEATURE_EXTRACTOR", ["MaskRCNNFPNFeatureExtractor"], "only the 4-conv FPN mask head is"
        )
        r.expect(f"{m}.PREDICTOR", ["MaskRCNNC4Predictor"], "only the deconv mask predictor is")
        r.expect(f"{m}.SHARE_BOX_FEATURE_EXTRACTOR", [False], "a mask head sharing the box head's features")
        r.expect(f"{m}.USE_GN", [False], "GroupNorm in the mask head")
        r.expect(f"{m}.DILATION", [1], "a dilated mask head")
        out.update(_pooler(r, m, "MODEL.ROI_MASK_HEAD"))
        r.expect(
            f"{m}.RESOLUTION",
            [2 * out[f"{m}.POOLER_RESOLUTION"]],
            "a mask size other than twice the pooler's",
        )
        out[f"{m}.CONV_LAYERS"] = tuple(int(c) for c in r.get(f"{m}.CONV_LAYERS"))
        if r.get(f"{m}.POSTPROCESS_MASKS"):  # pasting inside the model: ours is on the host, at 0.5
            r.expect(f"{m}.POSTPROCESS_MASKS_THRESHOLD", [0.5], "a mask threshold other than 0.5")
        else:
            r.ignore(f"{m}.POSTPROCESS_MASKS_THRESHOLD")
    else:
        r.ignore("MODEL.ROI_MASK_HEAD.")
    if keypoint_on:
        k = "MODEL.ROI_KEYPOINT_HEAD"
        r.expect(
            f"{k}.FEATURE_EXTRACTOR", ["KeypointRCNNFeatureExtractor"], "only the 8-conv keypoint head is"
        )
        r.expect(f"{k}.PREDICTOR", ["KeypointRCNNPredictor"], "only the deconv keypoint predictor is")
        r.expect(
            f"{k}.SHARE_BOX_FEATURE_EXTRACTOR", [False], "a keypoint head sharing the box head's features"
        )
        out.update(_pooler(r, k, "MODEL.ROI_KEYPOINT_HEAD"))
        r.expect(
            f"{k}.RESOLUTION",
            [4 * out[f"{k}.POOLER_RESOLUTION"]],
            "a heatmap size other than 4x the pooler's",
        )
        out[f"{k}.CONV_LAYERS"] = tuple(int(c) for c in r.get(f"{k}.CONV_LAYERS"))
        out[f"{k}.NUM_KEYPOINTS"] = int(r.get(f"{k}.NUM_CLASSES"))
    else:
        r.ignore("MODEL.ROI_KEYPOINT_HEAD.")
    return out


def class_names(datasets: tuple[str, ...], num_classes: int, keypoint_on: bool) -> list[str] | None:
    """COCO's names for COCO data sets (catalog names start with coco_ / keypoints_coco_), else None."""
    if keypoint_on and num_classes == 2 and any(str(d).startswith("keypoints_coco") for d in datasets):
        return ["__background__", "person"]
    return coco_names(datasets, num_classes)


def translate(r: KeyReader) -> tuple[dict[str, Any], list[str] | None, list[str] | None]:
    """Our config keys for a maskrcnn-benchmark config, and the class and keypoint names it implies."""
    r.ignore(*_INERT)
    r.expect("MODEL.META_ARCHITECTURE", ["GeneralizedRCNN"], "only the R-CNN meta-architecture is")
    r.expect("MODEL.RPN_ONLY", [False], "proposal-only models")
    r.expect("MODEL.RETINANET_ON", [False], "RetinaNet")
    r.expect("TEST.BBOX_AUG.ENABLED", [False], "test-time augmentation cannot be exported")
    mask_on, keypoint_on = bool(r.get("MODEL.MASK_ON")), bool(r.get("MODEL.KEYPOINT_ON"))
    if mask_on and keypoint_on:
        raise r.unsupported(
            "MODEL.KEYPOINT_ON", True, "masks and keypoints in one model (torchvision has no such model)"
        )
    divisibility = int(r.get("DATALOADER.SIZE_DIVISIBILITY"))
    if divisibility <= 0 or divisibility % 32:
        raise r.unsupported(
            "DATALOADER.SIZE_DIVISIBILITY", divisibility, "an FPN model needs a multiple of 32"
        )
    ours: dict[str, Any] = {
        "MODEL.SOURCE": SOURCE,
        "MODEL.LEGACY_PLUS_ONE": True,
        "MODEL.MASK_ON": mask_on,
        "MODEL.KEYPOINT_ON": keypoint_on,
        "MODEL.ROI_HEADS.MIN_SIZE": float("-inf"),  # it never drops a detection for its size
        "INPUT.RESIZE": SOURCE,
        "TEST.OUTPUT_CONVENTION": SOURCE,  # torchvision's mask pasting, OpenCV's bicubic for keypoints
        "DATALOADER.SIZE_DIVISIBILITY": divisibility,
        **_backbone(r),
        **_rpn(r),
        **_heads(r, mask_on, keypoint_on),
    }
    for key, theirs in _COPIED.items():
        ours[key] = r.get(theirs)
    r.finish()
    names = class_names(
        tuple(ours["DATASETS.TEST"]) + tuple(ours["DATASETS.TRAIN"]),
        int(ours["MODEL.ROI_HEADS.NUM_CLASSES"]),
        keypoint_on,
    )
    keypoints = (
        list(COCO_PERSON_KEYPOINTS)
        if keypoint_on and ours.get("MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS") == 17
        else None
    )
    return ours, names, keypoints
