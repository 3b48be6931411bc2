"""maskrcnn-benchmark-style configuration: yacs defaults, YAML files and trailing ``KEY VALUE`` overrides.

Users of maskrcnn-benchmark know these key names; we keep them where they exist and add torchvision's knobs
under the same tree. Merging is stricter than plain yacs: an unknown key names the closest valid keys, and a
value of the wrong type says which type the key wants (ints are accepted where floats are expected, since
``SOLVER.BASE_LR 1`` is what people type).
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from yacs.config import CfgNode as CN

from runtime.postprocess import OUTPUT_CONVENTIONS
from runtime.preprocess import RESIZE_MODES


class ConfigError(ValueError):
    """A user's config file or override is wrong; the message says what and how to fix it."""


_C = CN()
_C.MODEL = CN()
_C.MODEL.DEVICE = "cpu"
_C.MODEL.WEIGHT = ""
_C.MODEL.MASK_ON = True
_C.MODEL.KEYPOINT_ON = False
# the project whose conventions the model follows: "" (torchvision's, ours), "maskrcnn-benchmark" or
# "detectron2"; set by the import of their configs (trainer.foreign), recorded so every later step knows
_C.MODEL.SOURCE = ""
# Detectron's "+1" box convention (maskrcnn-benchmark): widths are x2 - x1 + 1 in the box coder, the RPN's
# size filter, NMS overlaps and the FPN level of an roi, and boxes clip to [0, size - 1]
_C.MODEL.LEGACY_PLUS_ONE = False

_C.MODEL.BACKBONE = CN()
# "R-50-FPN" (torchvision-compatible), "R-18-FPN", "MNV3-FPN" (MobileNetV3-Large FPN)
_C.MODEL.BACKBONE.CONV_BODY = "R-50-FPN"
# "FrozenBN" (torchvision's, for fine-tuning pretrained weights), "BN", or "GN" (trains from scratch at tiny batches)
_C.MODEL.BACKBONE.NORM = "FrozenBN"
# ResNet stages (0-5) that train; torchvision's default is 3
_C.MODEL.BACKBONE.TRAINABLE_LAYERS = 3
_C.MODEL.BACKBONE.OUT_CHANNELS = 256
# ResNet width: channels of the stem and the first stage, doubled at each later stage (torchvision's: 64).
# Anything but 64 is a narrower (or wider) network that no published checkpoint fits: for training from scratch.
_C.MODEL.BACKBONE.BASE_WIDTH = 64
# normalization inside FPN and heads: "" (none, torchvision's) or "GN"
_C.MODEL.BACKBONE.HEAD_NORM = ""
# channels of the ResNet stem when they differ from BASE_WIDTH (0: the same), as in narrowed imported ResNets
_C.MODEL.BACKBONE.STEM_WIDTH = 0
# stride 2 on the 1x1 conv of a stage's first bottleneck (maskrcnn-benchmark, detectron2, Caffe2's MSRA
# ResNets) instead of torchvision's 3x3: same weights' shapes, different features
_C.MODEL.BACKBONE.STRIDE_IN_1X1 = False


def _sampling(
    fg_iou: float, bg_iou: float, batch_size: int, positive_fraction: float, score: float
) -> dict[str, Any]:
    """The matcher and sampler keys the RPN and the ROI heads share: one spelling of them for both sections."""
    return {
        "FG_IOU_THRESHOLD": fg_iou,
        "BG_IOU_THRESHOLD": bg_iou,
        "BATCH_SIZE_PER_IMAGE": batch_size,
        "POSITIVE_FRACTION": positive_fraction,
        "SCORE_THRESH": score,
    }


def _pooler(resolution: int, sampling_ratio: int = 2, **head: Any) -> CN:
    """An ROI head section: the pooler keys every head has, then the head's own (``head``, in order).

    ``POOLER_ALIGNED`` is ROIAlign's half-pixel ``aligned=True`` (detectron2's ROIAlignV2); torchvision's
    poolers are ``aligned=False``.
    """
    return CN(
        {
            "POOLER_RESOLUTION": resolution,
            "POOLER_SAMPLING_RATIO": sampling_ratio,
            **head,
            "POOLER_ALIGNED": False,
        }
    )


_C.MODEL.RPN = CN(
    {
        "ANCHOR_SIZES": (32, 64, 128, 256, 512),
        "ASPECT_RATIOS": (0.5, 1.0, 2.0),
        "PRE_NMS_TOP_N_TRAIN": 2000,
        "PRE_NMS_TOP_N_TEST": 1000,
        "POST_NMS_TOP_N_TRAIN": 2000,
        "POST_NMS_TOP_N_TEST": 1000,
        "NMS_THRESH": 0.7,
        **_sampling(fg_iou=0.7, bg_iou=0.3, batch_size=256, positive_fraction=0.5, score=0.0),
        # proposals keep width and height >= MIN_SIZE (torchvision: 1e-3; -inf keeps every box)
        "MIN_SIZE": 1e-3,
        # anchor stride per level; () is torchvision's rule (padded image size // feature size, which makes
        # the pooled level's stride 61 on an 800-row input), imported models use their fixed strides
        "ANCHOR_STRIDE": (),
        # cell anchors: "torchvision" (centred at 0, rounded), "detectron" (maskrcnn-benchmark: Detectron's
        # (0, 0, s-1, s-1) base with rounded sides), "detectron2" (centred at 0, not rounded)
        "ANCHOR_STYLE": "torchvision",
        # rank proposals by sigmoid probability (maskrcnn-benchmark) instead of logits (torchvision, detectron2):
        # the same order except where float32 probabilities tie (logits above ~16 all give 1.0)
        "RANK_BY_PROBABILITY": False,
        # suppress by logits (detectron2) instead of probabilities (torchvision, maskrcnn-benchmark): where
        # probabilities tie in float32, the order NMS visits boxes is otherwise up to the implementation
        "NMS_ON_LOGITS": False,
    }
)
_C.MODEL.ROI_HEADS = CN(
    {
        "NUM_CLASSES": 91,
        **_sampling(fg_iou=0.5, bg_iou=0.5, batch_size=512, positive_fraction=0.25, score=0.05),
        "NMS": 0.5,
        # detections keep width and height >= MIN_SIZE before NMS (torchvision: 1e-2; -inf keeps every box)
        "MIN_SIZE": 1e-2,
        "BBOX_REG_WEIGHTS": (10.0, 10.0, 5.0, 5.0),
    }
)
_C.MODEL.ROI_BOX_HEAD = _pooler(7, MLP_HEAD_DIM=1024)
_C.MODEL.ROI_MASK_HEAD = _pooler(14, CONV_LAYERS=(256, 256, 256, 256))
_C.MODEL.ROI_KEYPOINT_HEAD = _pooler(14, CONV_LAYERS=(512,) * 8, NUM_KEYPOINTS=17)

_C.INPUT = CN()
_C.INPUT.MIN_SIZE_TRAIN = (800,)
_C.INPUT.MAX_SIZE_TRAIN = 1333
_C.INPUT.MIN_SIZE_TEST = 800
_C.INPUT.MAX_SIZE_TEST = 1333
# RGB in [0, 1], torchvision's convention (maskrcnn-benchmark used BGR 0-255)
_C.INPUT.PIXEL_MEAN = (0.485, 0.456, 0.406)
_C.INPUT.PIXEL_STD = (0.229, 0.224, 0.225)
_C.INPUT.HORIZONTAL_FLIP_PROB_TRAIN = 0.5
# BGR pixels in 0..255 (maskrcnn-benchmark's and detectron2's input); PIXEL_MEAN/STD are then BGR 0..255 values
_C.INPUT.TO_BGR255 = False
# test-time resize: "torchvision" (normalize, then float bilinear; floor of the scaled sides), or the PIL
# bilinear resize of the uint8 image with "maskrcnn-benchmark"'s or "detectron2"'s size rule
_C.INPUT.RESIZE = "torchvision"

_C.DATASETS = CN()
_C.DATASETS.TRAIN = ("coco_2017_train",)
_C.DATASETS.TEST = ("coco_2017_val",)
# where catalog names resolve (`shapes_train` -> ROOT/shapes/...)
_C.DATASETS.ROOT = "datasets"

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 2
_C.DATALOADER.SIZE_DIVISIBILITY = 32
_C.DATALOADER.ASPECT_RATIO_GROUPING = True

_C.SOLVER = CN()
# "SGD" (maskrcnn-benchmark's, with SOLVER.MOMENTUM) or "AdamW" (converges faster from scratch at tiny batches)
_C.SOLVER.OPTIMIZER = "SGD"
_C.SOLVER.MAX_ITER = 90000
_C.SOLVER.BASE_LR = 0.02
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.WEIGHT_DECAY = 0.0001
_C.SOLVER.GAMMA = 0.1
_C.SOLVER.STEPS = (60000, 80000)
_C.SOLVER.WARMUP_FACTOR = 1.0 / 3
_C.SOLVER.WARMUP_ITERS = 500
_C.SOLVER.WARMUP_METHOD = "linear"
# "WarmupMultiStepLR" (maskrcnn-benchmark's: x GAMMA at each of STEPS) or "WarmupCosineLR" (detectron2's: a half
# cosine from BASE_LR to 0 at MAX_ITER, STEPS ignored), which does better when the whole run is short
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
_C.SOLVER.CHECKPOINT_PERIOD = 2500
# 0 disables periodic evaluation during training
_C.SOLVER.TEST_PERIOD = 0
_C.SOLVER.IMS_PER_BATCH = 16
# max L2 norm of all gradients; <= 0 disables clipping
_C.SOLVER.CLIP_GRAD_NORM = 10.0
# mixed precision: float16 on CUDA; bfloat16 on CPUs with native bf16 math (AVX512-BF16 or AMX), where the
# BatchNorm R-18 of the time trained about 1.8x faster; plain float32 elsewhere. Whether it pays depends on the
# model: the shapes recipe (GroupNorm) trains faster in float32 and sets it False
_C.SOLVER.AMP = True
_C.SOLVER.SEED = 0

_C.TEST = CN()
_C.TEST.IMS_PER_BATCH = 8
_C.TEST.DETECTIONS_PER_IMG = 100
# host-side finishing: "torchvision", "maskrcnn-benchmark" (torchvision's mask pasting, keypoint heatmaps
# resized by OpenCV's bicubic) or "detectron2" (boxes clipped to the image and empty ones dropped after
# rescaling, masks pasted with grid_sample)
_C.TEST.OUTPUT_CONVENTION = "torchvision"

_C.OUTPUT_DIR = "output"


def get_default_config() -> CN:
    return _C.clone()


def _all_keys(node: CN, prefix: str = "") -> list[str]:
    keys = []
    for k, v in node.items():
        full = f"{prefix}{k}"
        if isinstance(v, CN):
            keys.extend(_all_keys(v, full + "."))
        else:
            keys.append(full)
    return keys


def _unknown_key_error(key: str, valid: Iterable[str], source: str) -> ConfigError:
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
    # also match on the last component, so `BASE_LR` suggests `SOLVER.BASE_LR`
    leaf = key.rsplit(".", 1)[-1]
    close += [v for v in valid if v.rsplit(".", 1)[-1] == leaf and v not in close]
    hint = f"; did you mean {', '.join(close[:3])}?" if close else ""
    return ConfigError(f"unknown config key {key!r} in {source}{hint}")


def _parse_literal(value: Any) -> Any:
    """Command-line values arrive as strings: read them as Python literals where they are ones."""
    if not isinstance(value, str):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _type_name(value: Any) -> str:
    return type(value).__name__


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    """Return ``value`` converted to ``default``'s type, or raise a ConfigError that names both."""
    if isinstance(value, str) and not isinstance(default, str):
        value = _parse_literal(value)  # YAML writes tuples as "(1, 2)", as yacs configs always have
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, (tuple, list)):
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = (value,)
        if isinstance(value, (tuple, list)):
            if default:
                proto = default[0]
                value = [_coerce(key, v, proto, source) for v in value]
            return tuple(value)
    raise ConfigError(
        f"config key {key} in {source} wants a {_type_name(default)} (default {default!r}), "
        f"got {_type_name(value)} {value!r}"
    )


def _merge_dict(cfg: CN, data: dict[str, Any], source: str, prefix: str = "") -> None:
    valid = _all_keys(cfg)
    for k, v in data.items():
        full = f"{prefix}{k}"
        node = _lookup(cfg, full)
        if node is _MISSING:
            raise _unknown_key_error(full, valid, source)
        if isinstance(node, CN):
            if not isinstance(v, dict):
                raise ConfigError(f"config key {full} in {source} is a section; give it a mapping, not {v!r}")
            _merge_dict(cfg, v, source, full + ".")
        else:
            _assign(cfg, full, _coerce(full, v, node, source))


_MISSING = object()


def _lookup(cfg: CN, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, CN) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _assign(cfg: CN, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[leaf] = value


#: what a config may hold: a real one (detectron2's full dump with its aliases) is ~20 KB, ~1,000 nodes, 5 deep
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_NODES = 100_000  # counted with every alias expanded, as the config code walks them
MAX_CONFIG_DEPTH = 32


def bounded_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` of a config's text, refused before it is built when it is too big, too deep, recursive
    (``&a {X: *a}``) or an alias bomb (a few hundred bytes that expand to millions of keys): configs are
    untrusted (downloaded files, checkpoints, model metadata). The text is parsed once: the node graph is
    measured, then built."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where} is {len(text)} characters; a config holds at most {MAX_CONFIG_BYTES}")
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _measure(root, where)
        return loader.construct_document(root)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where} is not valid YAML: {first_line_of(e)}") from None
    finally:
        loader.dispose()


def _measure(root: yaml.Node, where: str) -> None:
    """Refuse a node graph that is recursive, or that expanded (every alias in place) holds more than
    ``MAX_CONFIG_NODES`` values or nests deeper than ``MAX_CONFIG_DEPTH``. Each node is measured once (its
    expanded size and height), so an alias bomb costs its own size, not its expansion."""
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels) of its expansion
    path: set[int] = set()

    def measure(node: yaml.Node, depth: int) -> tuple[int, int]:
        if id(node) in path:
            raise ConfigError(f"{where} is recursive (an alias inside its own anchor)")
        if id(node) not in measured:
            if depth > MAX_CONFIG_DEPTH:
                raise ConfigError(f"{where} nests deeper than {MAX_CONFIG_DEPTH} levels")
            children: list[yaml.Node] = []
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            path.add(id(node))
            below = [measure(c, depth + 1) for c in children]
            path.discard(id(node))
            measured[id(node)] = (1 + sum(v for v, _ in below), 1 + max((h for _, h in below), default=0))
        values, levels = measured[id(node)]
        if values > MAX_CONFIG_NODES:
            raise ConfigError(f"{where} expands to more than {MAX_CONFIG_NODES} values (aliases expanded)")
        if depth + levels - 1 > MAX_CONFIG_DEPTH:  # reached again through an alias, deeper than first
            raise ConfigError(f"{where} nests deeper than {MAX_CONFIG_DEPTH} levels")
        return values, levels

    measure(root, 0)


def first_line_of(error: Exception) -> str:
    return " ".join(str(error).split())[:300]


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML config file's top-level mapping, or a ConfigError saying why it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file {path} is {path.stat().st_size} bytes; a config holds at most {MAX_CONFIG_BYTES}"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not text (not UTF-8): is it the weights file?") from None
    data = bounded_yaml(text, f"config file {path}") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def merge_from_file(cfg: CN, path: str | Path) -> None:
    _merge_dict(cfg, read_yaml_mapping(path), str(path))


def merge_from_list(cfg: CN, opts: Sequence[str]) -> None:
    """Apply trailing ``KEY VALUE`` pairs, as maskrcnn-benchmark's ``train_net.py`` does."""
    if len(opts) % 2:
        raise ConfigError(f"overrides come as KEY VALUE pairs; {opts[-1]!r} has no value")
    valid = _all_keys(cfg)
    for key, raw in zip(opts[0::2], opts[1::2]):
        node = _lookup(cfg, key)
        if node is _MISSING or isinstance(node, CN):
            raise _unknown_key_error(key, valid, "the command line")
        _assign(cfg, key, _coerce(key, _parse_literal(raw), node, "the command line"))


def load_config(config_file: str | Path | None = None, opts: Sequence[str] = ()) -> CN:
    """Defaults, then the YAML file, then the overrides; the result is frozen."""
    cfg = get_default_config()
    if config_file:
        merge_from_file(cfg, config_file)
    merge_from_list(cfg, list(opts))
    validate(cfg)
    cfg.freeze()
    return cfg


_CONV_BODIES = ("R-50-FPN", "R-101-FPN", "R-18-FPN", "MNV3-FPN")
#: keys whose value is one of a few names
#: cell anchor rounding styles (trainer.conventions.cell_anchors)
ANCHOR_STYLES = ("torchvision", "detectron", "detectron2")
_CHOICES = {
    "MODEL.SOURCE": ("", "maskrcnn-benchmark", "detectron2"),
    "MODEL.RPN.ANCHOR_STYLE": ANCHOR_STYLES,
    "INPUT.RESIZE": RESIZE_MODES,
    "TEST.OUTPUT_CONVENTION": OUTPUT_CONVENTIONS,
}
_NORMS = ("FrozenBN", "BN", "GN")


def validate(cfg: CN) -> None:
    """Cross-key checks a type check cannot make."""
    if cfg.MODEL.BACKBONE.CONV_BODY not in _CONV_BODIES:
        raise ConfigError(
            f"MODEL.BACKBONE.CONV_BODY {cfg.MODEL.BACKBONE.CONV_BODY!r} is not one of {', '.join(_CONV_BODIES)}"
        )
    if cfg.MODEL.BACKBONE.NORM not in _NORMS:
        raise ConfigError(
            f"MODEL.BACKBONE.NORM {cfg.MODEL.BACKBONE.NORM!r} is not one of {', '.join(_NORMS)}"
        )
    width = cfg.MODEL.BACKBONE.BASE_WIDTH
    if width != 64 and (width < 1 or not cfg.MODEL.BACKBONE.CONV_BODY.startswith("R-")):
        raise ConfigError(
            f"MODEL.BACKBONE.BASE_WIDTH must be positive and only applies to ResNets; got "
            f"{width} with MODEL.BACKBONE.CONV_BODY {cfg.MODEL.BACKBONE.CONV_BODY!r}"
        )
    if cfg.MODEL.BACKBONE.HEAD_NORM not in ("", "GN"):
        raise ConfigError(
            f"MODEL.BACKBONE.HEAD_NORM must be '' or 'GN', not {cfg.MODEL.BACKBONE.HEAD_NORM!r}"
        )
    if cfg.MODEL.ROI_HEADS.NUM_CLASSES < 2:
        raise ConfigError("MODEL.ROI_HEADS.NUM_CLASSES counts the background too; it must be at least 2")
    if list(cfg.SOLVER.STEPS) != sorted(cfg.SOLVER.STEPS):
        raise ConfigError(f"SOLVER.STEPS must increase, got {tuple(cfg.SOLVER.STEPS)}")
    if cfg.SOLVER.OPTIMIZER not in ("SGD", "AdamW"):
        raise ConfigError(f"SOLVER.OPTIMIZER must be 'SGD' or 'AdamW', not {cfg.SOLVER.OPTIMIZER!r}")
    if cfg.SOLVER.LR_SCHEDULER_NAME not in ("WarmupMultiStepLR", "WarmupCosineLR"):
        raise ConfigError(
            "SOLVER.LR_SCHEDULER_NAME must be 'WarmupMultiStepLR' or 'WarmupCosineLR', "
            f"not {cfg.SOLVER.LR_SCHEDULER_NAME!r}"
        )
    if cfg.SOLVER.WARMUP_METHOD not in ("linear", "constant"):
        raise ConfigError(
            f"SOLVER.WARMUP_METHOD must be 'linear' or 'constant', not {cfg.SOLVER.WARMUP_METHOD!r}"
        )
    if len(cfg.INPUT.PIXEL_MEAN) != 3 or len(cfg.INPUT.PIXEL_STD) != 3:
        raise ConfigError("INPUT.PIXEL_MEAN and INPUT.PIXEL_STD need 3 values (R, G, B)")
    for key, choices in _CHOICES.items():
        value = _lookup(cfg, key)
        if value not in choices:
            raise ConfigError(f"{key} {value!r} is not one of {', '.join(repr(c) for c in choices)}")
    rpn = cfg.MODEL.RPN
    if cfg.MODEL.BACKBONE.STRIDE_IN_1X1 and cfg.MODEL.BACKBONE.CONV_BODY not in ("R-50-FPN", "R-101-FPN"):
        raise ConfigError(
            "MODEL.BACKBONE.STRIDE_IN_1X1 applies to bottleneck ResNets (R-50-FPN, R-101-FPN), not "
            f"{cfg.MODEL.BACKBONE.CONV_BODY!r}"
        )
    if len(cfg.MODEL.ROI_HEADS.BBOX_REG_WEIGHTS) != 4:
        raise ConfigError(
            f"MODEL.ROI_HEADS.BBOX_REG_WEIGHTS needs 4 values, got {cfg.MODEL.ROI_HEADS.BBOX_REG_WEIGHTS}"
        )
    strides = tuple(rpn.ANCHOR_STRIDE)
    if any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in strides):
        raise ConfigError(f"MODEL.RPN.ANCHOR_STRIDE holds positive integers, got {strides}")
    if strides and cfg.MODEL.BACKBONE.CONV_BODY.startswith("R-") and len(strides) != 5:
        raise ConfigError(f"MODEL.RPN.ANCHOR_STRIDE needs one stride per RPN level (5: P2-P6), got {strides}")
    if rpn.ANCHOR_STYLE == "detectron" and not strides:
        raise ConfigError(
            "MODEL.RPN.ANCHOR_STYLE 'detectron' needs MODEL.RPN.ANCHOR_STRIDE (its base box is the stride)"
        )
    if cfg.MODEL.BACKBONE.STEM_WIDTH < 0:
        raise ConfigError(f"MODEL.BACKBONE.STEM_WIDTH must be >= 0, got {cfg.MODEL.BACKBONE.STEM_WIDTH}")
    if cfg.SOLVER.IMS_PER_BATCH < 1 or cfg.TEST.IMS_PER_BATCH < 1:
        raise ConfigError("SOLVER.IMS_PER_BATCH and TEST.IMS_PER_BATCH must be at least 1")


def config_to_yaml(cfg: CN) -> str:
    return cfg.dump()


def config_from_yaml_text(text: str) -> CN:
    """Rebuild a config saved in a checkpoint or ONNX metadata, tolerating keys newer versions dropped."""
    cfg = get_default_config()
    data = bounded_yaml(text, "the saved config") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"the saved config must hold a mapping of keys, not {type(data).__name__}")
    _merge_known(cfg, data)
    validate(cfg)
    cfg.freeze()
    return cfg


def _merge_known(cfg: CN, data: dict[str, Any], prefix: str = "") -> None:
    for k, v in data.items():
        full = f"{prefix}{k}"
        node = _lookup(cfg, full)
        if node is _MISSING:
            continue
        if isinstance(node, CN) and isinstance(v, dict):
            _merge_known(cfg, v, full + ".")
        elif not isinstance(node, CN):
            _assign(cfg, full, _coerce(full, v, node, "a saved config"))
