"""Build torchvision detection models from a config.

The modules are torchvision's own (``MaskRCNN``, ``FasterRCNN``, ``KeypointRCNN``, ``BackboneWithFPN``), so
parameter names are torchvision's: an R-50-FPN checkpoint of ours loads into ``maskrcnn_resnet50_fpn`` with
strict keys, and torchvision's published COCO weights load into our model. Only widths, norms and head sizes
change with the config, which is what makes a small variant trainable from scratch on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large
from torchvision.models.detection import FasterRCNN, KeypointRCNN, MaskRCNN
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d
from yacs.config import CfgNode

from .config import _lookup, get_default_config
from .conventions import (
    BGR255Transform,
    ConventionAnchorGenerator,
    ConventionRoIHeads,
    ConventionRPN,
    PlusOneBoxCoder,
    adopt,
    cell_anchors,
)
from .roi_pooling import TrainingMultiScaleRoIAlign

NormFactory = Callable[[int], nn.Module]


def _group_norm(channels: int) -> nn.Module:
    """GroupNorm with the most groups (up to 32) that divide the channels: MobileNet widths aren't multiples of 32."""
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def _norm_layer(name: str) -> NormFactory:
    if name == "FrozenBN":
        return FrozenBatchNorm2d
    if name == "BN":
        return nn.BatchNorm2d
    if name == "GN":
        return _group_norm
    raise ValueError(f"unknown norm {name!r}")


def _freeze_resnet(body: nn.Module, trainable_layers: int) -> None:
    """torchvision's rule: only the last `trainable_layers` stages (layer4 first, conv1 last) train."""
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"MODEL.BACKBONE.TRAINABLE_LAYERS must be in [0, 5], got {trainable_layers}")
    layers = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        layers.append("bn1")
    for name, p in body.named_parameters():
        if all(not name.startswith(layer) for layer in layers):
            p.requires_grad_(False)


class _ScaledResNet(ResNet):
    """torchvision's ResNet with every stage's width scaled: ``base_width`` channels in the stem and stage 1.

    torchvision fixes the widths at 64-128-256-512; a from-scratch CPU model wants fewer. Built with torchvision's
    own ``_make_layer`` and blocks, so parameter names (``conv1``, ``layer1.0.conv1``, ...) and initialization
    are torchvision's, and ``base_width=64`` is exactly ``resnet18()`` / ``resnet50()``.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: list[int],
        base_width: int,
        norm: NormFactory,
        stem_width: int = 0,
    ):
        nn.Module.__init__(self)
        self._norm_layer = norm
        stem_width = stem_width or base_width
        self.inplanes, self.dilation, self.groups, self.base_width = stem_width, 1, 1, 64
        self.conv1 = nn.Conv2d(3, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, base_width, layers[0])
        self.layer2 = self._make_layer(block, 2 * base_width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * base_width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * base_width, layers[3], stride=2)
        # the classifier is built (and then dropped by the FPN's layer getter) only so that a seeded build draws
        # the same random numbers in the same order as torchvision's resnet18()/resnet50()
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * base_width * block.expansion, 1000)
        for m in self.modules():  # torchvision's initialization
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


_RESNETS = {
    "R-50-FPN": (Bottleneck, [3, 4, 6, 3]),
    "R-101-FPN": (Bottleneck, [3, 4, 23, 3]),
    "R-18-FPN": (BasicBlock, [2, 2, 2, 2]),
}


def _stride_in_1x1(net: ResNet) -> None:
    """Move each stage's stride from the first bottleneck's 3x3 conv to its 1x1 (MSRA / Caffe2 ResNets).

    The weights' shapes are the same either way, so this is a config fact, never inferred from a checkpoint.
    """
    for stage in (net.layer2, net.layer3, net.layer4):  # bottleneck ResNets only (config.validate)
        first = stage[0]
        stride = first.conv2.stride
        first.conv1.stride, first.conv2.stride = stride, (1, 1)


def build_backbone(cfg: CfgNode) -> nn.Module:
    """An FPN backbone whose state-dict keys are torchvision's (``body.*``, ``fpn.*``)."""
    conv_body = cfg.MODEL.BACKBONE.CONV_BODY
    norm = _norm_layer(cfg.MODEL.BACKBONE.NORM)
    out_channels = cfg.MODEL.BACKBONE.OUT_CHANNELS
    fpn_norm = _norm_layer("GN") if cfg.MODEL.BACKBONE.HEAD_NORM == "GN" else None
    if conv_body in _RESNETS:
        net = _ScaledResNet(
            *_RESNETS[conv_body], cfg.MODEL.BACKBONE.BASE_WIDTH, norm, cfg.MODEL.BACKBONE.STEM_WIDTH
        )
        if cfg.MODEL.BACKBONE.STRIDE_IN_1X1:
            _stride_in_1x1(net)
        _freeze_resnet(net, cfg.MODEL.BACKBONE.TRAINABLE_LAYERS)
        stage_channels = [net.inplanes // 8, net.inplanes // 4, net.inplanes // 2, net.inplanes]
        return_layers = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
        return BackboneWithFPN(
            net,
            return_layers=return_layers,
            in_channels_list=stage_channels,
            out_channels=out_channels,
            extra_blocks=LastLevelMaxPool(),
            norm_layer=fpn_norm,
        )
    if conv_body == "MNV3-FPN":
        features = mobilenet_v3_large(weights=None, norm_layer=norm).features
        # torchvision's fasterrcnn_mobilenet_v3_large_fpn layout: the last two strided stages feed the FPN
        stages = (
            [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
        )
        trainable = min(cfg.MODEL.BACKBONE.TRAINABLE_LAYERS, len(stages))
        freeze_before = len(features) if trainable == 0 else stages[len(stages) - trainable]
        for block in features[:freeze_before]:
            block.requires_grad_(False)
        returned = [len(stages) - 2, len(stages) - 1]
        return BackboneWithFPN(
            features,
            return_layers={str(stages[k]): str(v) for v, k in enumerate(returned)},
            in_channels_list=[features[stages[i]].out_channels for i in returned],
            out_channels=out_channels,
            extra_blocks=LastLevelMaxPool(),
            norm_layer=fpn_norm,
        )
    raise ValueError(f"unknown MODEL.BACKBONE.CONV_BODY {conv_body!r}")


def _feature_names(backbone: nn.Module) -> list[str]:
    """The FPN levels the ROI heads pool from: every output except the max-pooled extra level."""
    with torch.no_grad():
        was_training = backbone.training
        backbone.eval()
        feats = backbone(torch.zeros(1, 3, 64, 64))
        backbone.train(was_training)
    return [k for k in feats if k != "pool"]


def build_model(cfg: CfgNode, train: bool = False) -> nn.Module:
    """A torchvision ``MaskRCNN``, ``FasterRCNN`` or ``KeypointRCNN`` configured by ``cfg``.

    ``train`` picks the resize sizes (INPUT.*_TRAIN or INPUT.*_TEST) and the module's mode. The modules are
    built in a fixed order (backbone, box head, class heads, RPN head inside torchvision's constructor): a
    seeded build must draw the same random weights, which the exported-graph goldens check.
    """
    backbone = build_backbone(cfg)
    names = _feature_names(backbone)
    head_norm = _norm_layer("GN") if cfg.MODEL.BACKBONE.HEAD_NORM == "GN" else None
    common = {
        **_transform_args(cfg),
        **_rpn_args(cfg, num_levels=len(names) + 1),  # + the "pool" level the RPN also uses
        **_box_args(cfg, names, backbone.out_channels, head_norm),
    }
    model = _assemble(cfg, backbone, names, head_norm, common)
    _apply_conventions(model, cfg, num_levels=len(names) + 1)
    configure_transform(model, cfg, train)
    model.train(train)
    return model


def _transform_args(cfg: CfgNode) -> dict[str, Any]:
    """The resize and normalization torchvision's ``GeneralizedRCNNTransform`` starts with."""
    return dict(
        min_size=tuple(cfg.INPUT.MIN_SIZE_TRAIN),
        max_size=cfg.INPUT.MAX_SIZE_TRAIN,
        image_mean=list(cfg.INPUT.PIXEL_MEAN),
        image_std=list(cfg.INPUT.PIXEL_STD),
    )


def _anchor_generator(cfg: CfgNode, num_levels: int) -> AnchorGenerator:
    """One anchor size per FPN level when the config gives one per level, else all of them on every level."""
    sizes = tuple(cfg.MODEL.RPN.ANCHOR_SIZES)
    if len(sizes) == num_levels:
        anchor_sizes = tuple((s,) for s in sizes)
    else:  # MobileNet: all sizes on every level, as torchvision does
        anchor_sizes = (sizes,) * num_levels
    return AnchorGenerator(anchor_sizes, (tuple(cfg.MODEL.RPN.ASPECT_RATIOS),) * num_levels)


def _rpn_args(cfg: CfgNode, num_levels: int) -> dict[str, Any]:
    """MODEL.RPN as torchvision's ``rpn_*`` keywords (torchvision builds the RPN head itself)."""
    rpn = cfg.MODEL.RPN
    return dict(
        rpn_anchor_generator=_anchor_generator(cfg, num_levels),
        rpn_pre_nms_top_n_train=rpn.PRE_NMS_TOP_N_TRAIN,
        rpn_pre_nms_top_n_test=rpn.PRE_NMS_TOP_N_TEST,
        rpn_post_nms_top_n_train=rpn.POST_NMS_TOP_N_TRAIN,
        rpn_post_nms_top_n_test=rpn.POST_NMS_TOP_N_TEST,
        rpn_nms_thresh=rpn.NMS_THRESH,
        **_sampling_args("rpn", rpn),
    )


def _sampling_args(prefix: str, node: CfgNode) -> dict[str, Any]:
    """torchvision's matcher and sampler keywords for the RPN (``rpn_*``) or the box head (``box_*``).

    Both stages read the same five keys (``config._sampling`` writes them), so they are mapped once.
    """
    return {
        f"{prefix}_fg_iou_thresh": node.FG_IOU_THRESHOLD,
        f"{prefix}_bg_iou_thresh": node.BG_IOU_THRESHOLD,
        f"{prefix}_batch_size_per_image": node.BATCH_SIZE_PER_IMAGE,
        f"{prefix}_positive_fraction": node.POSITIVE_FRACTION,
        f"{prefix}_score_thresh": node.SCORE_THRESH,
    }


def _pooler(cfg: CfgNode, names: list[str], head: CfgNode) -> TrainingMultiScaleRoIAlign:
    """One ROI head section's pooler (resolution, sampling, ``aligned``, the "+1" level mapping)."""
    return TrainingMultiScaleRoIAlign(
        names,
        head.POOLER_RESOLUTION,
        head.POOLER_SAMPLING_RATIO,
        aligned=head.POOLER_ALIGNED,
        legacy_plus_one=cfg.MODEL.LEGACY_PLUS_ONE,
    )


def _box_head(cfg: CfgNode, out_ch: int, head_norm: NormFactory | None) -> nn.Module:
    box = cfg.MODEL.ROI_BOX_HEAD
    if head_norm is None:
        return TwoMLPHead(out_ch * box.POOLER_RESOLUTION**2, box.MLP_HEAD_DIM)
    # torchvision's "v2" head: 4 conv + 1 fc, normalized, trains better from scratch
    return FastRCNNConvFCHead(
        (out_ch, box.POOLER_RESOLUTION, box.POOLER_RESOLUTION),
        [out_ch] * 4,
        [box.MLP_HEAD_DIM],
        norm_layer=nn.BatchNorm2d if cfg.MODEL.BACKBONE.NORM == "BN" else head_norm,
    )


def _box_args(cfg: CfgNode, names: list[str], out_ch: int, head_norm: NormFactory | None) -> dict[str, Any]:
    """The box branch's modules (pooler, head, predictor, built in that order) and MODEL.ROI_HEADS's ``box_*``."""
    box = cfg.MODEL.ROI_BOX_HEAD
    rh = cfg.MODEL.ROI_HEADS
    return dict(
        box_roi_pool=_pooler(cfg, names, box),
        box_head=_box_head(cfg, out_ch, head_norm),
        box_predictor=FastRCNNPredictor(box.MLP_HEAD_DIM, rh.NUM_CLASSES),
        box_nms_thresh=rh.NMS,
        box_detections_per_img=cfg.TEST.DETECTIONS_PER_IMG,
        **_sampling_args("box", rh),
    )


def _mask_args(cfg: CfgNode, names: list[str], out_ch: int, head_norm: NormFactory | None) -> dict[str, Any]:
    m = cfg.MODEL.ROI_MASK_HEAD
    layers = tuple(m.CONV_LAYERS)
    return dict(
        mask_roi_pool=_pooler(cfg, names, m),
        mask_head=MaskRCNNHeads(out_ch, layers, 1, norm_layer=head_norm),
        mask_predictor=MaskRCNNPredictor(layers[-1], layers[-1], cfg.MODEL.ROI_HEADS.NUM_CLASSES),
    )


def _keypoint_args(cfg: CfgNode, names: list[str], out_ch: int) -> dict[str, Any]:
    k = cfg.MODEL.ROI_KEYPOINT_HEAD
    layers = tuple(k.CONV_LAYERS)
    return dict(
        keypoint_roi_pool=_pooler(cfg, names, k),
        keypoint_head=KeypointRCNNHeads(out_ch, layers),
        keypoint_predictor=KeypointRCNNPredictor(layers[-1], k.NUM_KEYPOINTS),
    )


def _assemble(
    cfg: CfgNode, backbone: nn.Module, names: list[str], head_norm: NormFactory | None, common: dict[str, Any]
) -> nn.Module:
    """The torchvision detector MASK_ON / KEYPOINT_ON ask for, around the parts built so far."""
    if cfg.MODEL.MASK_ON and cfg.MODEL.KEYPOINT_ON:
        raise ValueError(
            "MODEL.MASK_ON and MODEL.KEYPOINT_ON together are not supported by torchvision's models"
        )
    out_ch = backbone.out_channels
    if cfg.MODEL.MASK_ON:
        return MaskRCNN(backbone, num_classes=None, **_mask_args(cfg, names, out_ch, head_norm), **common)
    if cfg.MODEL.KEYPOINT_ON:
        return KeypointRCNN(backbone, num_classes=None, **_keypoint_args(cfg, names, out_ch), **common)
    return FasterRCNN(backbone, num_classes=None, **common)


#: the keys whose defaults are torchvision's conventions (any other value swaps in trainer.conventions)
_CONVENTION_KEYS = (
    "MODEL.LEGACY_PLUS_ONE",
    "MODEL.RPN.ANCHOR_STRIDE",
    "MODEL.RPN.ANCHOR_STYLE",
    "MODEL.RPN.RANK_BY_PROBABILITY",
    "MODEL.RPN.NMS_ON_LOGITS",
    "MODEL.RPN.MIN_SIZE",
    "MODEL.ROI_HEADS.MIN_SIZE",
)


def _uses_conventions(cfg: CfgNode) -> bool:
    """Whether any convention key differs from its default, torchvision's (then RPN and ROI heads are ours)."""
    defaults = get_default_config()
    return any(_lookup(cfg, key) != _lookup(defaults, key) for key in _CONVENTION_KEYS)


def _apply_conventions(model: nn.Module, cfg: CfgNode, num_levels: int) -> None:
    """Swap in ``trainer.conventions``' modules where the config asks for an imported project's conventions.

    A model of our own configs keeps torchvision's modules untouched (only the box weights are set, to
    torchvision's own values unless MODEL.ROI_HEADS.BBOX_REG_WEIGHTS says otherwise).
    """
    weights = tuple(float(w) for w in cfg.MODEL.ROI_HEADS.BBOX_REG_WEIGHTS)  # 4 values (config.validate)
    if cfg.INPUT.TO_BGR255:
        adopt(model.transform, BGR255Transform)
    coder = PlusOneBoxCoder if cfg.MODEL.LEGACY_PLUS_ONE else BoxCoder
    model.roi_heads.box_coder = coder(weights)
    if not _uses_conventions(cfg):
        return
    rpn = cfg.MODEL.RPN
    model.rpn.box_coder = coder((1.0, 1.0, 1.0, 1.0))
    strides = tuple(int(s) for s in rpn.ANCHOR_STRIDE)
    if strides and len(strides) != num_levels:
        raise ValueError(
            f"MODEL.RPN.ANCHOR_STRIDE has {len(strides)} strides for the {num_levels} FPN levels the RPN reads"
        )
    generator = model.rpn.anchor_generator
    per_level = list(generator.sizes)  # a "detectron" style comes with strides (config.validate)
    anchors = [
        cell_anchors(rpn.ANCHOR_STYLE, strides[i] if strides else 0, per_level[i], generator.aspect_ratios[i])
        for i in range(num_levels)
    ]
    model.rpn.anchor_generator = ConventionAnchorGenerator(anchors, strides or None)
    adopt(
        model.rpn,
        ConventionRPN,
        min_size=float(rpn.MIN_SIZE),
        rank_by_probability=bool(rpn.RANK_BY_PROBABILITY),
        nms_on_logits=bool(rpn.NMS_ON_LOGITS),
    )
    adopt(model.roi_heads, ConventionRoIHeads, min_size=float(cfg.MODEL.ROI_HEADS.MIN_SIZE))


def configure_transform(model: nn.Module, cfg: CfgNode, train: bool) -> None:
    """torchvision's transform holds one size pair: point it at INPUT.*_TRAIN or INPUT.*_TEST.

    In eval mode torchvision resizes to ``min_size[-1]``; in training it picks one of ``min_size`` at random
    (multi-scale training), so the two phases need different values on the same module.
    """
    if train:
        model.transform.min_size = tuple(cfg.INPUT.MIN_SIZE_TRAIN)
        model.transform.max_size = cfg.INPUT.MAX_SIZE_TRAIN
    else:
        model.transform.min_size = (cfg.INPUT.MIN_SIZE_TEST,)
        model.transform.max_size = cfg.INPUT.MAX_SIZE_TEST
    model.transform.size_divisible = cfg.DATALOADER.SIZE_DIVISIBILITY
