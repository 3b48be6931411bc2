"""FP16 and INT8 exports of an imported checkpoint of each source pass the exporter's ``--verify``.

The random test checkpoints cannot: six channels wide and random, their scores move by 0.02-0.03 when only
their weights are rounded to FP16 in PyTorch. These are the maskrcnn-benchmark and detectron2 mask
checkpoints of ``tests/data/foreign`` after the fine-tune a user of the README makes (1500 iterations on the
shapes data, ``tests/data/foreign/finetuned/README.md``): their sources' conventions, trained weights. They
are verified on images of the data they were fine-tuned on, as a deployment would be; INT8 reuses the
committed calibration ranges (100 shapes training images), so the test does not calibrate.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.pipeline import ExportOptions, Int8Options, export_precision
from runtime import onnx_contract as contract
from tests.foreign_reference import FOREIGN

FINETUNED = FOREIGN / "finetuned"
SOURCES = {"maskrcnn-benchmark": "mrb_mask_rcnn_R_50_FPN_1x", "detectron2": "d2_mask_rcnn_R_50_FPN_1x"}


@pytest.mark.parametrize("precision", ["fp16", "int8"])
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_reduced_precision_of_an_imported_checkpoint_verifies(
    source: str, precision: str, tmp_path: Path
) -> None:
    folder = FINETUNED / SOURCES[source]
    options = ExportOptions(
        weights=folder / "model_final.pth", verify=FINETUNED / "verify_images", progress=False
    )
    calib = Int8Options(images=None, cache=folder / "calib.json") if precision == "int8" else None
    result = export_precision(options, tmp_path / f"{precision}.onnx", precision, "ort", calib)
    verification = result.verification
    assert verification is not None and verification.passed, verification and verification.failures
    report = verification.report
    assert len(report.images) == 12 and report.num_reference > 200  # 12 images, 300-360 detections in all
    if precision == "fp16":
        assert report.matched_reference >= 0.99
    else:
        assert report.agreement_ap is not None and report.agreement_ap >= 0.9
    info = contract.read_metadata(result.path)
    assert info.precision == precision
    assert f"SOURCE: {source}" in info.config_yaml  # exported with the source's conventions
