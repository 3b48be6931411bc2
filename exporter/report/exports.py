"""One combination's export and verification, through the exporter's own passes.

The FP32 ``ort`` ONNX is exported once; FP16 is its mixed-precision conversion, INT8 its Q/DQ calibration
(ranges cached in the report folder, so a re-run does not calibrate again); OpenVINO converts the ONNX of
its precision (FP16 compresses the FP32 network's weights). Each file is then verified against PyTorch as
``--verify`` does, under the precision's tolerances; a failure is recorded in the row, not raised.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.report.combinations import Combination

if TYPE_CHECKING:
    from exporter.report.measure import ReportOptions, Row


def calibration_source(options: ReportOptions) -> Any:
    """The INT8 calibration images: ``--calib-images``/``--calib-dataset``, else the training split of a
    catalog data set named ``*_val`` (never the evaluated images themselves)."""
    from calibration.image_source import calibration_images

    if options.calib_images is not None:
        return calibration_images(options.calib_images, None, options.calib_count)
    dataset = options.calib_dataset
    if dataset is None and options.dataset.endswith("_val"):
        dataset = options.dataset[: -len("_val")] + "_train"
    if dataset is None:
        raise ValueError("INT8 needs calibration images apart from the evaluated ones: --calib-dataset NAME or "
                         "--calib-images DIR")  # fmt: skip
    return calibration_images(None, dataset, options.calib_count, dataset_root=options.datasets_root)


def export_row(
    row: Row, options: ReportOptions, loaded: Any, sources: dict[str, Path], verify_dir: Path, tag: str
) -> None:
    """Write ``row``'s model into the report's models/ folder (replacing a stale one) and verify it.

    ``sources`` holds the ``ort`` ONNX of each precision made so far in this run; ``tag`` names the INT8
    ranges of these weights and options (``models/int8-TAG.calib.json``)."""
    from exporter.onnx_export import export_onnx
    from exporter.pipeline import PRECISION_TOLERANCES
    from exporter.verify import verify_export

    models = options.output / "models"
    combo = Combination(row.backend, row.precision)
    target = models / combo.file_name
    for stale in (target, target.with_suffix(".bin")):
        stale.unlink(missing_ok=True)
    if "fp32" not in sources:
        fp32 = models / "source_fp32.onnx"
        fp32.unlink(missing_ok=True)
        export_onnx(options.weights, fp32, options.config_file, options.opts, flavor="ort", progress=False)
        sources["fp32"] = fp32
    if row.backend == "onnxruntime":
        shutil.copyfile(_onnx_of(row.precision, options, sources, tag), target)
    elif row.backend == "openvino":
        from exporter.openvino_export import convert_to_ir

        convert_to_ir(_onnx_of("int8" if row.precision == "int8" else "fp32", options, sources, tag), target,
                      row.precision)  # fmt: skip
    else:
        raise NotImplementedError(f"the report does not build {row.backend} models yet")
    row.path = str(target.relative_to(options.output))
    row.file_mb = sum(p.stat().st_size for p in (target, target.with_suffix(".bin")) if p.exists()) / 1e6
    result = verify_export(target, loaded.model, verify_dir, PRECISION_TOLERANCES[row.precision], progress=False,
                           raise_on_failure=False)  # fmt: skip
    row.verified = result.passed
    row.verification = list(result.failures)
    row.verify_agreement_ap = result.report.agreement_ap


def _onnx_of(precision: str, options: ReportOptions, sources: dict[str, Path], tag: str) -> Path:
    """The ``ort`` ONNX of ``precision``, made once per run from the FP32 one (the exporter's own conversion)."""
    from exporter.pipeline import Int8Options, onnx_of_precision

    if precision not in sources:
        made = options.output / "models" / f"source_{precision}.onnx"
        made.unlink(missing_ok=True)
        calib = None
        if precision == "int8":
            cache = options.output / "models" / f"int8-{tag}.calib.json"
            calib = Int8Options(None if cache.is_file() else calibration_source(options), cache=cache)
        sources[precision], _ = onnx_of_precision(sources["fp32"], made, precision, calib, options.progress)
    return sources[precision]
