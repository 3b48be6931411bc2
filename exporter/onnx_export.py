"""``export_onnx``: config + weights -> a clean, checked, self-describing ONNX model (the library function).

Steps: load the model, wrap it (``exporter.wrapper``), trace it with the legacy TorchScript exporter
(``dynamo=True`` cannot handle the data-dependent shapes), run the surgery passes, optionally onnxsim,
write metadata, run the full ONNX checker, write atomically, and optionally verify against PyTorch.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch

from exporter.errors import ExportError
from exporter.model_loading import LoadedModel, load_model
from exporter.surgery import clean_graph, initializer_inputs, save_onnx_atomic
from exporter.wrapper import ExportableDetector
from runtime import onnx_contract as contract
from runtime.onnx_contract import ModelInfo
from runtime.plugins.spec import DOMAIN
from trainer.inference import preprocess_params

#: RoiAlign-16 is the first to state torchvision's (aligned=False) coordinate transform as an attribute;
#: the exporter is verified from here up
MIN_OPSET = 16
DEFAULT_OPSET = 17


def max_opset() -> int:
    from torch.onnx import _constants

    return int(_constants.ONNX_MAX_OPSET)


@dataclass
class ExportResult:
    path: Path
    info: ModelInfo
    seconds: float
    num_nodes: int
    input_shapes: dict[str, list[int | str]]
    output_shapes: dict[str, list[int | str]]
    verification: object | None = None  # exporter.verify.VerificationResult when verify was asked for
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        shapes = ", ".join(f"{k} {v}" for k, v in {**self.input_shapes, **self.output_shapes}.items())
        return (
            f"wrote {self.path} ({self.info.flavor} flavor, opset {self.info.opset}, {self.num_nodes} nodes, "
            f"{len(self.info.class_names)} classes, {self.seconds:.1f} s): {shapes}"
        )


def check_options(
    flavor: str, opset: int, static_size: tuple[int, int] | None, batch: int | None, size_div: int
) -> None:
    if flavor not in contract.FLAVORS:
        raise ExportError(f"unknown flavor {flavor!r}; choose one of {', '.join(contract.FLAVORS)}")
    if opset < MIN_OPSET:
        raise ExportError(
            f"opset {opset} is below the minimum {MIN_OPSET} this graph needs (RoiAlign with an explicit "
            f"coordinate_transformation_mode); use --opset {MIN_OPSET} or higher"
        )
    if opset > max_opset():
        raise ExportError(f"unknown opset {opset}: this torch exports opsets {MIN_OPSET} to {max_opset()}")
    if batch is not None and batch < 1:
        raise ExportError(f"--batch must be at least 1, got {batch}")
    if static_size is not None:
        h, w = static_size
        if h <= 0 or w <= 0:
            raise ExportError(f"--static-size must be positive, got {h}x{w}")
        if size_div > 0 and (h % size_div or w % size_div):
            raise ExportError(
                f"--static-size {h}x{w} is not a multiple of DATALOADER.SIZE_DIVISIBILITY {size_div}: the "
                f"model pads images to multiples of it (try {math.ceil(h / size_div) * size_div}x"
                f"{math.ceil(w / size_div) * size_div})"
            )


def check_writable(output: Path) -> None:
    """Fail before the minutes of tracing, not after, when the output can't be written."""
    if output.is_dir():
        raise ExportError(f"output {output} is a directory; give a file name such as {output / 'model.onnx'}")
    parent = output.parent
    if not parent.is_dir():
        raise ExportError(f"output directory {parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".probe", dir=parent)
    except OSError as e:
        raise ExportError(f"output directory {parent} is not writable: {e.strerror}") from None
    os.close(fd)
    os.unlink(tmp)


def example_inputs(
    cfg, static_size: tuple[int, int] | None, batch: int | None
) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    """Tracing inputs: batch 2 and a non-square size unless fixed, so no dimension is specialized to 1."""
    div = max(cfg.DATALOADER.SIZE_DIVISIBILITY, 1)
    if static_size is None:
        h = math.ceil(cfg.INPUT.MIN_SIZE_TEST / div) * div
        w = math.ceil(min(cfg.INPUT.MIN_SIZE_TEST * 4 // 3, cfg.INPUT.MAX_SIZE_TEST) / div) * div
    else:
        h, w = static_size
    b = batch or 2
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(b, 3, h, w, generator=generator)
    sizes = torch.tensor([[h, w]] * b, dtype=torch.int64)
    sizes[1:, 0] = max(h - div, 1)  # images of a batch have different sizes
    return images, sizes


def output_names(wrapper: ExportableDetector) -> list[str]:
    names = list(contract.DETECTION_OUTPUTS)
    if wrapper.has_masks:
        names.append(contract.OUTPUT_MASKS)
    if wrapper.has_keypoints:
        names.append(contract.OUTPUT_KEYPOINT_HEATMAPS)
    return names


def dynamic_axes(
    names: Sequence[str], static_size: tuple[int, int] | None, batch: int | None
) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    if batch is None:
        for name in [*contract.INPUT_NAMES, *names]:
            axes[name] = {0: "batch"}
    if static_size is None:
        axes.setdefault(contract.INPUT_IMAGES, {}).update({2: "height", 3: "width"})
    return axes


def trace_to_onnx(
    wrapper: ExportableDetector,
    inputs: tuple[torch.Tensor, torch.Tensor],
    names: Sequence[str],
    axes: dict[str, dict[int, str]],
    opset: int,
) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # The tracer warns about every Python constant; the graph is verified instead of trusting warnings.
        warnings.simplefilter("ignore")
        path = Path(tmp) / "traced.onnx"
        torch.onnx.export(
            wrapper,
            inputs,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(contract.INPUT_NAMES),
            output_names=list(names),
            dynamic_axes=axes,
            do_constant_folding=True,
            keep_initializers_as_inputs=False,
            custom_opsets={DOMAIN: 1} if wrapper.flavor == "trt" else None,
        )
        return onnx.load(str(path))


def model_info(loaded: LoadedModel, wrapper: ExportableDetector, flavor: str, opset: int,
               static_size: tuple[int, int] | None, batch: int | None) -> ModelInfo:  # fmt: skip
    import torchvision

    return ModelInfo(
        class_names=tuple(loaded.class_names),
        preprocess=preprocess_params(loaded.cfg),
        flavor=flavor,
        opset=opset,
        detections_per_image=wrapper.detections_per_image,
        config_yaml=loaded.cfg.dump(),
        output_convention=str(loaded.cfg.TEST.OUTPUT_CONVENTION),
        mask_size=wrapper.mask_size,
        keypoint_names=tuple(loaded.keypoint_names) if wrapper.has_keypoints else None,
        static_input_size=static_size,
        batch=batch,
        max_batch=batch,
        extra={
            contract.META_PRODUCER: f"maskrcnn-deploy exporter (torch {torch.__version__}, "
            f"torchvision {torchvision.__version__}, onnx {onnx.__version__})"
        },
    )


def declare_output_shapes(model: onnx.ModelProto, wrapper: ExportableDetector, batch: int | None) -> None:
    """Write the contract's output shapes: ONNX shape inference can't see through the plugin nodes."""
    k = wrapper.detections_per_image
    m = wrapper.mask_size
    s = wrapper.heatmap_size or 0
    dims: dict[str, list[int | str]] = {
        contract.OUTPUT_NUM_DETECTIONS: [],
        contract.OUTPUT_BOXES: [k, 4],
        contract.OUTPUT_SCORES: [k],
        contract.OUTPUT_LABELS: [k],
        contract.OUTPUT_MASKS: [k, m or 0, m or 0],
        contract.OUTPUT_KEYPOINT_HEATMAPS: [k, wrapper.num_keypoints or 0, s, s],
    }
    for output in model.graph.output:
        shape = output.type.tensor_type.shape
        del shape.dim[:]
        for d in [batch or "batch", *dims[output.name]]:
            dim = shape.dim.add()
            if isinstance(d, int):
                dim.dim_value = d
            else:
                dim.dim_param = d


def shapes(values: Sequence[onnx.ValueInfoProto]) -> dict[str, list[int | str]]:
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}


def export_onnx(
    weights: str | Path,
    output: str | Path,
    config_file: str | Path | None = None,
    opts: Sequence[str] = (),
    flavor: str = "ort",
    opset: int = DEFAULT_OPSET,
    simplify: bool = False,
    static_size: tuple[int, int] | None = None,
    batch: int | None = None,
    verify: int | str | Path | None = None,
    progress: bool = True,
    source: str | None = None,
) -> ExportResult:
    """Export ``weights`` to ``output``; ``verify`` is a number of generated images or a directory of images.

    ``config_file`` may be ours, maskrcnn-benchmark's or detectron2's (``source`` names the project where
    the file alone does not tell, see ``trainer.foreign``).

    Dynamic batch, height and width unless ``static_size`` (H, W) / ``batch`` fix them. Raises
    :class:`ExportError` for bad input and ``VerificationError`` when the model diverges from PyTorch
    (the file is moved to NAME.unverified.onnx, so it can be inspected and is not deployed by mistake).
    """
    start = time.perf_counter()
    output = Path(output)
    check_writable(output)
    if verify is not None:
        from exporter.verify import verification_paths

        verification_paths(verify)
    loaded = load_model(config_file, weights, opts, source)
    check_options(flavor, opset, static_size, batch, loaded.cfg.DATALOADER.SIZE_DIVISIBILITY)
    try:
        wrapper = ExportableDetector(loaded.model, flavor)
    except NotImplementedError as e:
        raise ExportError(str(e)) from None
    names = output_names(wrapper)
    _say(progress, f"tracing {loaded.cfg.MODEL.BACKBONE.CONV_BODY} ({flavor} flavor, opset {opset}) ...")
    model = trace_to_onnx(
        wrapper,
        example_inputs(loaded.cfg, static_size, batch),
        names,
        dynamic_axes(names, static_size, batch),
        opset,
    )
    _say(progress, f"graph surgery on {len(model.graph.node)} nodes ...")
    model = clean_graph(model)
    if simplify:
        from exporter.simplify import simplify as run_onnxsim

        _say(progress, "simplifying with onnxsim ...")
        model = run_onnxsim(model)
    declare_output_shapes(model, wrapper, batch)
    info = model_info(loaded, wrapper, flavor, opset, static_size, batch)
    contract.set_metadata_props(model, contract.metadata_dict(info))
    leaked = initializer_inputs(model)
    if leaked:
        raise RuntimeError(f"initializers still listed as graph inputs after surgery: {leaked[:5]}")
    onnx.checker.check_model(model, full_check=True)
    save_onnx_atomic(model, output)
    result = ExportResult(
        path=output,
        info=info,
        seconds=time.perf_counter() - start,
        num_nodes=len(model.graph.node),
        input_shapes=shapes(model.graph.input),
        output_shapes=shapes(model.graph.output),
    )
    _say(progress, result.summary())
    if verify is not None:
        from exporter.verify import verify_export

        result.verification = verify_export(output, loaded.model, verify, progress=progress)
    return result


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)
