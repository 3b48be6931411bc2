"""A Triton Inference Server model repository around one exported model: ``python -m exporter --to triton``.

Four models (names in ``runtime.triton.contract``): an ensemble taking one encoded image per request and
returning detections in image pixels, whose steps are a Python-backend pre-processing (``runtime``'s
decode + ``preprocess``), the network, and a Python-backend post-processing (``runtime``'s
``postprocess``: undo the resize, paste masks). The network step is one of

- ``python``: the ONNX model under ``runtime``'s ONNX Runtime backend inside the Python backend, the
  variant that runs on a CPU-only machine with the ``tritonserver`` of the ``nvidia-pytriton`` wheel;
- ``onnxruntime``: Triton's ``onnxruntime`` backend on the same ONNX file (NVIDIA's containers);
- ``tensorrt``: Triton's ``tensorrt`` backend on an engine built from the ``trt`` flavor, with our plugins
  loaded by ``tritonserver --backend-config=tensorrt,plugins=<self-registering library>``.

Every config.pbtxt is typed from the ONNX graph itself (names from the ONNX contract, data types and
dynamic dims from the graph's declared inputs and outputs) and validated against Triton's own
``model_config`` schema (:mod:`runtime.triton.config`) before the export returns. No torch here: the
ONNX model is made by :mod:`exporter.pipeline` first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import runtime
from exporter.errors import ExportError
from runtime import onnx_contract as contract
from runtime.onnx_contract import ModelInfo
from runtime.plugins.library import TRT_SELF_REGISTERING_LIBRARY
from runtime.triton import contract as tc

BACKENDS: tuple[str, ...] = ("python", "onnxruntime", "tensorrt")
#: where each backend's network file lies in its model directory (Triton's default file names)
MODEL_FILES = {"python": "1/model.onnx", "onnxruntime": "1/model.onnx", "tensorrt": "1/model.plan"}
#: the ONNX a TensorRT engine is built from, kept beside its version directory (Triton ignores it there)
TENSORRT_ONNX = "model.onnx"
PLUGIN_DIR = "plugins"
PYTHON_MODEL_SOURCE = Path(__file__).resolve().parents[1] / "runtime" / "triton" / "python_model.py"
RUNTIME_ROOT = Path(runtime.__file__).resolve().parents[1]


@dataclass(frozen=True)
class TritonOptions:
    """How the repository serves the model (the ``--to triton`` options)."""

    backend: str = "python"
    model_name: str = tc.DEFAULT_MODEL_NAME
    max_batch_size: int = 8
    instances: int = 1
    dynamic_batching: bool = True
    max_queue_delay_us: int = 2000
    #: bounded queues: one slow or hostile client fills a queue of this size, then gets rejections
    max_queue_size: int = 64
    queue_timeout_ms: int = 30000
    confidence_threshold: float = 0.5
    mask_threshold: float = tc.DEFAULT_MASK_THRESHOLD
    mask_format: str = tc.DEFAULT_MASK_FORMAT
    max_image_pixels: int = tc.DEFAULT_MAX_IMAGE_PIXELS
    threads: int | None = None  # ONNX Runtime intra-op threads per instance (python / onnxruntime)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ExportError(f"unknown Triton backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if not self.model_name or not all(c.isalnum() or c in "_-" for c in self.model_name):
            raise ExportError(f"--model-name {self.model_name!r}: use letters, digits, '_' and '-'")
        for name, value, low in (("--max-batch-size", self.max_batch_size, 1), ("--instances", self.instances, 1),
                                 ("--max-queue-delay-us", self.max_queue_delay_us, 0),
                                 ("--max-queue-size", self.max_queue_size, 1),
                                 ("--queue-timeout-ms", self.queue_timeout_ms, 1),
                                 ("--max-image-pixels", self.max_image_pixels, 1)):  # fmt: skip
            if value < low:
                raise ExportError(f"{name} must be at least {low}, got {value}")
        if self.mask_format not in tc.MASK_FORMATS:
            raise ExportError(f"--masks {self.mask_format!r}: choose one of {', '.join(tc.MASK_FORMATS)}")
        if self.threads is not None and self.threads < 0:
            raise ExportError(f"--threads must be >= 0, got {self.threads}")
        for name, value in (("--confidence-threshold", self.confidence_threshold),
                            ("--mask-threshold", self.mask_threshold)):  # fmt: skip
            if not 0.0 <= value <= 1.0:
                raise ExportError(f"{name} must be in [0, 1], got {value}")

    @property
    def names(self) -> tc.StepNames:
        return tc.StepNames.of(self.model_name)


@dataclass
class TensorSpec:
    """A tensor of a config.pbtxt: per-item dims (the batch dim stripped), and a numpy dtype."""

    name: str
    dtype: str
    dims: list[int]

    def config(self, ragged: bool = False) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name, "data_type": Enum(tc.config_datatype(self.dtype))}
        # a [B] tensor has no per-item dims: Triton wants [1] with a reshape to []
        entry["dims"] = self.dims or [1]
        if not self.dims:
            entry["reshape"] = {"shape": []}
        if ragged:
            entry["allow_ragged_batch"] = True
        return entry


@dataclass
class TritonExportResult:
    repository: Path
    options: TritonOptions
    model_file: Path
    onnx_path: Path
    validation: str = ""
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        n = self.options.names
        lines = [
            f"wrote the Triton model repository {self.repository} ({self.options.backend} backend): ensemble "
            f"{n.ensemble!r} = {n.preprocess} -> {n.model} -> {n.postprocess}",
            self.validation,
            *[f"note: {note}" for note in self.notes],
        ]
        return "\n".join(line for line in lines if line)


def model_file_path(repository: str | os.PathLike[str], options: TritonOptions) -> Path:
    """Where the network file of ``options.backend`` goes in the repository."""
    return Path(repository) / options.names.model / MODEL_FILES[options.backend]


def onnx_path_for(repository: str | os.PathLike[str], options: TritonOptions) -> Path:
    """Where the ONNX model goes: the model file itself, or the engine's source beside its version dir."""
    if options.backend == "tensorrt":
        return Path(repository) / options.names.model / TENSORRT_ONNX
    return model_file_path(repository, options)


#: the file that says a directory is a repository --to triton wrote (and may write again)
REPOSITORY_MARKER = ".maskrcnn-deploy-repository"
README_TITLE = "# Triton model repository: "


def _is_our_readme(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().startswith(README_TITLE)
    except OSError:
        return False


def prepare_repository(repository: str | os.PathLike[str], options: TritonOptions) -> Path:
    """Create the repository's model directories (before minutes of export, so a bad path fails at once)."""
    root = Path(repository)
    if root.exists() and not root.is_dir():
        raise ExportError(f"--output {root} is a file; --to triton writes a model repository directory")
    if not root.parent.is_dir():
        raise ExportError(f"output directory {root.parent} does not exist")
    n = options.names
    ours = {n.ensemble, n.preprocess, n.model, n.postprocess, PLUGIN_DIR, REPOSITORY_MARKER}
    foreign = sorted(p.name for p in root.iterdir() if p.name not in ours) if root.is_dir() else []
    if foreign == ["README.md"] and _is_our_readme(root / "README.md"):
        foreign = []  # a repository written before the marker existed
    if foreign and not (root / REPOSITORY_MARKER).is_file():
        raise ExportError(
            f"--output {root} holds files that are not a model repository of ours ({', '.join(foreign[:4])}"
            f"{' ...' if len(foreign) > 4 else ''}); name a new or empty directory, or one --to triton wrote"
        )
    try:
        for name in (n.ensemble, n.preprocess, n.model, n.postprocess):
            (root / name / "1").mkdir(parents=True, exist_ok=True)
        (root / REPOSITORY_MARKER).write_text("written by python -m exporter --to triton\n")
    except OSError as e:
        raise ExportError(f"cannot write the model repository {root}: {e.strerror or e}") from None
    return root


def graph_specs(onnx_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of the ONNX graph, batch dim stripped, dynamic dims as -1, dtypes as numpy names."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    model = onnx.load(str(onnx_path), load_external_data=False)

    def specs(values: Sequence[Any]) -> list[TensorSpec]:
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            if not dims or dims[0] not in (-1, 0):
                raise ExportError(
                    f"{onnx_path}: {v.name} has a fixed batch of {dims[0] if dims else '(no dims)'}; Triton "
                    f"batches requests itself: export with a dynamic batch (without --batch)"
                )
            out.append(TensorSpec(v.name, np.dtype(tensor_dtype_to_np_dtype(t.elem_type)).name, dims[1:]))
        return out

    inputs, outputs = specs(model.graph.input), specs(model.graph.output)
    names = [s.name for s in inputs]
    if names != list(contract.INPUT_NAMES):
        raise ExportError(
            f"{onnx_path}: inputs {names} are not the ONNX contract's {list(contract.INPUT_NAMES)}"
        )
    missing = [n for n in contract.DETECTION_OUTPUTS if n not in {s.name for s in outputs}]
    if missing:
        raise ExportError(f"{onnx_path}: outputs lack {missing}; not a model of the ONNX contract")
    return inputs, outputs


def write_repository(
    repository: str | os.PathLike[str],
    onnx_path: str | os.PathLike[str],
    options: TritonOptions,
    notes: Sequence[str] = (),
    validate: bool = True,
) -> TritonExportResult:
    """Write every config.pbtxt, model.py and the README around an ONNX model already in place, then validate."""
    root = prepare_repository(repository, options)
    src = Path(onnx_path)
    try:
        info = contract.read_metadata(src)
    except contract.ContractError as e:
        raise ExportError(str(e)) from None
    if info.batch is not None:
        raise ExportError(f"{src} has a fixed batch of {info.batch}; export it without --batch for Triton")
    inputs, outputs = graph_specs(src)
    n = options.names
    image_spec = inputs[0]
    configs = {
        n.preprocess: preprocess_config(options, info, image_spec),
        n.model: model_config(options, info, inputs, outputs),
        n.postprocess: postprocess_config(options, info, outputs),
        n.ensemble: ensemble_config(options, info, outputs),
    }
    for name, config in configs.items():
        (root / name / "config.pbtxt").write_text(to_pbtxt(config))
    python_models = [n.preprocess, n.postprocess] + ([n.model] if options.backend == "python" else [])
    for name in python_models:
        shutil.copyfile(PYTHON_MODEL_SOURCE, root / name / "1" / "model.py")
    result = TritonExportResult(root, options, model_file_path(root, options), src, notes=list(notes))
    if options.backend == "tensorrt":
        result.notes.append(_copy_plugin_library(root))
    (root / "README.md").write_text(readme(root, options, info, result.notes))
    if validate:
        result.validation = validate_exported(root, list(configs))
    return result


def queue_config(options: TritonOptions, delay_us: int = 0) -> dict[str, Any]:
    """A dynamic batcher whose queue is bounded in length and in time: past ``max_queue_size`` waiting
    requests, or ``queue_timeout_ms`` in the queue, a request is rejected instead of stalling all the others.
    The pre- and post-processing steps get one too (with no delay: they run request by request), since
    without a dynamic batcher Triton queues without bound."""
    return {
        "max_queue_delay_microseconds": delay_us,
        "default_queue_policy": {
            "timeout_action": Enum("REJECT"),
            "default_timeout_microseconds": options.queue_timeout_ms * 1000,
            "allow_timeout_override": True,
            "max_queue_size": options.max_queue_size,
        },
    }


def preprocess_config(options: TritonOptions, info: ModelInfo, image: TensorSpec) -> dict[str, Any]:
    sizes = TensorSpec(contract.INPUT_IMAGE_SIZES, "int64", [2])
    return {
        "name": options.names.preprocess,
        "backend": "python",
        "max_batch_size": options.max_batch_size,
        "input": [TensorSpec(tc.INPUT_ENCODED_IMAGE, "object", [1]).config()],
        "output": [image.config(), sizes.config(), TensorSpec(tc.ORIGINAL_SIZES, "int64", [2]).config()],
        "dynamic_batching": queue_config(options),
        "instance_group": [{"kind": Enum("KIND_CPU"), "count": options.instances}],
        "parameters": _parameters({
            **tc.info_parameters(info),
            tc.PARAM_STEP: tc.STEP_PREPROCESS,
            tc.PARAM_MAX_IMAGE_PIXELS: str(options.max_image_pixels),
            tc.PARAM_RUNTIME_PATH: str(RUNTIME_ROOT),
        }),
    }  # fmt: skip


def model_config(
    options: TritonOptions, info: ModelInfo, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> dict[str, Any]:
    """The network step; the Python variant takes ragged batches (it groups them by canvas itself)."""
    python = options.backend == "python"
    params = tc.info_parameters(info)
    config: dict[str, Any] = {"name": options.names.model}
    if python:
        config["backend"] = "python"
        params.update({
            tc.PARAM_STEP: tc.STEP_MODEL,
            tc.PARAM_MODEL_FILE: Path(MODEL_FILES["python"]).name,
            tc.PARAM_THREADS: str(options.threads or 0),
            tc.PARAM_RUNTIME_PATH: str(RUNTIME_ROOT),
        })  # fmt: skip
        kind = "KIND_CPU"
    elif options.backend == "onnxruntime":
        config["backend"] = "onnxruntime"
        if options.threads:
            params["intra_op_thread_count"] = str(options.threads)
        kind = "KIND_AUTO"  # the GPU where there is one, else the CPU
    else:
        config["backend"] = "tensorrt"
        kind = "KIND_GPU"
    config["max_batch_size"] = options.max_batch_size
    config["input"] = [s.config(ragged=python and s.name == contract.INPUT_IMAGES) for s in inputs]
    config["output"] = [s.config() for s in outputs]
    if options.dynamic_batching:
        config["dynamic_batching"] = queue_config(options, options.max_queue_delay_us)
    config["instance_group"] = [{"kind": Enum(kind), "count": options.instances}]
    config["parameters"] = _parameters(params)
    return config


def postprocess_config(
    options: TritonOptions, info: ModelInfo, outputs: Sequence[TensorSpec]
) -> dict[str, Any]:
    network = [TensorSpec(s.name, s.dtype, s.dims or [1]) for s in outputs]  # as the ensemble passes them
    sizes = [
        TensorSpec(contract.INPUT_IMAGE_SIZES, "int64", [2]),
        TensorSpec(tc.ORIGINAL_SIZES, "int64", [2]),
    ]
    return {
        "name": options.names.postprocess,
        "backend": "python",
        "max_batch_size": options.max_batch_size,
        "input": [s.config() for s in (*network, *sizes)],
        "output": [s.config() for s in detection_specs(info, options.mask_format)],
        "dynamic_batching": queue_config(options),
        "instance_group": [{"kind": Enum("KIND_CPU"), "count": options.instances}],
        "parameters": _parameters({
            **tc.info_parameters(info),
            tc.PARAM_STEP: tc.STEP_POSTPROCESS,
            tc.PARAM_CONFIDENCE_THRESHOLD: repr(float(options.confidence_threshold)),
            tc.PARAM_MASK_THRESHOLD: repr(float(options.mask_threshold)),
            tc.PARAM_MAX_IMAGE_PIXELS: str(options.max_image_pixels),
            tc.PARAM_MASK_FORMAT: options.mask_format,
            tc.PARAM_RUNTIME_PATH: str(RUNTIME_ROOT),
        }),
    }  # fmt: skip


def detection_specs(info: ModelInfo, mask_format: str = tc.DEFAULT_MASK_FORMAT) -> list[TensorSpec]:
    """The ensemble's outputs for this model (masks and keypoints only where it has them; box masks as the
    pixels of their regions plus the regions)."""
    specs = []
    for name in tc.ENSEMBLE_OUTPUTS:
        if (name in (contract.OUTPUT_MASKS, tc.OUTPUT_MASK_BOXES) and not info.has_masks) or (
            name == tc.OUTPUT_KEYPOINTS and not info.has_keypoints
        ):
            continue
        if name == tc.OUTPUT_MASK_BOXES and mask_format != "box":
            continue
        dtype, dims = tc.ENSEMBLE_OUTPUT_SPECS[name]
        if name == contract.OUTPUT_MASKS and mask_format == "box":
            dims = (-1,)
        if name == tc.OUTPUT_KEYPOINTS and info.keypoint_names is not None:
            dims = [-1, len(info.keypoint_names), 3]
        specs.append(TensorSpec(name, dtype, list(dims)))
    return specs


def ensemble_config(options: TritonOptions, info: ModelInfo, outputs: Sequence[TensorSpec]) -> dict[str, Any]:
    n = options.names
    network = {s.name: f"network_{s.name}" for s in outputs}
    pre_out = (contract.INPUT_IMAGES, contract.INPUT_IMAGE_SIZES, tc.ORIGINAL_SIZES)
    dets = detection_specs(info, options.mask_format)
    steps = [
        {"model_name": n.preprocess, "model_version": -1,
         "input_map": _map({tc.INPUT_ENCODED_IMAGE: tc.INPUT_ENCODED_IMAGE}),
         "output_map": _map({k: k for k in pre_out})},
        {"model_name": n.model, "model_version": -1,
         "input_map": _map({k: k for k in contract.INPUT_NAMES}),
         "output_map": _map(network)},
        {"model_name": n.postprocess, "model_version": -1,
         "input_map": _map({**{k: v for k, v in network.items()},
                            contract.INPUT_IMAGE_SIZES: contract.INPUT_IMAGE_SIZES,
                            tc.ORIGINAL_SIZES: tc.ORIGINAL_SIZES}),
         "output_map": _map({s.name: s.name for s in dets})},
    ]  # fmt: skip
    return {
        "name": n.ensemble,
        "platform": "ensemble",
        "max_batch_size": options.max_batch_size,
        "input": [TensorSpec(tc.INPUT_ENCODED_IMAGE, "object", [1]).config()],
        "output": [s.config() for s in dets],
        "ensemble_scheduling": {"step": steps},
    }


def validate_exported(root: Path, models: Sequence[str]) -> str:
    """Validate the configs here if tritonclient is installed, else with the serving environment's Python."""
    from runtime.triton.config import INSTALL_HINT, ConfigError, SchemaUnavailable, validate_repository

    try:
        return validate_repository(root, models).summary()
    except ConfigError as e:
        raise ExportError(str(e)) from None
    except SchemaUnavailable as first:
        from runtime.triton.server import default_serving_python

        python = default_serving_python()
        if python is None:
            hint = "" if INSTALL_HINT in str(first) else f": {INSTALL_HINT}"
            raise ExportError(f"{root} is written but not validated: {first}{hint}") from None
        proc = subprocess.run([str(python), "-m", "runtime.triton.config", str(root), "--models", *models],
                              capture_output=True, text=True, cwd=RUNTIME_ROOT, timeout=300)  # fmt: skip
        if proc.returncode == 0:
            return proc.stdout.strip() + f" (checked by {python})"
        message = (proc.stderr.strip() or proc.stdout.strip()).removeprefix("error: ")
        if proc.returncode == 2:
            raise ExportError(message) from None
        raise ExportError(
            f"{root} is written but not validated ({python}: {message}); {INSTALL_HINT}"
        ) from None


def _copy_plugin_library(root: Path) -> str:
    """Copy the self-registering plugin library into ``plugins/`` when it is built; say how to get it otherwise."""
    from runtime.plugins.library import PluginLibraryNotFound, trt_self_registering_library_path

    dst = root / PLUGIN_DIR / TRT_SELF_REGISTERING_LIBRARY
    try:
        src = trt_self_registering_library_path()
    except PluginLibraryNotFound as e:
        (root / PLUGIN_DIR).mkdir(exist_ok=True)
        return (
            f"{TRT_SELF_REGISTERING_LIBRARY} is not built here, so {dst} is missing: build it against the "
            f"serving machine's TensorRT and copy it there ({e})"
        )
    dst.parent.mkdir(exist_ok=True)
    shutil.copyfile(src, dst)
    return f"copied the self-registering plugin library {src} to {dst}"


# --- config.pbtxt text ----------------------------------------------------------------------------------
class Enum(str):
    """An enum value of the model config (``TYPE_FP32``, ``KIND_CPU``): written without quotes."""


def _parameters(params: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {"string_value": str(v)}} for k, v in params.items()]


def _map(pairs: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in pairs.items()]


def to_pbtxt(message: Mapping[str, Any], indent: int = 0) -> str:
    """A config as protobuf text format: dicts are messages, lists of dicts repeated messages (maps are
    lists of ``{key, value}``), lists of scalars packed ``[a, b]``; strings escaped byte by byte."""
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if isinstance(value, Mapping):
            lines += [f"{pad}{key} {{", to_pbtxt(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            for item in value:
                lines += [f"{pad}{key} {{", to_pbtxt(item, indent + 1), f"{pad}}}"]
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]".replace("[  ]", "[ ]"))
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(line for line in lines if line) + ("\n" if indent == 0 else "")


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    escapes = {34: '\\"', 92: "\\\\", 10: "\\n"}
    text = "".join(escapes.get(b, chr(b) if 32 <= b < 127 else f"\\{b:03o}") for b in str(value).encode())
    return f'"{text}"'


# --- the README written into the repository ---------------------------------------------------------------
def readme(root: Path, options: TritonOptions, info: ModelInfo, notes: Sequence[str]) -> str:
    n = options.names
    classes = ", ".join(info.class_names[1:])
    outputs = "\n".join(
        f"| `{s.name}` | {tc.wire_datatype(s.dtype)} | [1, {', '.join('N' if d == -1 and i == 0 else str(d) for i, d in enumerate(s.dims))}] |"
        for s in detection_specs(info, options.mask_format)
    ).replace("[1, N, -1, -1]", "[1, N, H, W]")
    plugin = f"/models/{PLUGIN_DIR}/{TRT_SELF_REGISTERING_LIBRARY}"
    docker = (
        "docker run --gpus all --rm --shm-size=1g -p127.0.0.1:8000:8000 -p127.0.0.1:8001:8001 -p127.0.0.1:8002:8002 -v $PWD/"
        f"{root.name}:/models nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models"
    )
    if options.backend == "tensorrt":
        docker += f' --backend-config=tensorrt,plugins="{plugin}"'
    variant = {
        "python": "ONNX Runtime inside Triton's Python backend (`runtime`'s ONNX Runtime backend): runs on a "
        "CPU-only machine, with the `tritonserver` of the `nvidia-pytriton` wheel (`bash scripts/serve.sh "
        f"{root}`)",
        "onnxruntime": "Triton's `onnxruntime` backend (`model.onnx`, instance kind AUTO: the GPU where there "
        "is one); its backend is in NVIDIA's Triton containers, not in the `nvidia-pytriton` wheel",
        "tensorrt": "Triton's `tensorrt` backend (`model.plan`, built from the `trt` flavor "
        f"`{n.model}/{TENSORRT_ONNX}`), with our plugins; in NVIDIA's Triton containers",
    }[options.backend]
    lines = [
        f"{README_TITLE}`{n.ensemble}`",
        "",
        "Written by `python -m exporter --to triton` (maskrcnn-deploy). Classes: " + classes + ".",
        "",
        "| model | what |",
        "| --- | --- |",
        f"| `{n.ensemble}` | ensemble: one encoded image (PNG, JPEG, ...) per request -> detections in image pixels |",
        f"| `{n.preprocess}` | Python backend: decode, then `runtime.preprocess` (resize, normalize, pad) |",
        f"| `{n.model}` | the network: {variant} |",
        f"| `{n.postprocess}` | Python backend: `runtime.postprocess` (undo the resize, paste the masks) |",
        "",
        f"Dynamic batching of `{n.model}`: "
        + (f"on, queue delay {options.max_queue_delay_us} us" if options.dynamic_batching else "off")
        + f"; max batch {options.max_batch_size}; {options.instances} instance(s) of each model.",
        "",
        "## Requests",
        f"Input `{tc.INPUT_ENCODED_IMAGE}`: BYTES, shape [1, 1], the bytes of one image file. Images over "
        f"{options.max_image_pixels / 1e6:g} megapixels are refused before decoding. Outputs (N detections "
        f"scoring at least {options.confidence_threshold:g}, best first):",
        "",
        "| output | type | shape |",
        "| --- | --- | --- |",
        outputs,
        "",
        f"Boxes are x1, y1, x2, y2; labels index the class names (0 is the background); masks are 0/1 (mask "
        f"probability > {options.mask_threshold:g}). A corrupt, empty or oversized image gets an error response "
        "naming the problem; the server carries on.",
        "",
        "Clients: `python -m runtime.triton.serve_bench --url grpc://HOST:8001 --images DIR` (throughput, latency and a "
        f'check against the local runtime); `Predictor("http://HOST:8000/{n.ensemble}")` runs the network on '
        "the server and pre/post-processing locally (so `runtime.webcam` and `runtime.evaluate` take the URL "
        "as `--model`).",
        "",
        "## Serving",
        f"Bundled server (Python backend only): `bash scripts/serve.sh {root}` from the maskrcnn-deploy checkout.",
        "",
        f"NVIDIA's Triton container: `{docker}`",
        "",
        "The Python steps import `runtime` from the Python the Triton Python backend runs (install "
        "maskrcnn-deploy there: `pip install --no-deps <checkout>` plus numpy, opencv-python-headless and "
        f"onnxruntime), else from the checkout this export ran from (`{RUNTIME_ROOT}`, recorded as the "
        f"`{tc.PARAM_RUNTIME_PATH}` parameter of each Python model).",
    ]
    if options.backend == "tensorrt":
        lines += [
            "",
            "## TensorRT plugins",
            "The engine holds our plugin layers (multi-level ROIAlign, batched NMS). Triton's TensorRT backend "
            'loads plugin libraries with `--backend-config=tensorrt,plugins="/path/a.so;/path/b.so"` (r22.09 '
            f"and later) and only dlopens them, so it takes `{TRT_SELF_REGISTERING_LIBRARY}` (the library "
            f"whose creators register themselves when loaded), here in `{PLUGIN_DIR}/`: pass "
            f'`--backend-config=tensorrt,plugins="{plugin}"` as above. Never hand it `libmrd_trt_plugins.so` '
            "(the load_library flavour: it registers nothing when dlopened).",
            "",
            "An engine runs only on the TensorRT version and GPU it was built for: build "
            f"`{n.model}/{MODEL_FILES['tensorrt']}` on the serving machine when it is missing or was built elsewhere "
            "(see the note below).",
        ]
    if notes:
        lines += ["", "## Notes from the export", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"
