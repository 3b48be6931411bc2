"""``exporter --to openvino``: an OpenVINO IR (``model.xml`` + ``model.bin``) from the exported ``ort`` ONNX.

The IR is converted from the very ONNX file ONNX Runtime runs (written beside it, ``model.xml`` ->
``model.onnx``, as ``--to tensorrt`` does), so one contract and one verification hold for both:

- fp32: the FP32 ONNX, converted; weights stay FP32;
- fp16: the same network with FP16 weights (``compress_to_fp16``): half the file. OpenVINO's CPU plugin
  decompresses them and computes in f32 (``runtime.backends.openvino_backend``), so only the weights'
  rounding is lost; it is verified with the FP16 tolerances;
- int8: the INT8 Q/DQ ONNX of ``--int8`` (the same calibration and cache as ONNX Runtime's INT8), which
  OpenVINO turns into FakeQuantize and runs as INT8 convolutions.

The contract's metadata (classes, pre-processing, precision, config) is copied into the IR's rt_info
(``runtime.openvino_ir``), so every command reads the IR like the ONNX file.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from exporter.errors import ExportError
from exporter.onnx_export import check_writable
from runtime import onnx_contract as contract
from runtime.atomic_files import finish_interrupted, normal_mode, replace_together
from runtime.openvino_ir import bin_path, import_openvino, set_ir_metadata


@dataclass
class OpenVinoIR:
    xml: Path
    precision: str
    source_onnx: Path
    megabytes: float

    def summary(self) -> str:
        return (
            f"wrote OpenVINO IR {self.xml} (+ {bin_path(self.xml).name}, {self.megabytes:.1f} MB, {self.precision}) "
            f"from {self.source_onnx.name}"
        )


def check_ir_output(xml: Path) -> None:
    """Fail at once for an output that is not an .xml name in a writable folder."""
    if xml.suffix.lower() != ".xml":
        raise ExportError(f"--output {xml}: an OpenVINO IR is written as NAME.xml (with NAME.bin beside it)")
    check_writable(xml)


def convert_to_ir(
    onnx_path: str | os.PathLike[str], xml: str | os.PathLike[str], precision: str
) -> OpenVinoIR:
    """Convert an exported ``ort``-flavor ONNX file of ``precision`` into an IR at ``xml``, metadata included.

    ``precision`` is what the IR is: fp32 and fp16 come from an FP32 ONNX (fp16 compresses its weights),
    int8 from a Q/DQ ONNX. Both files are written under temporary names and renamed together.
    """
    src, dst = Path(onnx_path), Path(xml)
    check_ir_output(dst)
    try:
        info = contract.read_metadata(src)
    except contract.ContractError as e:
        raise ExportError(str(e)) from None
    if info.flavor != "ort":
        raise ExportError(
            f"{src} is the {info.flavor} flavor; OpenVINO runs the ort flavor (standard ONNX ops)"
        )
    expected = "int8" if precision == "int8" else "fp32"
    if info.precision != expected:
        raise ExportError(f"{src} is {info.precision}; an {precision} IR is made from the {expected} ONNX")
    try:
        ov = import_openvino()
    except ImportError as e:
        raise ExportError(str(e)) from None
    import onnx

    props = contract.metadata_props(onnx.load(str(src), load_external_data=False))
    if precision == "fp32":
        props.pop(contract.META_PRECISION, None)  # the contract writes fp32 as "absent"
    else:
        props[contract.META_PRECISION] = precision
    try:
        model = ov.convert_model(str(src))
    except Exception as e:  # OpenVINO raises its own OpConversionFailure and RuntimeErrors
        raise ExportError(f"OpenVINO cannot convert {src}: {str(e).strip().splitlines()[0]}") from None
    set_ir_metadata(model, props)
    finish_interrupted(dst)
    with tempfile.TemporaryDirectory(prefix=f".{dst.stem}.", dir=dst.parent) as tmp:
        tmp_xml = Path(tmp) / dst.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=precision == "fp16")
        for path in (tmp_xml, bin_path(tmp_xml)):
            os.chmod(path, normal_mode())
        # both or (after a crash) neither: an .xml never describes the old weights
        replace_together([(tmp_xml, dst), (bin_path(tmp_xml), bin_path(dst))])
    size = (dst.stat().st_size + bin_path(dst).stat().st_size) / 2**20
    return OpenVinoIR(dst, precision, src, size)
