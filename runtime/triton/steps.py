"""What the Python-backend steps of an exported Triton repository compute, without Triton (numpy only).

``runtime/triton/python_model.py`` (the model.py of every Python step) only moves tensors between Triton
and these classes, so the steps are ``runtime``'s own pre-processing, ONNX Runtime backend and
post-processing, tested here like any other code:

- :class:`PreprocessStep`: encoded image bytes -> :func:`runtime.image_io.decode_image` ->
  :func:`runtime.preprocess.preprocess` -> the ONNX contract's inputs plus the original size;
- :class:`ModelStep`: the ONNX contract's inputs -> :class:`OnnxRuntimeBackend`'s session -> its outputs.
  The images of the requests that Triton's dynamic batcher groups run together when their own canvas
  (``runtime.canvas``) is the same, separately otherwise, so every image gets exactly the outputs it gets
  alone in the local runtime;
- :class:`PostprocessStep`: the contract's outputs -> :func:`runtime.onnx_contract.outputs_to_raw` ->
  :func:`runtime.postprocess.postprocess` -> detections in image pixels, masks thresholded to 0/1.

Each ``run`` takes the inputs of a list of requests and returns, per request, its outputs or the
:class:`StepInputError` to answer it with, so one bad request never fails the others of its batch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from runtime import onnx_contract as contract
from runtime.backends.base import first_line
from runtime.canvas import canvas_groups, largest_canvas, on_canvas
from runtime.image_io import ImageReadError, decode_image
from runtime.onnx_contract import ModelInfo
from runtime.postprocess import postprocess
from runtime.preprocess import preprocess, resized_size
from runtime.triton import contract as tc

Tensors = dict[str, np.ndarray]


class StepInputError(ValueError):
    """A request the step cannot answer (a corrupt image, inconsistent sizes); sent back as its error."""


class StepFailure(RuntimeError):
    """The step failed on this request for a reason of its own (a bug, a library error): answered as a server
    error for this request only, never for the others of its batch."""


def _failure(e: Exception) -> StepFailure:
    return StepFailure(f"{type(e).__name__}: {first_line(str(e))}")


def _answer(e: Exception) -> StepInputError | StepFailure:
    """What a request that raised ``e`` is answered with, holding no traceback. A raised exception's
    traceback keeps the frames that raised it alive, and with them the request's input arrays: views of
    the Python backend's shared memory. Kept in the list of answers, it is a reference cycle that only a
    garbage collection breaks, so every refused 108 MB canvas grew the step's shared memory by 108 MB
    (measured: 141 MB to 1664 MB after 8 such requests)."""
    return e.with_traceback(None) if isinstance(e, StepInputError) else _failure(e)


class Step:
    """One Python-backend step: the names of the inputs it reads, and ``run`` over a batch of requests."""

    input_names: tuple[str, ...] = ()

    def run(self, requests: Sequence[Mapping[str, np.ndarray]]) -> list[Tensors | StepInputError]:
        out: list[Tensors | StepInputError] = []
        for request in requests:
            try:
                out.append(self.run_one(request))
            except Exception as e:  # noqa: BLE001 (this request's failure, whatever it is, is its own)
                out.append(_answer(e))
        return out

    def run_one(self, request: Mapping[str, np.ndarray]) -> Tensors:
        raise NotImplementedError


class PreprocessStep(Step):
    """Decode one encoded image per request and pre-process it as the local runtime does."""

    input_names = (tc.INPUT_ENCODED_IMAGE,)

    def __init__(self, info: ModelInfo, max_pixels: int = tc.DEFAULT_MAX_IMAGE_PIXELS) -> None:
        self.info = info
        self.max_pixels = int(max_pixels)

    def run_one(self, request: Mapping[str, np.ndarray]) -> Tensors:
        encoded = np.asarray(request[tc.INPUT_ENCODED_IMAGE])
        if encoded.size != 1:
            raise StepInputError(
                f"{tc.INPUT_ENCODED_IMAGE}: send one encoded image per request (shape [1, 1]), got shape "
                f"{list(encoded.shape)}"
            )
        data = encoded.reshape(-1)[0]
        if not isinstance(data, (bytes, bytearray)):
            raise StepInputError(
                f"{tc.INPUT_ENCODED_IMAGE}: expected the bytes of an image file, got {type(data).__name__}"
            )
        try:
            image = decode_image(data, tc.INPUT_ENCODED_IMAGE, self.max_pixels)
            batch = preprocess([image], self.info.preprocess, pad_to=self.info.static_input_size)
        except (ImageReadError, ValueError) as e:
            raise StepInputError(str(e)) from None
        return {
            contract.INPUT_IMAGES: batch.images,
            contract.INPUT_IMAGE_SIZES: batch.image_sizes,
            tc.ORIGINAL_SIZES: batch.original_sizes,
        }


class ModelStep(Step):
    """The exported ONNX model under runtime's ONNX Runtime backend, over Triton's dynamic batches."""

    input_names = contract.INPUT_NAMES

    def __init__(self, model_path: str | os.PathLike[str], threads: int | None = None) -> None:
        from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend  # deferred: only this step

        self.backend = OnnxRuntimeBackend(model_path, threads=threads or None)
        self.output_names = [o.name for o in self.backend.session.get_outputs()]

    @property
    def info(self) -> ModelInfo:
        return self.backend.info

    def check(self, request: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(request[contract.INPUT_IMAGES])
        sizes = np.asarray(request[contract.INPUT_IMAGE_SIZES])
        if images.ndim != 4 or images.shape[1] != 3:
            raise StepInputError(f"{contract.INPUT_IMAGES}: expected [B, 3, H, W], got {list(images.shape)}")
        if sizes.shape != (images.shape[0], 2):
            raise StepInputError(
                f"{contract.INPUT_IMAGE_SIZES}: expected [{images.shape[0]}, 2] for {images.shape[0]} images, "
                f"got {list(sizes.shape)}"
            )
        h, w = images.shape[2:]
        limit = largest_canvas(self.info.preprocess, self.info.static_input_size)  # larger: refused, not run
        if h > limit[0] or w > limit[1]:  # (the batch is bounded by Triton: max_batch_size)
            raise StepInputError(
                f"{contract.INPUT_IMAGES}: a {h}x{w} canvas is beyond this model's largest, {limit[0]}x{limit[1]} "
                f"(its pre-processing resizes to at most {self.info.preprocess.max_size} pixels a side)"
            )
        if images.dtype != np.float32 or sizes.dtype.kind not in "iu":
            raise StepInputError(
                f"expected float32 {contract.INPUT_IMAGES} and integer {contract.INPUT_IMAGE_SIZES}, got "
                f"{images.dtype} and {sizes.dtype}"
            )
        bad = (sizes < 1) | (sizes > np.asarray([h, w]))
        if bad.any():
            raise StepInputError(
                f"{contract.INPUT_IMAGE_SIZES}: {sizes.tolist()} must lie in [1, {h}] x [1, {w}], the canvas "
                f"of {contract.INPUT_IMAGES}"
            )
        return np.ascontiguousarray(images, np.float32), np.ascontiguousarray(sizes, np.int64)

    def run(self, requests: Sequence[Mapping[str, np.ndarray]]) -> list[Tensors | StepInputError]:
        """Every image of every request runs in one call with the others of its own canvas
        (``runtime.canvas``), whatever canvas its request came on; outputs go back per request."""
        out: list[Tensors | StepInputError] = []
        # own canvas -> [(request, position in it, image on the canvas, size)]
        groups: dict[tuple[int, int], list[tuple[int, int, np.ndarray, np.ndarray]]] = {}
        counts: list[int] = []
        params, static = self.info.preprocess, self.info.static_input_size
        for r, request in enumerate(requests):
            try:
                images, sizes = self.check(request)
            except Exception as e:  # noqa: BLE001 (a bad request, or any other failure: its own)
                out.append(_answer(e))
                counts.append(0)
                continue
            out.append({})
            counts.append(len(images))
            for group in canvas_groups(sizes, params.size_divisibility, static):
                idx = list(group.indices)
                placed = on_canvas(images[idx], sizes[idx], group.canvas)
                members = groups.setdefault(group.canvas, [])
                members.extend((r, i, placed[k], sizes[i]) for k, i in enumerate(idx))
        per_image: dict[tuple[int, int], Tensors | StepFailure] = {}
        for members in groups.values():
            try:
                results = self.infer(np.stack([m[2] for m in members]), np.stack([m[3] for m in members]))
                for k, (r, i, _, _) in enumerate(members):
                    per_image[r, i] = {name: value[k : k + 1] for name, value in results.items()}
            except Exception as e:  # noqa: BLE001 (then image by image: only the one that fails fails)
                if len(members) == 1:
                    per_image[members[0][0], members[0][1]] = _failure(e)
                    continue
                for r, i, image, size in members:
                    try:
                        per_image[r, i] = self.infer(image[None], size[None])
                    except Exception as err:  # noqa: BLE001
                        per_image[r, i] = _failure(err)
        for r, n in enumerate(counts):
            if n:
                rows = [per_image[r, i] for i in range(n)]
                failed = next((row for row in rows if isinstance(row, StepFailure)), None)
                if failed is not None:
                    out[r] = failed
                    continue
                out[r] = {name: np.concatenate([row[name] for row in rows]) for name in rows[0]}  # type: ignore[index]
        return out

    def infer(self, images: np.ndarray, sizes: np.ndarray) -> Tensors:
        feeds = {contract.INPUT_IMAGES: images, contract.INPUT_IMAGE_SIZES: sizes}
        values = self.backend.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, values))


class PostprocessStep(Step):
    """Detections of one image in its own pixels, as ``runtime.postprocess`` finishes them locally."""

    input_names = (*contract.DETECTION_OUTPUTS, contract.INPUT_IMAGE_SIZES, tc.ORIGINAL_SIZES)

    def __init__(
        self,
        info: ModelInfo,
        confidence_threshold: float = 0.0,
        mask_threshold: float = tc.DEFAULT_MASK_THRESHOLD,
        max_pixels: int = tc.DEFAULT_MAX_IMAGE_PIXELS,
        mask_format: str = "full",
    ) -> None:
        if mask_format not in tc.MASK_FORMATS:
            raise ValueError(f"mask format {mask_format!r} is not one of {', '.join(tc.MASK_FORMATS)}")
        self.info = info
        self.max_pixels = int(max_pixels)
        self.mask_format = mask_format
        self.confidence_threshold = float(confidence_threshold)
        self.mask_threshold = float(mask_threshold)
        names = list(self.input_names)
        if info.has_masks:
            names.append(contract.OUTPUT_MASKS)
        if info.has_keypoints:
            names.append(contract.OUTPUT_KEYPOINT_HEATMAPS)
        self.input_names = tuple(names)

    def check_sizes(self, original: tuple[int, ...], resized: tuple[int, ...]) -> None:
        """The sizes must be what pre-processing made: an original within the image limit, which this model's
        resize turns into ``resized`` (a few KB asking for full-image masks of 16000 x 16000 took 2 GB)."""
        if min(original) < 1 or original[0] * original[1] > self.max_pixels:
            raise StepInputError(
                f"{tc.ORIGINAL_SIZES}: {list(original)} is not an image size within the limit of "
                f"{self.max_pixels} pixels"
            )
        expected = resized_size(original[0], original[1], self.info.preprocess)
        if self.info.static_input_size is None and tuple(resized) != tuple(expected):
            raise StepInputError(
                f"{contract.INPUT_IMAGE_SIZES} {list(resized)} is not what this model resizes a {original[0]}x"
                f"{original[1]} image to ({expected[0]}x{expected[1]})"
            )

    def run_one(self, request: Mapping[str, np.ndarray]) -> Tensors:
        resized = np.asarray(request[contract.INPUT_IMAGE_SIZES]).reshape(-1, 2)
        original = np.asarray(request[tc.ORIGINAL_SIZES]).reshape(-1, 2)
        if len(resized) != 1 or len(original) != 1:
            raise StepInputError(f"one image per request, got {len(resized)}")
        self.check_sizes(tuple(int(v) for v in original[0]), tuple(int(v) for v in resized[0]))
        outputs = {
            k: np.asarray(v)
            for k, v in request.items()
            if k not in (contract.INPUT_IMAGE_SIZES, tc.ORIGINAL_SIZES)
        }
        try:
            raw = contract.outputs_to_raw(outputs, self.info.output_convention)[0]
        except contract.ContractError as e:
            raise StepInputError(str(e)) from None
        det = postprocess(
            raw,
            tuple(resized[0]),
            tuple(original[0]),
            self.info.class_names,
            self.confidence_threshold,
            output_convention=self.info.output_convention,
        )
        result = {
            contract.OUTPUT_BOXES: det.boxes[None],
            contract.OUTPUT_SCORES: det.scores[None],
            contract.OUTPUT_LABELS: det.labels[None],
        }
        masks = det.binary_masks(self.mask_threshold)
        if masks is not None and self.mask_format == "box":
            pixels, regions = tc.pack_masks(masks)
            result[contract.OUTPUT_MASKS] = pixels[None]
            result[tc.OUTPUT_MASK_BOXES] = regions[None]
        elif masks is not None:
            result[contract.OUTPUT_MASKS] = masks.astype(np.uint8)[None]
        if det.keypoints is not None:
            result[tc.OUTPUT_KEYPOINTS] = det.keypoints[None]
        return result


def make_step(
    model_config: Mapping[str, Any], model_dir: str | os.PathLike[str], version: str | int = 1
) -> Step:
    """The step a Python-backend model's config (as Triton hands it to ``initialize``) asks for."""
    params = tc.config_parameters(model_config)
    name = str(model_config.get("name", model_dir))
    step = params.get(tc.PARAM_STEP)
    if step not in tc.STEPS:
        raise ValueError(
            f"{name}: parameter {tc.PARAM_STEP} is {step!r}; expected one of {', '.join(tc.STEPS)}"
        )
    if step == tc.STEP_MODEL:
        path = os.path.join(os.fspath(model_dir), str(version), params.get(tc.PARAM_MODEL_FILE, "model.onnx"))
        return ModelStep(path, threads=int(params.get(tc.PARAM_THREADS, "0")) or None)
    info = tc.info_from_parameters(params, None, f"the config of {name}")
    if step == tc.STEP_PREPROCESS:
        return PreprocessStep(info, int(params.get(tc.PARAM_MAX_IMAGE_PIXELS, tc.DEFAULT_MAX_IMAGE_PIXELS)))
    return PostprocessStep(
        info,
        float(params.get(tc.PARAM_CONFIDENCE_THRESHOLD, "0")),
        float(params.get(tc.PARAM_MASK_THRESHOLD, tc.DEFAULT_MASK_THRESHOLD)),
        int(params.get(tc.PARAM_MAX_IMAGE_PIXELS, tc.DEFAULT_MAX_IMAGE_PIXELS)),
        params.get(tc.PARAM_MASK_FORMAT, "full"),  # repositories written before box masks send full ones
    )
