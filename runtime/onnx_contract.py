"""The ONNX contract in code: tensor names, metadata keys, and reading both back (numpy only).

The exporter writes models to this contract and every backend reads them through it, so a name or a
metadata key exists in one place. It must stay importable without torch (``runtime`` is what gets deployed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from runtime.postprocess import OUTPUT_CONVENTIONS, OUTPUT_TORCHVISION, heatmaps_to_keypoints
from runtime.preprocess import PreprocessParams
from runtime.structures import RawDetections

INPUT_IMAGES = "images"  # float32 [B, 3, H, W], normalized and padded
INPUT_IMAGE_SIZES = "image_sizes"  # int64 [B, 2], (h, w) of each resized image before padding
INPUT_NAMES: tuple[str, ...] = (INPUT_IMAGES, INPUT_IMAGE_SIZES)

OUTPUT_NUM_DETECTIONS = "num_detections"  # int64 [B]
OUTPUT_BOXES = "boxes"  # float32 [B, K, 4], x1 y1 x2 y2 in network-input pixels; padding 0
OUTPUT_SCORES = "scores"  # float32 [B, K], descending; padding 0
OUTPUT_LABELS = "labels"  # int64 [B, K], 1-based class ids; padding -1
OUTPUT_MASKS = "masks"  # float32 [B, K, M, M] mask probabilities (Mask R-CNN only); padding 0
#: float32 [B, K, NK, S, S] keypoint logits per box (Keypoint R-CNN only); padding 0. The graph stops here
#: (decoding resizes each heatmap to its box: data-dependent shapes); ``outputs_to_raw`` decodes them into
#: RawDetections.keypoints [N, NK, 3] (x, y, score) in network-input pixels with runtime.postprocess
OUTPUT_KEYPOINT_HEATMAPS = "keypoint_heatmaps"
DETECTION_OUTPUTS: tuple[str, ...] = (OUTPUT_NUM_DETECTIONS, OUTPUT_BOXES, OUTPUT_SCORES, OUTPUT_LABELS)

#: label value of the padding slots past ``num_detections``
PADDING_LABEL = -1

FLAVORS: tuple[str, ...] = ("ort", "trt")

# metadata_props keys (values are strings; JSON where structured)
META_CLASS_NAMES = "class_names"  # JSON list, index 0 is the background
META_PREPROCESS = "preprocess"  # JSON of PreprocessParams.to_dict()
META_OPSET = "opset"
META_FLAVOR = "flavor"
META_CONFIG = "config"  # the source config, yacs YAML
META_DETECTIONS_PER_IMAGE = "detections_per_image"
META_MASK_SIZE = "mask_size"  # absent for models without masks
META_KEYPOINT_NAMES = "keypoint_names"  # JSON list, absent for models without keypoints
META_STATIC_SIZE = "static_size"  # JSON [H, W], absent when H and W are dynamic
META_BATCH = "batch"  # fixed batch size, absent when the batch is dynamic
META_PRODUCER = "producer"  # "maskrcnn-deploy exporter" + versions, for bug reports
META_PRECISION = "precision"  # one of PRECISIONS; absent means fp32 (an export before precision passes)
META_CALIBRATION = "calibration"  # INT8: JSON of the calibration source, method and cache
META_INT8_ACTIVATIONS = "int8_activations"  # INT8: "uint8-asymmetric" (ort) or "int8-symmetric" (trt)
#: INT8: "7" (weights in [-64, 64], exact on every x86 CPU: runtime.cpu_features) or "8"; absent means 8
META_INT8_WEIGHT_BITS = "int8_weight_bits"
#: FP16/INT8 built from a precision plan: JSON of the plan (the parts kept FP32, how it was chosen and what it
#: measured), from which ``--fp32-parts`` rebuilds the same model (exporter.precision_plan)
META_PRECISION_PLAN = "precision_plan"
#: how outputs are finished on the host, one of runtime.postprocess.OUTPUT_CONVENTIONS; absent means
#: "torchvision" (every export before detectron2 imports)
META_OUTPUT_CONVENTION = "output_convention"

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")


def metadata_props(model: Any) -> dict[str, str]:
    """The ``metadata_props`` of an ``onnx.ModelProto`` as a dict (the one reader of raw props)."""
    return {p.key: p.value for p in model.metadata_props}


def set_metadata_props(model: Any, props: Mapping[str, str]) -> None:
    """Replace the ``metadata_props`` of an ``onnx.ModelProto`` with ``props`` (the one writer)."""
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = str(key), str(value)


def update_metadata_props(model: Any, updates: Mapping[str, str]) -> None:
    """Set some keys of a model's ``metadata_props``, keeping the others and their order."""
    set_metadata_props(model, {**metadata_props(model), **updates})


class ContractError(ValueError):
    """A model or its outputs don't follow the ONNX contract; the message says which part."""


# --- the engine sidecar's own keys (build facts), beside the metadata keys above -----------------------
SIDECAR_TENSORRT_VERSION = "tensorrt_version"
SIDECAR_GPU = "gpu"
SIDECAR_COMPUTE_CAPABILITY = "compute_capability"  # "8.6"
SIDECAR_ONNX_SHA256 = "onnx_sha256"
SIDECAR_PROFILE = "profile"  # {"images": {"min": [...], "opt": [...], "max": [...]}, ...}
SIDECAR_PLUGIN_LIBRARY = "plugin_library"

#: metadata values that are JSON in ``metadata_props`` (strings there, typed in the sidecar)
_JSON_KEYS = (META_CLASS_NAMES, META_PREPROCESS, META_KEYPOINT_NAMES, META_STATIC_SIZE)
_INT_KEYS = (META_OPSET, META_DETECTIONS_PER_IMAGE, META_MASK_SIZE, META_BATCH)
_REQUIRED_KEYS = (META_CLASS_NAMES, META_PREPROCESS, META_FLAVOR, META_OPSET, META_DETECTIONS_PER_IMAGE)
_KNOWN_KEYS = frozenset(
    (
        *_REQUIRED_KEYS,
        META_CONFIG,
        META_MASK_SIZE,
        META_KEYPOINT_NAMES,
        META_STATIC_SIZE,
        META_BATCH,
        META_PRECISION,
        META_OUTPUT_CONVENTION,
    )
)


@dataclass(frozen=True)
class ModelInfo:
    """What every consumer of a deployed model needs to know about it, whatever the file format.

    The exporter writes it into the ONNX metadata (:func:`metadata_dict`), the engine build copies that
    into the sidecar (:func:`sidecar_dict`), and every backend reads it back through
    :func:`model_info_from_metadata` / :func:`model_info_from_sidecar` or builds it from a checkpoint.
    ``static_input_size`` is set for models built for one canvas: pre-processing then pads every batch
    to it. ``batch`` is the file's fixed batch (None: dynamic); ``max_batch`` bounds what one ``infer``
    call takes (a fixed batch, an engine profile's maximum; None: any size). ``output_convention`` says
    how ``runtime.postprocess`` finishes the outputs: "torchvision", "maskrcnn-benchmark" (torchvision's,
    with OpenCV's bicubic keypoint decoding) or "detectron2" (clip and drop empty boxes, grid_sample mask
    pasting).
    """

    class_names: tuple[str, ...]  # index 0 is "__background__"
    preprocess: PreprocessParams
    detections_per_image: int | None = None
    mask_size: int | None = None  # M of the M x M mask probabilities, None without a mask head
    keypoint_names: tuple[str, ...] | None = None
    precision: str = "fp32"
    flavor: str | None = None  # ONNX flavor ("ort" / "trt") where the file says
    opset: int | None = None
    config_yaml: str = ""
    static_input_size: tuple[int, int] | None = None
    batch: int | None = None
    max_batch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # other metadata, build facts
    output_convention: str = OUTPUT_TORCHVISION

    def __post_init__(self) -> None:
        if self.output_convention not in OUTPUT_CONVENTIONS:
            raise ValueError(
                f"unknown output convention {self.output_convention!r}; expected one of "
                f"{', '.join(OUTPUT_CONVENTIONS)}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_masks(self) -> bool:
        return self.mask_size is not None

    @property
    def has_keypoints(self) -> bool:
        return self.keypoint_names is not None

    def with_min_size(self, min_size: int | None) -> ModelInfo:
        """The same model fed a different short side (``--min-image-size``); max_size is kept."""
        if min_size is None:
            return self
        return replace(self, preprocess=replace(self.preprocess, min_size=int(min_size)))


def metadata_dict(info: ModelInfo) -> dict[str, str]:
    """``ModelInfo`` as the string key/value pairs stored in ``metadata_props`` (the one writer).

    ``precision`` is written only when it is not fp32, ``output_convention`` only when it is not
    torchvision: exports from before either existed were without them.
    """
    if info.flavor is None or info.opset is None or info.detections_per_image is None:
        raise ContractError("an exported model needs its flavor, opset and detections per image")
    typed: dict[str, Any] = {
        META_CLASS_NAMES: list(info.class_names),
        META_PREPROCESS: info.preprocess.to_dict(),
        META_OPSET: info.opset,
        META_FLAVOR: info.flavor,
        META_CONFIG: info.config_yaml,
        META_DETECTIONS_PER_IMAGE: info.detections_per_image,
        META_MASK_SIZE: info.mask_size,
        META_KEYPOINT_NAMES: None if info.keypoint_names is None else list(info.keypoint_names),
        META_STATIC_SIZE: None if info.static_input_size is None else list(info.static_input_size),
        META_BATCH: info.batch,
        META_PRECISION: None if info.precision == "fp32" else info.precision,
        META_OUTPUT_CONVENTION: (
            None if info.output_convention == OUTPUT_TORCHVISION else info.output_convention
        ),
    }
    props = string_metadata({k: v for k, v in typed.items() if v is not None})
    props.update({k: str(v) for k, v in info.extra.items()})
    return props


def string_metadata(typed: Mapping[str, Any]) -> dict[str, str]:
    """Typed metadata (the sidecar's JSON values) -> ``metadata_props`` strings."""
    out = {}
    for key, value in typed.items():
        if key in _JSON_KEYS:
            out[key] = json.dumps([int(v) for v in value] if key == META_STATIC_SIZE else value)
        elif key in _INT_KEYS:
            out[key] = str(int(value))
        else:
            out[key] = str(value)
    return out


def typed_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """``metadata_props`` strings -> JSON-typed values (what the engine sidecar stores)."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        if key in _JSON_KEYS:
            out[key] = json.loads(value)
        elif key in _INT_KEYS:
            out[key] = int(value)
        else:
            out[key] = value
    return out


def model_info_from_metadata(props: Mapping[str, str], source: str = "the model") -> ModelInfo:
    """Parse ``metadata_props`` (the one reader); a missing or malformed key raises :class:`ContractError`."""
    missing = [k for k in _REQUIRED_KEYS if k not in props]
    if missing:
        raise ContractError(
            f"{source} lacks metadata {', '.join(missing)}: it was not exported by `python -m exporter` "
            "(or its metadata was stripped); re-export it"
        )
    try:
        v = typed_metadata(props)
        static = v.get(META_STATIC_SIZE)
        keypoints = v.get(META_KEYPOINT_NAMES)
        precision = str(v.get(META_PRECISION, "fp32"))
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}")
        output_convention = str(v.get(META_OUTPUT_CONVENTION, OUTPUT_TORCHVISION))
        return ModelInfo(
            class_names=tuple(str(n) for n in v[META_CLASS_NAMES]),
            preprocess=PreprocessParams.from_dict(v[META_PREPROCESS]),
            detections_per_image=int(v[META_DETECTIONS_PER_IMAGE]),
            mask_size=v.get(META_MASK_SIZE),
            keypoint_names=None if keypoints is None else tuple(str(n) for n in keypoints),
            precision=precision,
            flavor=str(v[META_FLAVOR]),
            opset=int(v[META_OPSET]),
            config_yaml=str(v.get(META_CONFIG, "")),
            static_input_size=(int(static[0]), int(static[1])) if static else None,
            batch=v.get(META_BATCH),
            max_batch=v.get(META_BATCH),
            extra={k: val for k, val in props.items() if k not in _KNOWN_KEYS},
            output_convention=output_convention,
        )
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise ContractError(f"{source} has malformed metadata: {e}") from None


def sidecar_dict(props: Mapping[str, str], build: Mapping[str, Any]) -> dict[str, Any]:
    """An engine sidecar: the ONNX ``metadata_props`` JSON-typed, ``precision`` always, plus build facts."""
    data = typed_metadata(props)
    data.setdefault(META_PRECISION, "fp32")
    data.update(build)
    return data


def model_info_from_sidecar(data: Mapping[str, Any], source: str = "the engine") -> ModelInfo:
    """Parse an engine sidecar: its metadata keys as in the ONNX, build facts kept in ``extra``."""
    metadata = {k: v for k, v in data.items() if k in _KNOWN_KEYS}
    try:
        info = model_info_from_metadata(string_metadata(metadata), f"{source}'s sidecar")
    except (ValueError, TypeError) as e:
        raise ContractError(f"{source}'s sidecar has a malformed entry: {e}") from None
    return replace(info, extra={k: v for k, v in data.items() if k not in _KNOWN_KEYS})


def read_metadata(model: str | Path | Any) -> ModelInfo:
    """:class:`ModelInfo` of an ONNX file (read without its weights) or of an ``onnxruntime.InferenceSession``."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise ContractError(f"ONNX model not found: {path}")
        import onnx  # deferred: only this path needs the onnx package

        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # onnx raises DecodeError and others for foreign files
            raise ContractError(f"{path} is not a readable ONNX model: {e}") from None
        props = metadata_props(proto)
        return model_info_from_metadata(props, str(path))
    meta = getattr(model, "get_modelmeta", None)
    if meta is None:
        raise TypeError(
            f"expected an ONNX path or an onnxruntime.InferenceSession, got {type(model).__name__}"
        )
    return model_info_from_metadata(dict(meta().custom_metadata_map), "the ONNX Runtime session's model")


def outputs_to_raw(
    outputs: Mapping[str, np.ndarray], output_convention: str = OUTPUT_TORCHVISION
) -> list[RawDetections]:
    """Contract outputs of one batch -> per-image :class:`RawDetections`, padding removed, keypoints decoded
    (in the model's ``output_convention``)."""
    missing = [k for k in DETECTION_OUTPUTS if k not in outputs]
    if missing:
        raise ContractError(f"model outputs lack {', '.join(missing)}; got {', '.join(outputs)}")
    num = np.asarray(outputs[OUTPUT_NUM_DETECTIONS]).reshape(-1)
    boxes = np.asarray(outputs[OUTPUT_BOXES])
    scores = np.asarray(outputs[OUTPUT_SCORES])
    labels = np.asarray(outputs[OUTPUT_LABELS])
    masks = outputs.get(OUTPUT_MASKS)
    heatmaps = outputs.get(OUTPUT_KEYPOINT_HEATMAPS)
    capacity = boxes.shape[1]
    if num.max(initial=0) > capacity or num.min(initial=0) < 0:
        raise ContractError(f"num_detections {num.tolist()} outside [0, {capacity}]")
    result = []
    for b, n in enumerate(num.tolist()):
        result.append(
            RawDetections(
                boxes=boxes[b, :n].astype(np.float32, copy=False),
                scores=scores[b, :n].astype(np.float32, copy=False),
                labels=labels[b, :n].astype(np.int64, copy=False),
                masks=None if masks is None else np.asarray(masks[b, :n], np.float32),
                keypoints=None
                if heatmaps is None
                else heatmaps_to_keypoints(heatmaps[b, :n], boxes[b, :n], output_convention),
            )
        )
    return result
