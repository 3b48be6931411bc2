"""Calibration data: which images (seeded, enough of them), fed as the model's own inputs; clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calibration.errors import CalibrationError
from calibration.image_source import calibration_images, images_in_dataset
from calibration.model_inputs import InputSpec, iter_feeds
from runtime.image_io import read_image
from runtime.preprocess import preprocess
from tests.precision_models import PARAMS, export_tiny_model, write_images

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("calib_images")
    write_images(root, 12)
    write_images(root / "nested", 3, seed=1)
    (root / "notes.txt").write_text("not an image")
    return root


def test_seeded_choice_is_reproducible_and_depends_on_seed(folder: Path) -> None:
    a = calibration_images(folder, count=10, seed=0)
    b = calibration_images(folder, count=10, seed=0)
    c = calibration_images(folder, count=10, seed=1)
    assert a.paths == b.paths and len(set(a.paths)) == 10
    assert a.paths != c.paths
    assert all(p.suffix == ".png" for p in a.paths)  # notes.txt is not an image
    assert any("nested" in str(p) for p in calibration_images(folder, count=15).paths)  # subfolders count


@pytest.mark.parametrize(
    ("make", "count", "message"),
    [
        (lambda p: p / "missing", 8, "does not exist"),
        (lambda p: p, 8, "holds no images"),
        (lambda p: write_images(p, 9) and p, 10, "has 9 images, fewer than the 10"),
        (lambda p: write_images(p, 9) and p, 2, "too few"),
    ],
)
def test_bad_folders_give_clear_errors(tmp_path: Path, make, count: int, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CalibrationError, match=message):
        calibration_images(make(tmp_path), count=count)


def test_exactly_one_source(folder: Path) -> None:
    with pytest.raises(CalibrationError, match="exactly one"):
        calibration_images(folder, dataset="shapes_val", count=8)
    with pytest.raises(CalibrationError, match="exactly one"):
        calibration_images(count=8)


def test_unknown_dataset_is_a_calibration_error() -> None:
    with pytest.raises(CalibrationError, match="unknown data set"):
        images_in_dataset("no_such_dataset")


def test_dataset_by_name(tiny_shapes: dict[str, str]) -> None:
    files = images_in_dataset(tiny_shapes["train"])
    assert len(files) == 12 and all(p.is_file() for p in files)
    chosen = calibration_images(dataset=tiny_shapes["train"], count=8, seed=3)
    assert len(chosen) == 8 and "data set" in chosen.describe()


def test_feeds_are_the_runtime_preprocessing_of_the_model(folder: Path, tmp_path: Path) -> None:
    model = export_tiny_model(tmp_path / "tiny.onnx")
    spec = InputSpec.from_onnx(model)
    assert spec.preprocess == PARAMS and spec.batch_size == 1
    images = calibration_images(folder, count=8)
    feeds = list(iter_feeds(images, spec, progress=False))
    assert len(feeds) == 8
    expected = preprocess([read_image(images.paths[0])], PARAMS)
    np.testing.assert_array_equal(feeds[0]["images"], expected.images)
    np.testing.assert_array_equal(feeds[0]["image_sizes"], expected.image_sizes)


def test_static_model_gets_its_canvas_and_batch(folder: Path, tmp_path: Path) -> None:
    model = export_tiny_model(tmp_path / "static.onnx", static_size=(64, 64), batch=3)
    spec = InputSpec.from_onnx(model)
    feeds = list(iter_feeds(calibration_images(folder, count=8), spec, progress=False))
    assert len(feeds) == 3  # 8 images in batches of 3, the last one filled by repetition
    assert all(f["images"].shape == (3, 3, 64, 64) and f["image_sizes"].shape == (3, 2) for f in feeds)


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", 8)
    bad = tmp_path / "imgs" / "003.png"
    bad.write_bytes(b"not a png")
    model = export_tiny_model(tmp_path / "tiny.onnx")
    images = calibration_images(tmp_path / "imgs", count=8)
    with pytest.raises(CalibrationError, match="003.png"):
        list(iter_feeds(images, InputSpec.from_onnx(model), progress=False))


def test_model_without_contract_metadata_is_refused(tmp_path: Path) -> None:
    import onnx

    path = export_tiny_model(tmp_path / "tiny.onnx")
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(path))
    with pytest.raises(CalibrationError, match="lacks metadata"):
        InputSpec.from_onnx(path)
