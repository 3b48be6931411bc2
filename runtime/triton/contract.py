"""The Triton model repository's contract in code: model and tensor names, parameter keys, data types.

``exporter.triton_repository`` writes repositories to it; the Python-backend steps
(``runtime.triton.python_model``), the Triton backend of the Predictor and ``runtime.triton.serve_bench`` read them
through it. The network's own tensors keep the ONNX contract's names (``runtime.onnx_contract``); only what
the ONNX contract has no name for (the encoded image, the original image size, the step names, the
parameter keys) is named here. numpy only: it runs inside the Triton Python backend's interpreter.

A repository exported with ``--model-name maskrcnn`` holds four models::

    maskrcnn               ensemble: image (encoded bytes) -> boxes, scores, labels[, masks][, keypoints]
    maskrcnn_preprocess    Python: decode + runtime.preprocess -> images, image_sizes, original_sizes
    maskrcnn_model         the network (ONNX Runtime in Python, onnxruntime_onnx or tensorrt_plan):
                           images, image_sizes -> the ONNX contract's outputs
    maskrcnn_postprocess   Python: runtime.postprocess (undo the resize, paste masks) -> detections in pixels
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from runtime import onnx_contract as contract
from runtime.image_io import DEFAULT_MAX_PIXELS
from runtime.onnx_contract import ModelInfo

DEFAULT_MODEL_NAME = "maskrcnn"

# --- tensors the ONNX contract has no name for ---------------------------------------------------------
INPUT_ENCODED_IMAGE = "image"  # BYTES [1, 1]: one encoded image file (PNG, JPEG, ...) per request
ORIGINAL_SIZES = "original_sizes"  # INT64 [B, 2]: (h, w) of each decoded image, for post-processing
OUTPUT_KEYPOINTS = "keypoints"  # FP32 [1, N, NK, 3]: (x, y, score) in image pixels (Keypoint R-CNN)
#: with box masks (the default): each detection's mask region, INT32 [1, N, 4] (x0, y0, x1, y1), and
#: ``masks`` UINT8 [1, S] the regions' pixels one after the other (:func:`pack_masks`)
OUTPUT_MASK_BOXES = "mask_boxes"
#: "box": masks cut to the region where they are non-zero (bounded by the boxes, not by the image: a 40 MP
#: photo with 100 detections would send 4 GB of full masks); "full": [1, N, H, W] as the image
MASK_FORMATS: tuple[str, ...] = ("box", "full")
DEFAULT_MASK_FORMAT = "box"
#: the ensemble's outputs, in image pixels, N = detections above the confidence threshold: boxes FP32
#: [1, N, 4], scores FP32 [1, N], labels INT64 [1, N], masks UINT8 [1, N, H, W] (0/1, probability >
#: the mask threshold), keypoints as above
ENSEMBLE_OUTPUTS: tuple[str, ...] = (
    contract.OUTPUT_BOXES,
    contract.OUTPUT_SCORES,
    contract.OUTPUT_LABELS,
    contract.OUTPUT_MASKS,
    OUTPUT_MASK_BOXES,
    OUTPUT_KEYPOINTS,
)
#: numpy dtype and per-request dims (-1: variable) of each ensemble output
ENSEMBLE_OUTPUT_SPECS: dict[str, tuple[str, tuple[int, ...]]] = {
    contract.OUTPUT_BOXES: ("float32", (-1, 4)),
    contract.OUTPUT_SCORES: ("float32", (-1,)),
    contract.OUTPUT_LABELS: ("int64", (-1,)),
    contract.OUTPUT_MASKS: ("uint8", (-1, -1, -1)),
    OUTPUT_MASK_BOXES: ("int32", (-1, 4)),
    OUTPUT_KEYPOINTS: ("float32", (-1, -1, 3)),
}

# --- model config ``parameters`` keys (besides the ONNX contract's metadata keys) ---------------------
#: which step a Python-backend model is: one model.py file serves all of them
PARAM_STEP = "mrd_step"
PARAM_MASK_FORMAT = "mrd_mask_format"  # one of MASK_FORMATS
STEP_PREPROCESS, STEP_MODEL, STEP_POSTPROCESS = "preprocess", "model", "postprocess"
STEPS: tuple[str, ...] = (STEP_PREPROCESS, STEP_MODEL, STEP_POSTPROCESS)
#: the directory holding the ``runtime`` package at export, tried when ``runtime`` is not installed where
#: the Python backend runs (model.py spells it out: it is read before ``runtime`` can be imported)
PARAM_RUNTIME_PATH = "mrd_runtime_path"
PARAM_MODEL_FILE = "mrd_model_file"  # the ONNX file of the Python model step, in its version directory
PARAM_THREADS = "mrd_threads"  # ONNX Runtime intra-op threads of one instance (0: its default)
PARAM_CONFIDENCE_THRESHOLD = "mrd_confidence_threshold"  # detections below are dropped before pasting
PARAM_MASK_THRESHOLD = "mrd_mask_threshold"  # mask probability above which a pixel is in the mask
PARAM_MAX_IMAGE_PIXELS = "mrd_max_image_pixels"  # larger images are refused before they are decoded

DEFAULT_MASK_THRESHOLD = 0.5  # what COCO evaluation and drawing threshold mask probabilities at
DEFAULT_MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS  # runtime.image_io's, for every reader

#: numpy dtype name -> Triton wire data type (clients) ; config data type is "TYPE_" + it, but BYTES
TRITON_DATATYPES: dict[str, str] = {
    "float32": "FP32",
    "float16": "FP16",
    "int64": "INT64",
    "int32": "INT32",
    "uint8": "UINT8",
    "bool": "BOOL",
    "object": "BYTES",
}


def wire_datatype(dtype: Any) -> str:
    """numpy dtype -> the data type a Triton client names (``FP32``, ``INT64``, ``BYTES`` ...)."""
    name = np.dtype(dtype).name
    if name not in TRITON_DATATYPES:
        raise ValueError(f"no Triton data type for numpy {name}")
    return TRITON_DATATYPES[name]


def config_datatype(dtype: Any) -> str:
    """numpy dtype -> the ``data_type`` of a config.pbtxt (``TYPE_FP32``; BYTES is ``TYPE_STRING``)."""
    wire = wire_datatype(dtype)
    return "TYPE_STRING" if wire == "BYTES" else f"TYPE_{wire}"


@dataclass(frozen=True)
class StepNames:
    """The names of one exported detector's models in a repository."""

    ensemble: str
    preprocess: str
    model: str
    postprocess: str

    @classmethod
    def of(cls, base: str = DEFAULT_MODEL_NAME) -> StepNames:
        return cls(base, f"{base}_{STEP_PREPROCESS}", f"{base}_{STEP_MODEL}", f"{base}_{STEP_POSTPROCESS}")


def info_parameters(info: ModelInfo) -> dict[str, str]:
    """The model's :class:`ModelInfo` as config ``parameters`` (the ONNX metadata, less the source config,
    which the model file keeps), so a client builds the same ModelInfo from the server."""
    props = contract.metadata_dict(info)
    props.pop(contract.META_CONFIG, None)
    return props


def info_from_parameters(params: Mapping[str, str], max_batch: int | None, source: str) -> ModelInfo:
    """:class:`ModelInfo` from a step's config parameters; ``max_batch`` is the config's max_batch_size."""
    metadata = {k: v for k, v in params.items() if not k.startswith("mrd_")}
    info = contract.model_info_from_metadata(metadata, source)
    return replace(info, max_batch=max_batch or None)


def config_parameters(model_config: Mapping[str, Any]) -> dict[str, str]:
    """``parameters`` of a model config as Triton hands it over (JSON: ``{key: {"string_value": v}}``)
    or as the HTTP/gRPC clients return it, as a plain ``{key: value}`` dict."""
    raw = model_config.get("parameters") or {}
    out = {}
    for key, value in raw.items():
        out[str(key)] = str(value.get("string_value", "")) if isinstance(value, Mapping) else str(value)
    return out


def parse_model_config(text_or_dict: str | Mapping[str, Any]) -> dict[str, Any]:
    """The JSON model config Triton passes to a Python model's ``initialize`` (``args["model_config"]``)."""
    if isinstance(text_or_dict, str):
        parsed: dict[str, Any] = json.loads(text_or_dict)
        return parsed
    return dict(text_or_dict)


def pack_masks(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full 0/1 masks [N, H, W] as (pixels [S] uint8, regions [N, 4] int32 x0, y0, x1, y1): each mask cut to
    the rectangle around its non-zero pixels (empty: 0, 0, 0, 0), so :func:`unpack_masks` gives them back
    exactly."""
    masks = np.asarray(masks)
    regions = np.zeros((masks.shape[0], 4), np.int32)
    parts = []
    for i, mask in enumerate(masks):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size:
            y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            regions[i] = (x0, y0, x1, y1)
            parts.append(np.ascontiguousarray(mask[y0:y1, x0:x1], np.uint8).reshape(-1))
    pixels = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
    return pixels, regions


def unpack_masks(pixels: np.ndarray, regions: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """The full masks [N, H, W] uint8 of :func:`pack_masks`' output; ValueError when the regions do not fit
    the image or the pixels (a response of another model, or corrupted)."""
    h, w = int(image_size[0]), int(image_size[1])
    regions = np.asarray(regions, np.int64).reshape(-1, 4)
    pixels = np.asarray(pixels, np.uint8).reshape(-1)
    out = np.zeros((len(regions), h, w), np.uint8)
    at = 0
    for i, (x0, y0, x1, y1) in enumerate(regions.tolist()):
        if not (0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h):
            raise ValueError(f"mask region {i} ({x0}, {y0}, {x1}, {y1}) lies outside the {w}x{h} image")
        size = (y1 - y0) * (x1 - x0)
        if at + size > pixels.size:
            raise ValueError(f"mask regions need more than the {pixels.size} mask pixels sent")
        out[i, y0:y1, x0:x1] = pixels[at : at + size].reshape(y1 - y0, x1 - x0)
        at += size
    if at != pixels.size:
        raise ValueError(f"{pixels.size - at} mask pixels belong to no region")
    return out
