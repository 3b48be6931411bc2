"""read_image converts every common image flavor to BGR uint8 and names bad files."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.image_io import ImageReadError, iter_images, list_images, read_image

PIL = pytest.importorskip("PIL.Image")


def _color(h: int = 20, w: int = 30) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 200  # blue
    img[:, : w // 2, 2] = 100  # red on the left half
    return img


def test_color_gray_rgba_16bit_palette(tmp_path: Path) -> None:
    bgr = _color()
    cv2.imwrite(str(tmp_path / "color.png"), bgr)
    np.testing.assert_array_equal(read_image(tmp_path / "color.png"), bgr)

    gray = np.arange(600, dtype=np.uint8).reshape(20, 30)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    out = read_image(tmp_path / "gray.png")
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 1], gray)

    rgba = np.dstack([bgr, np.full((20, 30), 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), bgr)

    deep = bgr.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png"), bgr)

    PIL.fromarray(bgr[:, :, ::-1].copy()).convert("P", palette=PIL.Palette.ADAPTIVE).save(
        tmp_path / "pal.png"
    )
    np.testing.assert_array_equal(read_image(tmp_path / "pal.png"), bgr)

    PIL.fromarray(gray).convert("LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png")[..., 2], gray)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.png", None, "missing.png: no such file"),
        ("corrupt.jpg", b"\xff\xd8\xff not really a jpeg", "corrupt.jpg: corrupt"),
        ("empty.png", b"", "empty.png: empty file"),
    ],
)
def test_bad_files_are_named(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageReadError, match=message):
        read_image(tmp_path / name)


def test_folder_iteration_skips_bad_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("b.png", "a.jpg"):
        cv2.imwrite(str(tmp_path / name), _color())
    (tmp_path / "c.png").write_bytes(b"garbage")
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.png", "c.png"]
    assert [p.name for p in list_images(str(tmp_path / "*.png"))] == ["b.png", "c.png"]
    with caplog.at_level(logging.WARNING):
        got = [p.name for p, img in iter_images(tmp_path)]
    assert got == ["a.jpg", "b.png"]
    assert "c.png" in caplog.text
    assert [p.name for p, _ in iter_images([tmp_path / "b.png", tmp_path / "nope.png"])] == ["b.png"]
    with pytest.raises(FileNotFoundError, match="no files match"):
        list_images(str(tmp_path / "*.gif"))
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        list_images(tmp_path / "nowhere")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        list_images(tmp_path / "empty_dir")
