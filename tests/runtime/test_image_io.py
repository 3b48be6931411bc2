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


# ---- hostile files: refused by format and size from the header, before any decoder sees them ----------------

import re  # noqa: E402
import resource  # noqa: E402
import struct  # noqa: E402

from runtime.image_io import (  # noqa: E402
    DEFAULT_MAX_PIXELS,
    ENV_MAX_PIXELS,
    decode_image,
    encoded_image_size,
    image_format,
)
from tests.runtime_fixtures import png_header_only  # noqa: E402


def _jpeg_with_fill_byte(w: int, h: int) -> bytes:
    """A baseline JPEG header for w x h with a legal fill byte (0xFF) before its start-of-frame marker."""
    real = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    at = real.index(b"\xff\xc0")
    sof = bytearray(real[at:])
    sof[5:7], sof[7:9] = h.to_bytes(2, "big"), w.to_bytes(2, "big")
    return real[:at] + b"\xff" + bytes(sof)


def _tiff_header(w: int, h: int) -> bytes:
    """A little-endian TIFF whose first IFD says w x h, 8-bit RGB, uncompressed, with one strip of 3 bytes."""
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, 3)]  # fmt: skip
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0" * 4
    return b"II*\0" + struct.pack("<I", 8) + ifd + b"\1\2\3"


HOSTILE = {
    # 20 bytes that made OpenCV raise cv2.error (an uncaught traceback) before
    "ppm 40000x40000": (
        b"P6\n40000 40000\n255\n",
        "40000x40000 image (1600 megapixels) is larger than the limit",
    ),
    "png 20000x20000": (png_header_only(20000, 20000), "20000x20000 image (400 megapixels)"),
    "jpeg fill byte 12000x12000": (_jpeg_with_fill_byte(12000, 12000), "12000x12000 image (144 megapixels)"),
    "tiff 8000x8000": (_tiff_header(8000, 8000), "8000x8000 image (64 megapixels)"),
    "bmp 30000x30000": (
        b"BM" + b"\0" * 12 + struct.pack("<Iii", 40, 30000, -30000) + b"\0" * 30,
        "30000x30000 image",
    ),  # fmt: skip
    "webp 16383x16383": (
        b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0" + (16382).to_bytes(3, "little") * 2,
        "16383x16383 image",
    ),  # fmt: skip
    "pam 50000x1000": (b"P7\nWIDTH 50000\nHEIGHT 1000\nDEPTH 3\nMAXVAL 255\nENDHDR\n", "50000x1000 image"),
    "jp2 codestream 9000x9000": (
        b"\xff\x4f\xff\x51\0\x29\0\0" + struct.pack(">IIII", 9000, 9000, 0, 0),
        "9000x9000",
    ),
    "zero-size png": (
        png_header_only(1, 1)[:16] + struct.pack(">II", 0, 5) + b"\0" * 40,
        "corrupt PNG file",
    ),
    "exr": (b"\x76\x2f\x31\x01" + b"\0" * 40, "not a supported image format"),
    "svg": (b"<svg xmlns='http://www.w3.org/2000/svg' width='100000' height='100000'/>", "not a supported"),
    "ppm without size": (b"P6\n# only a comment\n", "corrupt PPM/PGM/PBM/PAM file"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_images_are_refused_from_their_headers(case: str, tmp_path: Path) -> None:
    data, says = HOSTILE[case]
    path = tmp_path / "image"
    path.write_bytes(data)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageReadError, match=re.escape(says)):
        read_image(path)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 20, f"{case}: {grown_mb:.0f} MB for a {len(data)}-byte file"


def test_the_limit_is_the_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = _color()  # 20 x 30
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), image)
    assert DEFAULT_MAX_PIXELS == 40_000_000
    monkeypatch.setenv(ENV_MAX_PIXELS, "500")
    with pytest.raises(ImageReadError, match="600 pixels|larger than the limit of 0.0005 megapixels"):
        read_image(path)
    assert read_image(path, max_pixels=600).shape == (20, 30, 3)
    monkeypatch.setenv(ENV_MAX_PIXELS, "many")
    with pytest.raises(ValueError, match="MRD_MAX_IMAGE_PIXELS must be a positive number"):
        read_image(path)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif", ".webp", ".ppm", ".pgm", ".pbm", ".jp2"])
def test_header_sizes_are_what_the_decoder_gives(ext: str) -> None:
    """Every format of the allowlist, encoded by OpenCV at sizes around the odd corners, is read by header."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    low = 64 if ext == ".jp2" else 1  # OpenJPEG encodes nothing smaller than its 6 resolution levels

    @settings(max_examples=15, deadline=None, derandomize=True)
    @given(st.integers(low, 300), st.integers(low, 300))
    def check(h: int, w: int) -> None:
        image = np.random.default_rng(h * 1000 + w).integers(0, 255, (h, w, 3), dtype=np.uint8)
        if ext in (".pgm", ".pbm"):
            image = image[..., 0]
        ok, encoded = cv2.imencode(ext, image)
        assert ok
        data = encoded.tobytes()
        assert image_format(data) is not None
        assert encoded_image_size(data) == (h, w)
        assert decode_image(data).shape == (h, w, 3)

    check()


def test_image_reader_fuzzed() -> None:
    """Random byte edits and cuts of small valid files of each format: an image or an ImageReadError, never
    another exception, a crash or more than the limit's memory."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    image = _color()
    files = [
        cv2.imencode(ext, image)[1].tobytes() for ext in (".png", ".jpg", ".bmp", ".tif", ".webp", ".ppm")
    ]
    files += [_tiff_header(3, 2), HOSTILE["pam 50000x1000"][0]]

    @settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(files), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
           st.integers(1, 10**6))  # fmt: skip
    def check(original: bytes, edits: list[tuple[int, int]], cut: int) -> None:
        data = bytearray(original)
        for at, value in edits:
            data[at % len(data)] = value
        try:
            out = decode_image(bytes(data[:cut]), "fuzzed", max_pixels=1_000_000)
        except ImageReadError:
            return
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
        assert out.shape[0] * out.shape[1] <= 1_000_000

    check()


def test_a_thin_strip_keeps_a_row() -> None:
    """A legitimate 2x4000 strip resized to 0 rows before ("image_sizes [[0, 400]] must lie in ..."); it now
    keeps one row, in every resize convention, and pre-processes like any image."""
    from runtime.preprocess import RESIZE_MODES, PreprocessParams, preprocess, resized_size

    for mode in RESIZE_MODES:
        params = PreprocessParams(min_size=800, max_size=1333, resize=mode)
        assert min(resized_size(2, 4000, params)) >= 1 and min(resized_size(4000, 2, params)) >= 1, mode
    batch = preprocess([np.full((2, 4000, 3), 128, np.uint8)], PreprocessParams())
    assert batch.image_sizes.tolist() == [[1, 1333]] and batch.images.shape[2:] == (32, 1344)
