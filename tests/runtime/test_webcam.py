"""`python -m runtime.webcam` headless on files: one annotated frame out per frame in, bad inputs named."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.webcam import main
from tests.runtime_fixtures import make_image


def _write_video(path: Path, n: int) -> list[np.ndarray]:
    frames = [make_image(i) for i in range(n)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for f in frames:
        writer.write(f)
    writer.release()
    return frames


def test_video_to_frames_and_video(
    random_shapes_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = tmp_path / "in.avi"
    frames = _write_video(video, 4)
    out_dir = tmp_path / "frames"
    common = ["--model", str(random_shapes_checkpoint), "--input", str(video), "--no-display", "--confidence-threshold", "0.2",
              "--threads", "1"]  # fmt: skip
    assert main([*common, "--output", str(out_dir)]) == 0
    written = sorted(out_dir.glob("*.jpg"))
    assert len(written) == len(frames)  # files are never dropped
    first = cv2.imread(str(written[0]))
    assert first.shape == frames[0].shape
    assert np.abs(first.astype(int) - frames[0].astype(int)).mean() > 5  # detections and FPS text drawn
    assert "4 frames processed (4 read, 0 dropped, 4 written)" in capsys.readouterr().out

    out_video = tmp_path / "out.avi"
    assert main([*common, "--output", str(out_video), "--show-mask-heatmaps", "--masks-per-dim", "3"]) == 0
    cap = cv2.VideoCapture(str(out_video))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == len(frames)


def test_image_folder_skips_unreadable_files(random_shapes_checkpoint: Path, tmp_path: Path) -> None:
    src = tmp_path / "images"
    src.mkdir()
    for i in range(2):
        cv2.imwrite(str(src / f"img{i}.png"), make_image(i))
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    assert (
        main(
            [
                "--model",
                str(random_shapes_checkpoint),
                "--input",
                str(src),
                "--output",
                str(out),
                "--no-display",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["img0.jpg", "img1.jpg"]


def test_unopenable_inputs_are_clear_errors(
    random_shapes_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--model", str(random_shapes_checkpoint), "--input", "97", "--no-display"]) == 2
    assert "cannot open camera 97" in capsys.readouterr().err
    assert (
        main(
            ["--model", str(random_shapes_checkpoint), "--input", str(tmp_path / "nope.mp4"), "--no-display"]
        )
        == 2
    )
    assert "no such file" in capsys.readouterr().err
