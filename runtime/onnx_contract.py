"""The ONNX contract in code: tensor names, metadata keys, and reading both back (numpy only).

The exporter writes models to this contract and every backend reads them through it, so a name or a
metadata key exists in one place. It must stay importable without torch (``runtime`` is what gets deployed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.postprocess import heatmaps_to_keypoints
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


class ContractError(ValueError):
    """A model or its outputs don't follow the ONNX contract; the message says which part."""


@dataclass(frozen=True)
class ModelInfo:
    """What a backend needs to know about an exported model, read from its metadata."""

    class_names: list[str]
    preprocess: PreprocessParams
    flavor: str
    opset: int
    detections_per_image: int
    config_yaml: str = ""
    mask_size: int | None = None
    keypoint_names: list[str] | None = None
    static_size: tuple[int, int] | None = None
    batch: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def has_masks(self) -> bool:
        return self.mask_size is not None

    @property
    def has_keypoints(self) -> bool:
        return self.keypoint_names is not None


def metadata_dict(info: ModelInfo) -> dict[str, str]:
    """``ModelInfo`` as the string key/value pairs stored in ``metadata_props``."""
    props = {
        META_CLASS_NAMES: json.dumps(list(info.class_names)),
        META_PREPROCESS: json.dumps(info.preprocess.to_dict()),
        META_OPSET: str(int(info.opset)),
        META_FLAVOR: info.flavor,
        META_CONFIG: info.config_yaml,
        META_DETECTIONS_PER_IMAGE: str(int(info.detections_per_image)),
    }
    if info.mask_size is not None:
        props[META_MASK_SIZE] = str(int(info.mask_size))
    if info.keypoint_names is not None:
        props[META_KEYPOINT_NAMES] = json.dumps(list(info.keypoint_names))
    if info.static_size is not None:
        props[META_STATIC_SIZE] = json.dumps([int(v) for v in info.static_size])
    if info.batch is not None:
        props[META_BATCH] = str(int(info.batch))
    props.update(info.extra)
    return props


def model_info_from_metadata(props: Mapping[str, str], source: str = "the model") -> ModelInfo:
    """Parse ``metadata_props``; a missing or malformed key raises :class:`ContractError` naming it."""
    required = (META_CLASS_NAMES, META_PREPROCESS, META_FLAVOR, META_OPSET, META_DETECTIONS_PER_IMAGE)
    missing = [k for k in required if k not in props]
    if missing:
        raise ContractError(
            f"{source} lacks metadata {', '.join(missing)}: it was not exported by `python -m exporter` "
            "(or its metadata was stripped); re-export it"
        )
    try:
        static = props.get(META_STATIC_SIZE)
        known = set(required) | {
            META_CONFIG,
            META_MASK_SIZE,
            META_KEYPOINT_NAMES,
            META_STATIC_SIZE,
            META_BATCH,
        }
        return ModelInfo(
            class_names=list(json.loads(props[META_CLASS_NAMES])),
            preprocess=PreprocessParams.from_dict(json.loads(props[META_PREPROCESS])),
            flavor=props[META_FLAVOR],
            opset=int(props[META_OPSET]),
            detections_per_image=int(props[META_DETECTIONS_PER_IMAGE]),
            config_yaml=props.get(META_CONFIG, ""),
            mask_size=int(props[META_MASK_SIZE]) if META_MASK_SIZE in props else None,
            keypoint_names=list(json.loads(props[META_KEYPOINT_NAMES]))
            if META_KEYPOINT_NAMES in props
            else None,
            static_size=tuple(int(v) for v in json.loads(static)) if static else None,  # type: ignore[arg-type]
            batch=int(props[META_BATCH]) if META_BATCH in props else None,
            extra={k: v for k, v in props.items() if k not in known},
        )
    except (ValueError, TypeError, KeyError) as e:
        raise ContractError(f"{source} has malformed metadata: {e}") from None


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
        props = {p.key: p.value for p in proto.metadata_props}
        return model_info_from_metadata(props, str(path))
    meta = getattr(model, "get_modelmeta", None)
    if meta is None:
        raise TypeError(
            f"expected an ONNX path or an onnxruntime.InferenceSession, got {type(model).__name__}"
        )
    return model_info_from_metadata(dict(meta().custom_metadata_map), "the ONNX Runtime session's model")


def outputs_to_raw(outputs: Mapping[str, np.ndarray]) -> list[RawDetections]:
    """Contract outputs of one batch -> per-image :class:`RawDetections`, padding removed, keypoints decoded."""
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
                keypoints=None if heatmaps is None else heatmaps_to_keypoints(heatmaps[b, :n], boxes[b, :n]),
            )
        )
    return result
