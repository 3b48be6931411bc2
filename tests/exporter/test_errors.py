"""User mistakes get one clear message (ExportError / CLI exit 2, like the project's other CLIs), never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.errors import ExportError
from exporter.onnx_export import MIN_OPSET, export_onnx
from tests.common import SHAPES_CONFIG
from tests.exporter_helpers import GOLDEN_ARCHITECTURE


def test_unknown_flavor(shapes_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown flavor 'tensorrt'.*ort, trt"):
        export_onnx(shapes_checkpoint, tmp_path / "m.onnx", flavor="tensorrt", progress=False)


def test_opset_below_minimum(shapes_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=f"opset 11 is below the minimum {MIN_OPSET}"):
        export_onnx(shapes_checkpoint, tmp_path / "m.onnx", opset=11, progress=False)


def test_unknown_opset(shapes_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown opset 99"):
        export_onnx(shapes_checkpoint, tmp_path / "m.onnx", opset=99, progress=False)


def test_output_directory_missing(shapes_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        export_onnx(shapes_checkpoint, tmp_path / "nope" / "m.onnx", progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_output_directory_not_writable(shapes_checkpoint: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ExportError, match="not writable"):
            export_onnx(shapes_checkpoint, ro / "m.onnx", progress=False)
    finally:
        ro.chmod(0o700)


def test_output_is_a_directory(shapes_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="is a directory"):
        export_onnx(shapes_checkpoint, tmp_path, progress=False)


def test_config_and_checkpoint_mismatch(shapes_checkpoint: Path, tmp_path: Path) -> None:
    # the R-50-FPN default config against R-18 shapes weights
    with pytest.raises(ExportError, match="don't fit this config's model"):
        export_onnx(
            shapes_checkpoint,
            tmp_path / "m.onnx",
            opts=["MODEL.BACKBONE.CONV_BODY", "R-50-FPN"],
            progress=False,
        )


def test_class_count_mismatch(shapes_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="NUM_CLASSES"):
        export_onnx(
            shapes_checkpoint,
            tmp_path / "m.onnx",
            SHAPES_CONFIG,
            [*GOLDEN_ARCHITECTURE, "MODEL.ROI_HEADS.NUM_CLASSES", "9"],  # the checkpoint's architecture
            progress=False,
        )


def test_static_size_not_divisible(shapes_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="not a multiple of DATALOADER.SIZE_DIVISIBILITY 32.*try 320x320"):
        export_onnx(shapes_checkpoint, tmp_path / "m.onnx", static_size=(300, 310), progress=False)


def test_verify_images_folder_without_images(
    shapes_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    code = _export_cli(shapes_checkpoint, tmp_path, "--verify-images", str(empty))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "--verify-images: no image files" in err and str(empty) in err
    assert not (tmp_path / "m.onnx").exists()  # refused before exporting anything


def test_missing_weights(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="weights file not found"):
        export_onnx(tmp_path / "missing.pth", tmp_path / "m.onnx", progress=False)


def _export_cli(weights: Path, tmp_path: Path, *extra: str) -> int:
    """``python -m exporter`` on ``weights`` into ``tmp_path``, quiet, with ``extra`` arguments."""
    return main(["--weights", str(weights), "--output", str(tmp_path / "m.onnx"), "--quiet", *extra])


def test_cli_prints_one_error_line(
    shapes_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _export_cli(shapes_checkpoint, tmp_path, "--opset", "12")
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: opset 12 is below the minimum") and "Traceback" not in err


def test_cli_unknown_config_key(
    shapes_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _export_cli(shapes_checkpoint, tmp_path, "SOLVER.BASE_LRR", "1")
    assert code == 2
    assert "unknown config key 'SOLVER.BASE_LRR'" in capsys.readouterr().err
