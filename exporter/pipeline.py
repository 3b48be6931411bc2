"""Precision and TensorRT exports, composed from the library steps; what ``python -m exporter`` calls.

- :func:`export_fp16`: FP32 export (temporary) -> :func:`exporter.precision_fp16.convert_fp16` -> verify;
- :func:`export_int8`: FP32 export (temporary) -> :func:`exporter.quantize_int8.quantize_int8` -> verify. The
  ``trt`` flavor's plugin nodes do not run in ONNX Runtime's calibrator, so its ranges come from the ``ort``
  flavor of the same weights through the calibration cache (calibrated first when the cache is missing);
- :func:`export_tensorrt`: the ONNX an engine is built from (exported, converted, or a given file reused)
  written beside the engine, then :func:`exporter.tensorrt_build.build_engine`. Without TensorRT or a GPU
  the ONNX is still written and :class:`TensorRTUnavailable` carries the equivalent ``trtexec`` line;
- :func:`export_openvino`: the ``ort`` ONNX (FP32, or INT8 Q/DQ for ``int8``; exported, or a given file reused)
  written beside the IR, converted by :func:`exporter.openvino_export.convert_to_ir`, and the IR verified;
- :func:`export_triton`: the ONNX (exported, converted, or a given file reused) put into a Triton model
  repository, the engine built there for ``--backend tensorrt`` where TensorRT is present, then
  :func:`exporter.triton_repository.write_repository` (configs, ensemble, README, schema validation).

Verification (when asked for, as for FP32) compares with PyTorch on the same images as the FP32 export's, with
tolerances that fit the precision (:data:`PRECISION_TOLERANCES`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from calibration.cache import default_cache_path
from calibration.errors import CalibrationError
from calibration.image_source import CalibrationImages
from exporter.errors import ExportError
from exporter.onnx_export import DEFAULT_OPSET, check_writable, export_onnx
from exporter.openvino_export import OpenVinoIR, check_ir_output, convert_to_ir
from exporter.tensorrt_build import (
    BHW,
    DEFAULT_WORKSPACE_MIB,
    EngineBuildResult,
    ProfileShapes,
    TensorRTUnavailable,
    build_engine,
    default_profile,
)
from exporter.triton_repository import (
    TritonExportResult,
    TritonOptions,
    model_file_path,
    onnx_path_for,
    prepare_repository,
    write_repository,
)
from exporter.verify import EXPORT_TOLERANCES, VerificationResult
from runtime import onnx_contract as contract
from runtime.compare import Tolerances

PRECISIONS = ("fp32", "fp16", "int8")
#: Export-time tolerances per precision, against PyTorch on the verification images (measured on the shapes
#: R-18-FPN model, 6-8 images). FP16 keeps detection parity: measured 98.9% matched (random init: near-tied
#: low scores swap; trained: 99.5%), boxes 0.022 px, scores 3e-4, masks 0.011 -> 95% of the detections must
#: match within 0.5 px, 5e-3, 0.05. A swap whose partner overlaps (matched, but another proposal's box and
#: score: 42 px on one of 361 detections of a fine-tuned detectron2 import) counts against those 5% like a
#: swap whose partner lies elsewhere (unmatched). Those 5% may differ by any amount, so the agreement AP50
#: must also stay >= 0.95: a confident detection that moves costs it ~0.1 on a 20-detection set (measured
#: FP16 agreement: 0.997 on the fine-tuned imports, 0.975 on the random-init shapes model of the tests).
#: INT8 is judged on accuracy, not parity (a trained model: boxes move up to 14 px on a few low-score
#: detections, masks by up to 0.98): the agreement AP50, PyTorch's detections taken as ground truth
#: (``runtime.compare.agreement_ap``), must be >= 0.9 (trained model: 0.973; a random-init one, whose
#: near-equal scores INT8 reshuffles, 0.69); the differences are reported, not bounded. The COCO AP delta
#: on a labelled set is ``runtime.evaluate``'s job.
PRECISION_TOLERANCES: dict[str, Tolerances] = {
    "fp32": EXPORT_TOLERANCES,
    "fp16": Tolerances(box=0.5, score=5e-3, mask=5e-2, keypoint=0.5, min_matched=0.95, min_ap=0.95),
    "int8": Tolerances(box=None, score=None, mask=None, keypoint=None, min_matched=0.0, min_ap=0.9),
}


@dataclass(frozen=True)
class ExportOptions:
    """What every export takes (the FP32 export's arguments, less the output and the flavor)."""

    weights: str | Path
    config_file: str | Path | None = None
    opts: Sequence[str] = ()
    opset: int = DEFAULT_OPSET
    simplify: bool = False
    static_size: tuple[int, int] | None = None
    batch: int | None = None
    verify: int | str | Path | None = None
    progress: bool = True
    source: str | None = None  # the config's project where the file alone does not tell (trainer.foreign)

    def onnx_arguments(self) -> dict[str, Any]:
        """The keywords ``export_onnx`` takes from these options (all but ``verify``: each precision
        verifies its own file, after its own pass)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "verify"}


@dataclass(frozen=True)
class Int8Options:
    """Calibration: the images (None only when ``cache`` already holds this model's ranges) and the method."""

    images: CalibrationImages | None
    method: str = "minmax"
    cache: Path | None = None
    #: the weights' range, 7 or 8 bits; None: the flavor's default (``exporter.quantize_int8.weight_bits``)
    weight_bits: int | None = None


@dataclass
class PrecisionExportResult:
    path: Path
    precision: str
    flavor: str
    summaries: list[str] = field(default_factory=list)
    verification: VerificationResult | None = None


@dataclass
class TensorRTExportResult:
    onnx_path: Path
    onnx_reused: bool
    engine: EngineBuildResult


def export_fp16(
    options: ExportOptions,
    output: str | os.PathLike[str],
    flavor: str = "ort",
    fp32_parts: Sequence[str] | None = None,
) -> PrecisionExportResult:
    """Mixed-precision FP16 ONNX of ``options.weights`` (FP32 inputs and outputs) at ``output``; ``fp32_parts``
    keeps exactly those parts FP32 (a precision plan, ``exporter.precision_plan``)."""
    from exporter.precision_fp16 import convert_fp16

    out = Path(output)
    check_writable(out)
    with tempfile.TemporaryDirectory(prefix="mrd-fp16-") as tmp:
        fp32 = _export_fp32(options, Path(tmp) / "model_fp32.onnx", flavor)
        converted = convert_fp16(fp32, out, fp32_parts=fp32_parts)
    result = PrecisionExportResult(out, "fp16", flavor, [converted.summary()])
    _say(options.progress, converted.summary())
    result.verification = _verify(options, out, "fp16")
    return result


def export_int8(
    options: ExportOptions,
    output: str | os.PathLike[str],
    calib: Int8Options,
    flavor: str = "ort",
    fp32_parts: Sequence[str] | None = None,
) -> PrecisionExportResult:
    """INT8 Q/DQ ONNX of ``options.weights`` at ``output``, calibrated on ``calib.images`` (or its cache)."""
    from exporter.quantize_int8 import quantize_int8

    out = Path(output)
    check_writable(out)
    cache = calib.cache or default_cache_path(out)
    check_calibration(calib.images, cache)
    summaries = []
    with tempfile.TemporaryDirectory(prefix="mrd-int8-") as tmp:
        if flavor == "trt" and not cache.exists():
            # calibrate on the ort flavor: same weights, same dense region, so the same fingerprint
            _say(
                options.progress,
                "calibrating on the ort flavor (the trt flavor's plugins don't run in it) ...",
            )
            ort_fp32 = _export_fp32(options, Path(tmp) / "model_ort_fp32.onnx", "ort")
            first = quantize_int8(
                ort_fp32, Path(tmp) / "model_ort_int8.onnx", calib.images, calib.method, cache_path=cache,
                progress=options.progress,
            )  # fmt: skip
            summaries.append(
                f"calibrated {calib.method} ranges saved to {cache} ({first.quantized_nodes} nodes)"
            )
        fp32 = _export_fp32(options, Path(tmp) / "model_fp32.onnx", flavor)
        quantized = quantize_int8(
            fp32, out, calib.images, calib.method, cache_path=cache, progress=options.progress,
            bits=calib.weight_bits, fp32_parts=fp32_parts,
        )  # fmt: skip
    summaries.append(quantized.summary())
    if (speed := int8_speed_note()) is not None:
        summaries.append(speed)
    for line in summaries:
        _say(options.progress, line)
    result = PrecisionExportResult(out, "int8", flavor, summaries)
    result.verification = _verify(options, out, "int8")
    return result


def int8_speed_note() -> str | None:
    """What INT8 buys on this CPU, where it may buy nothing: without VNNI the u8 x s8 products take two
    instructions (pair sums, then widening) instead of one, and the quantize/dequantize steps cost extra."""
    from runtime.cpu_features import cpu_features

    cpu = cpu_features()
    if not cpu.int8_saturates:
        return None
    return (
        f"note: this CPU ({cpu.describe()}) has no VNNI: INT8 may be no faster than FP32 here; "
        "python -m runtime.bench --model FP32.onnx --model INT8.onnx measures it"
    )


def export_precision(
    options: ExportOptions,
    output: str | os.PathLike[str],
    precision: str = "fp32",
    flavor: str = "ort",
    calib: Int8Options | None = None,
    fp32_parts: Sequence[str] | None = None,
) -> PrecisionExportResult:
    """The ONNX model of ``precision`` (``fp32``, ``fp16`` or ``int8``) at ``output``."""
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if fp32_parts is not None and precision == "fp32":
        raise ExportError("--fp32-parts is for --fp16 or --int8: an FP32 model keeps every part FP32")
    if precision == "fp16":
        return export_fp16(options, output, flavor, fp32_parts)
    if precision == "int8":
        if calib is None:
            raise ExportError("INT8 needs a calibration source: --calib-images DIR or --calib-dataset NAME")
        return export_int8(options, output, calib, flavor, fp32_parts)
    done = export_onnx(output=output, flavor=flavor, verify=options.verify, **options.onnx_arguments())
    verification = done.verification if isinstance(done.verification, VerificationResult) else None
    return PrecisionExportResult(Path(output), "fp32", flavor, [done.summary()], verification)


@dataclass(frozen=True)
class PlanOptions:
    """``--max-ap-drop``: the limit, the held-out data set, and how many images each step looks at."""

    max_ap_drop: float
    dataset: str
    max_images: int | None = None
    sensitivity_images: int = 16
    datasets_root: Path = Path("datasets")


def export_planned(
    options: ExportOptions,
    output: str | os.PathLike[str],
    precision: str,
    plan: PlanOptions,
    calib: Int8Options,
) -> PrecisionExportResult:
    """The FP16 or INT8 ONNX whose FP32 parts were chosen by accuracy (:mod:`exporter.precision_plan`);
    :class:`exporter.precision_plan.PlanNotFound` when no plan keeps AP within ``plan.max_ap_drop``."""
    from exporter.precision_plan import SearchInputs, search_plan
    from runtime.datasets import DatasetError, resolve_dataset

    if precision not in ("fp16", "int8"):
        raise ExportError("--max-ap-drop chooses the FP32 parts of --fp16 or --int8")
    if calib.images is None:
        raise ExportError("--max-ap-drop measures each part on calibration images: give --calib-dataset NAME or "
                          "--calib-images DIR")  # fmt: skip
    try:
        spec = resolve_dataset(plan.dataset, root=plan.datasets_root)
    except DatasetError as e:
        raise ExportError(f"--dataset: {e}") from None
    held_out = {p.resolve() for p in spec.img_dir.iterdir()} if spec.img_dir.is_dir() else set()
    if any(p.resolve() in held_out for p in calib.images.paths):
        raise ExportError(f"--dataset {plan.dataset} shares images with the calibration images: the drop must be "
                          f"judged on images the calibration did not see")  # fmt: skip
    out = Path(output)
    check_writable(out)
    cache = calib.cache or default_cache_path(out)
    inputs = SearchInputs(
        precision=precision, max_ap_drop=plan.max_ap_drop, ann_file=spec.ann_file, img_dir=spec.img_dir,
        held_out=plan.dataset, sensitivity_images=list(calib.images.paths[: plan.sensitivity_images]),
        calib=calib.images, calib_cache=cache if precision == "int8" else None, max_images=plan.max_images,
        progress=options.progress, say=lambda message: _say(options.progress, message),
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mrd-planned-") as tmp:
        fp32 = _export_fp32(options, Path(tmp) / "model_fp32.onnx", "ort")
        chosen = search_plan(fp32, out, inputs)
    summary = (f"chosen plan: {precision} with {', '.join(chosen.fp32_parts) or 'no part'} kept FP32; held-out AP "
               + ", ".join(f"{t} {d:+.2f}" for t, d in chosen.ap_delta.items()) + f" (limit -{plan.max_ap_drop:g})")  # fmt: skip
    if chosen.p50_ms is not None and chosen.fp32_p50_ms:
        summary += f"; p50 {chosen.p50_ms:.1f} ms against FP32's {chosen.fp32_p50_ms:.1f} ({chosen.p50_ms / chosen.fp32_p50_ms:.2f}x)"
    _say(options.progress, summary)
    result = PrecisionExportResult(out, precision, "ort", [summary])
    result.verification = _verify(options, out, precision)
    return result


def export_tensorrt(
    engine: str | os.PathLike[str],
    options: ExportOptions | None = None,
    onnx_model: str | os.PathLike[str] | None = None,
    precision: str | None = None,
    flavor: str = "trt",
    calib: Int8Options | None = None,
    min_shape: BHW | None = None,
    opt_shape: BHW | None = None,
    max_shape: BHW | None = None,
    workspace_mib: int = DEFAULT_WORKSPACE_MIB,
    timing_cache: str | os.PathLike[str] | None = None,
    plugin_library: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> TensorRTExportResult:
    """A strongly typed TensorRT engine at ``engine`` (plus its JSON sidecar), from weights xor an ONNX file.

    The ONNX it is built from lies beside the engine (``model.engine`` -> ``model.onnx``), unless the given
    ``onnx_model`` already has the asked ``precision`` (None: whatever it has), which is then used as it is.
    Raises :class:`TensorRTUnavailable` (with the ``trtexec`` line) after writing the ONNX where TensorRT or a
    GPU is missing.
    """
    dst = Path(engine)
    if (options is None) == (onnx_model is None):
        raise ExportError("give the weights (--weights W.pth) or an exported model (--onnx M.onnx), not both")
    if dst.suffix.lower() == ".onnx":
        raise ExportError(f"--output {dst} is the engine to write; give it a .engine or .plan name")
    check_writable(dst)
    built_from = dst.with_suffix(".onnx")
    reused = False
    progress = options.progress if options is not None else progress
    if options is not None:
        export_precision(options, built_from, precision or "fp32", flavor, calib)
    else:
        assert onnx_model is not None
        built_from, reused = onnx_of_precision(Path(onnx_model), built_from, precision, calib, progress)
    profile = _profile(built_from, min_shape, opt_shape, max_shape)
    _say(progress, f"building a strongly typed TensorRT engine from {built_from} ...")
    result = build_engine(built_from, dst, profile, plugin_library, workspace_mib, timing_cache)
    _say(progress, result.summary())
    return TensorRTExportResult(built_from, reused, result)


@dataclass
class OpenVinoExportResult:
    ir: OpenVinoIR
    onnx_reused: bool
    verification: VerificationResult | None = None


def export_openvino(
    xml: str | os.PathLike[str],
    options: ExportOptions | None = None,
    onnx_model: str | os.PathLike[str] | None = None,
    precision: str | None = None,
    calib: Int8Options | None = None,
    progress: bool = True,
) -> OpenVinoExportResult:
    """An OpenVINO IR at ``xml`` (+ ``.bin``) of ``options.weights`` xor an exported ``ort`` ONNX file.

    The ONNX it is converted from lies beside the IR (``model.xml`` -> ``model.onnx``; a given ``onnx_model``
    of the right precision is used as it is). fp16 compresses the FP32 network's weights; int8 converts the
    INT8 Q/DQ ONNX (calibrated, or from the calibration cache). Only the IR is verified, when asked.
    """
    dst = Path(xml)
    if (options is None) == (onnx_model is None):
        raise ExportError("give the weights (--weights W.pth) or an exported model (--onnx M.onnx), not both")
    check_ir_output(dst)
    progress = options.progress if options is not None else progress
    built_from, reused = dst.with_suffix(".onnx"), False
    src = None if onnx_model is None else Path(onnx_model)
    if src is not None:
        have = given_onnx_info(src, "ort", "OpenVINO runs the ort flavor")
        if have.precision == "fp16":
            raise ExportError(f"--onnx {src} is the mixed-precision FP16 ONNX; give the FP32 one (--fp16 makes "
                              f"an IR with FP16 weights from it)")  # fmt: skip
        precision = precision or have.precision
    precision = precision or "fp32"
    source_precision = "int8" if precision == "int8" else "fp32"  # fp16 compresses the FP32 network's weights
    if options is not None:
        export_precision(replace(options, verify=None), built_from, source_precision, "ort", calib)
    else:
        assert src is not None
        built_from, reused = onnx_of_precision(src, built_from, source_precision, calib, progress)
    ir = convert_to_ir(built_from, dst, precision)
    _say(progress, ir.summary())
    verification = _verify(options, dst, precision) if options is not None else None
    return OpenVinoExportResult(ir, reused, verification)


def export_triton(
    repository: str | os.PathLike[str],
    triton: TritonOptions,
    options: ExportOptions | None = None,
    onnx_model: str | os.PathLike[str] | None = None,
    precision: str | None = None,
    flavor: str | None = None,
    calib: Int8Options | None = None,
    min_shape: BHW | None = None,
    opt_shape: BHW | None = None,
    max_shape: BHW | None = None,
    workspace_mib: int = DEFAULT_WORKSPACE_MIB,
    timing_cache: str | os.PathLike[str] | None = None,
    plugin_library: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> TritonExportResult:
    """A Triton model repository at ``repository`` serving ``options.weights`` xor ``onnx_model``.

    The python and onnxruntime backends serve the ``ort`` flavor; tensorrt builds its engine from the
    ``trt`` flavor, here when TensorRT and a GPU are present, else the repository's README and the
    result's notes carry the ``trtexec`` line that builds it on the serving machine.
    """
    if (options is None) == (onnx_model is None):
        raise ExportError("give the weights (--weights W.pth) or an exported model (--onnx M.onnx), not both")
    flavor = flavor or ("trt" if triton.backend == "tensorrt" else "ort")
    if triton.backend != "tensorrt" and flavor != "ort":
        raise ExportError(f"--backend {triton.backend} runs the ort flavor (standard ONNX ops); not {flavor}")
    if options is not None and options.batch is not None:
        raise ExportError(
            "--batch: Triton batches requests itself (--max-batch-size); export without --batch"
        )
    root = prepare_repository(repository, triton)
    dst = onnx_path_for(root, triton)
    progress = options.progress if options is not None else progress
    if options is not None:
        export_precision(options, dst, precision or "fp32", flavor, calib)
    else:
        assert onnx_model is not None
        src = Path(onnx_model)
        given_onnx_info(src, flavor, f"--backend {triton.backend} needs {flavor}")
        built, _ = onnx_of_precision(src, dst, precision, calib, progress)
        if built.resolve() != dst.resolve():
            shutil.copyfile(built, dst)
    notes = []
    if triton.backend == "tensorrt":
        notes.append(_triton_engine(dst, model_file_path(root, triton), triton.max_batch_size, min_shape, opt_shape,
                                    max_shape, workspace_mib, timing_cache, plugin_library, progress))  # fmt: skip
    result = write_repository(root, dst, triton, notes)
    _say(progress, result.summary())
    return result


def _triton_engine(
    onnx_path: Path, plan: Path, max_batch: int, lo: BHW | None, mid: BHW | None, hi: BHW | None,
    workspace_mib: int, timing_cache: str | os.PathLike[str] | None,
    plugin_library: str | os.PathLike[str] | None, progress: bool,
) -> str:  # fmt: skip
    """Build the repository's engine (profile up to the max batch size); a note saying what happened."""
    try:
        info = contract.read_metadata(onnx_path)
    except contract.ContractError as e:
        raise ExportError(str(e)) from None
    profile = _profile(onnx_path, lo, mid, hi) or default_profile(info, max_batch=max_batch)
    if profile.max[0] < max_batch:
        raise ExportError(f"--max-shape batch {profile.max[0]} is below --max-batch-size {max_batch}: Triton "
                          f"would send batches the engine cannot take")  # fmt: skip
    _say(progress, f"building a strongly typed TensorRT engine from {onnx_path} ...")
    try:
        built = build_engine(onnx_path, plan, profile, plugin_library, workspace_mib, timing_cache)
    except TensorRTUnavailable as e:
        return (f"{plan.name} is not built here ({e.missing}); build it on the serving machine (TensorRT >= 10, "
                f"an NVIDIA GPU, the TensorRT version the server's container has) with: {e.trtexec_line}")  # fmt: skip
    return built.summary()


def given_onnx_info(src: Path, flavor: str, why: str) -> contract.ModelInfo:
    """The metadata of an ONNX file given with ``--onnx``, refused (saying ``why``) when not of ``flavor``."""
    try:
        have = contract.read_metadata(src)
    except contract.ContractError as e:
        raise ExportError(str(e)) from None
    if have.flavor != flavor:
        raise ExportError(f"--onnx {src} is the {have.flavor} flavor; {why}")
    return have


def onnx_precision(path: Path) -> str:
    try:
        info = contract.read_metadata(path)
    except contract.ContractError as e:
        raise ExportError(str(e)) from None
    return info.precision


def check_calibration(images: CalibrationImages | None, cache: Path) -> None:
    """INT8 needs images unless the cache already holds ranges (whose model is checked when it is read)."""
    if images is None and not cache.exists():
        raise CalibrationError(
            f"INT8 needs calibration images (--calib-images DIR or --calib-dataset NAME): the calibration "
            f"cache {cache} does not exist yet"
        )


def onnx_of_precision(
    src: Path,
    converted: Path,
    precision: str | None,
    calib: Int8Options | None,
    progress: bool,
    fp32_parts: Sequence[str] | None = None,
) -> tuple[Path, bool]:
    """``src`` itself when it already has ``precision``, else its FP16/INT8 version written to ``converted``
    (keeping exactly ``fp32_parts`` FP32 where given: a precision plan)."""
    have = onnx_precision(src)
    if precision is None or precision == have:
        return src, True
    if have != "fp32":
        raise ExportError(f"{src} is {have}; give the FP32 model to build a {precision} engine from it")
    if src.resolve() == converted.resolve():
        raise ExportError(f"the {precision} model would overwrite {src}; name the engine differently")
    if precision == "fp16":
        from exporter.precision_fp16 import convert_fp16

        _say(progress, convert_fp16(src, converted, fp32_parts=fp32_parts).summary())
        return converted, False
    if precision != "int8":
        raise ExportError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    from exporter.quantize_int8 import quantize_int8

    calib = calib or Int8Options(None)
    cache = calib.cache or default_cache_path(converted)
    check_calibration(calib.images, cache)
    _say(progress, quantize_int8(src, converted, calib.images, calib.method, cache_path=cache,
                                 progress=progress, bits=calib.weight_bits, fp32_parts=fp32_parts).summary())  # fmt: skip
    if (speed := int8_speed_note()) is not None:
        _say(progress, speed)
    return converted, False


def _profile(onnx_path: Path, lo: BHW | None, mid: BHW | None, hi: BHW | None) -> ProfileShapes | None:
    """The model's default profile with the given min/opt/max shapes put in; None when none is given."""
    if lo is None and mid is None and hi is None:
        return None
    try:
        info = contract.read_metadata(onnx_path)
    except contract.ContractError as e:
        raise ExportError(str(e)) from None
    base = default_profile(info, max_batch=max(s[0] for s in (lo, mid, hi) if s is not None))
    return ProfileShapes(lo or base.min, mid or base.opt, hi or base.max)


def _export_fp32(options: ExportOptions, output: Path, flavor: str) -> Path:
    export_onnx(output=output, flavor=flavor, verify=None, **options.onnx_arguments())
    return output


def _verify(options: ExportOptions, model_path: Path, precision: str) -> VerificationResult | None:
    if options.verify is None:
        return None
    from exporter.model_loading import load_model
    from exporter.verify import verify_export

    loaded = load_model(options.config_file, options.weights, options.opts, options.source)
    return verify_export(
        model_path, loaded.model, options.verify, PRECISION_TOLERANCES[precision], progress=options.progress
    )


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)
