"""Live (or file) demo for any model file: ``python -m runtime.webcam``, maskrcnn-benchmark's webcam.py successor.

Capture, inference and drawing run in three stages joined by bounded queues, so a camera is read at its
own pace while the model works: for a live camera the oldest waiting frame is dropped (showing stale
frames would only add latency), for files nothing is dropped (every input frame gets an output frame).
The frame shows the FPS actually delivered and the capture-to-display latency, which is what a user feels.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.cli_common import add_backend_arguments, cli_main, user_errors
from runtime.draw import put_text_lines
from runtime.image_io import IMAGE_EXTENSIONS, iter_images, list_images
from runtime.predictor import Predictor, StageTimes
from runtime.structures import Detections

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")
_END = object()  # end-of-stream marker passed down the pipeline
_QUIT_KEYS = (ord("q"), ord("Q"), 27)  # q, Esc


class SourceError(OSError):
    """An input that can't be opened (camera, video, folder); the message says which and why."""


@dataclass
class Frame:
    index: int
    image: np.ndarray
    captured_at: float
    name: str = ""  # file name for image-folder inputs, so outputs keep it


@dataclass
class WebcamStats:
    frames_read: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    frames_written: int = 0
    fps: float = 0.0
    mean_latency_ms: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)


class FrameSource:
    """Frames from a camera index, a video file, an image folder or a glob; ``live`` says whether to drop."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.live = spec.isdigit()
        self.fps: float = 0.0
        self._cap: Any = None
        self._paths: list[Path] | None = None
        if self.live:
            cap = _quietly(lambda: cv2.VideoCapture(int(spec)))
            if not cap.isOpened():
                raise SourceError(
                    f"cannot open camera {spec}: no such device, no permission, or in use by another program "
                    f"(on Linux, list cameras with `ls /dev/video*`); or pass a video file or image folder"
                )
            self._cap = cap
            self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            return
        path = Path(spec)
        if path.is_file() and path.suffix.lower() not in IMAGE_EXTENSIONS:
            cap = cv2.VideoCapture(str(path))
            if not cap.isOpened():
                raise SourceError(f"cannot open video {path}: not a video file OpenCV can decode")
            self._cap = cap
            self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        elif path.is_dir() or path.is_file() or glob.has_magic(spec):
            try:
                self._paths = list_images(spec)
            except FileNotFoundError as e:
                raise SourceError(str(e)) from None
        else:
            raise SourceError(f"{spec}: no such file, folder or camera index")

    def __iter__(self) -> Iterator[tuple[np.ndarray, str]]:
        if self._paths is not None:
            for p, image in iter_images(self._paths):  # unreadable files are named and skipped
                yield image, p.name
            return
        index = 0
        while True:
            ok, image = self._cap.read()
            if not ok:
                return
            yield image, f"{index:06d}"
            index += 1

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()


class FrameSink:
    """Annotated frames to a video file (by extension) or to a folder of JPEGs.

    It writes only files of its own: never over the input (``source``), and in a folder never over a file
    that was there before (an output folder that is the input folder would have replaced the photos).
    """

    def __init__(self, spec: str, fps: float, source: str | None = None) -> None:
        self.path = Path(spec)
        self.fps = fps if fps > 0 else 25.0
        self._writer: Any = None
        self._written: set[Path] = set()
        self.is_video = self.path.suffix.lower() in VIDEO_EXTENSIONS
        if source is not None and not source.isdigit() and Path(source).exists():
            src = Path(source).resolve()
            if self.path.resolve() == src or (
                src.is_file() and self.path.resolve() == src.parent and not self.is_video
            ):
                raise OSError(f"--output {spec} is the input {source}: name another file or folder")
        if not self.is_video and self.path.is_dir() and any(self.path.iterdir()):
            raise OSError(
                f"--output {spec} is not empty: name a new or empty folder (frames would replace its files)"
            )
        if self.is_video:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        else:
            self.path.mkdir(parents=True, exist_ok=True)

    def write(self, image: np.ndarray, name: str) -> None:
        if not self.is_video:
            stem = Path(name).stem or "frame"
            target = self.path / f"{stem}.jpg"
            if target.exists() and target not in self._written:
                raise OSError(
                    f"{target} exists and is not an output of this run: --output takes a new or empty folder"
                )
            if not cv2.imwrite(str(target), image):
                raise OSError(f"could not write {target}")
            self._written.add(target)
            return
        if self._writer is None:
            code = "mp4v" if self.path.suffix.lower() in (".mp4", ".m4v", ".mov") else "MJPG"
            fourcc = cv2.VideoWriter.fourcc(*code)
            h, w = image.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise OSError(
                    f"cannot write video {self.path}: no OpenCV encoder for {self.path.suffix}; try .avi"
                )
            self._size = (w, h)
        if (image.shape[1], image.shape[0]) != self._size:  # image folders mix sizes; a video can't
            image = cv2.resize(image, self._size)
        self._writer.write(image)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


def display_available() -> bool:
    """Whether a window can be shown: a display server and an OpenCV build with GUI support."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    info = cv2.getBuildInformation()
    gui = next((line for line in info.splitlines() if "GUI:" in line), "")
    return "NONE" not in gui.upper()


def run_webcam(
    predictor: Predictor,
    source: FrameSource,
    output: FrameSink | None = None,
    display: bool = True,
    max_frames: int | None = None,
    queue_size: int = 2,
    window: str = "maskrcnn-deploy",
) -> WebcamStats:
    """Run the three-stage pipeline until the source ends, ``max_frames`` are shown, or q/Esc is pressed."""
    stats = WebcamStats()
    pipe = _Pipeline(queue_size)
    threads = [
        threading.Thread(
            target=_capture, args=(source, pipe, stats, max_frames), name="capture", daemon=True
        ),
        threading.Thread(target=_infer, args=(predictor, pipe), name="inference", daemon=True),
    ]
    for t in threads:
        t.start()
    presenter = _Presenter(predictor, output, display, window)
    started = time.perf_counter()
    try:
        _present_results(pipe, presenter, stats, log_progress=output is None and not source.live)
    except KeyboardInterrupt:
        log.info("interrupted")
    finally:
        pipe.stop.set()
        for t in threads:
            t.join(timeout=5)
        source.close()
        presenter.close()
    _fill_rates(stats, time.perf_counter() - started, presenter.latencies, pipe.stage)
    return stats


class _Pipeline:
    """The queues and stop flag the stages share, and the inference stage's accumulated times."""

    def __init__(self, queue_size: int) -> None:
        self.stop = threading.Event()
        self.frames: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.results: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.stage = StageTimes()

    def put(self, q: queue.Queue[Any], item: Any) -> bool:
        """Blocking put that gives up when the pipeline stops (so no thread hangs on a full queue)."""
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


def _capture(source: FrameSource, pipe: _Pipeline, stats: WebcamStats, max_frames: int | None) -> None:
    """Capture stage: frames into ``pipe.frames``, then the end marker (an exception goes first, if any)."""
    try:
        for i, (image, name) in enumerate(source):
            if pipe.stop.is_set() or (max_frames is not None and i >= max_frames):
                break
            stats.frames_read += 1
            frame = Frame(i, image, time.perf_counter(), name)
            if source.live:  # never wait on the model: replace the oldest waiting frame
                _put_dropping_oldest(pipe.frames, frame, stats)
            elif not pipe.put(pipe.frames, frame):
                break
    except Exception as e:  # surfaced in the main thread, which owns the user's terminal
        pipe.put(pipe.frames, e)
    finally:
        pipe.put(pipe.frames, _END)


def _put_dropping_oldest(frames: queue.Queue[Any], frame: Frame, stats: WebcamStats) -> None:
    """Queue ``frame`` at once, dropping (and counting) the oldest waiting frame when the queue is full."""
    while True:
        try:
            frames.put_nowait(frame)
            return
        except queue.Full:
            try:
                frames.get_nowait()
                stats.frames_dropped += 1
            except queue.Empty:
                pass


def _infer(predictor: Predictor, pipe: _Pipeline) -> None:
    """Inference stage: ``(frame, detections, times)`` per frame into ``pipe.results``; passes on the end."""
    try:
        while True:
            item = pipe.frames.get()
            if item is _END or isinstance(item, Exception):
                pipe.put(pipe.results, item)
                return
            (det,), times = predictor.predict_timed([item.image])
            pipe.stage += times
            if not pipe.put(pipe.results, (item, det, times)):
                return
    except Exception as e:
        pipe.put(pipe.results, e)


def _present_results(pipe: _Pipeline, presenter: _Presenter, stats: WebcamStats, log_progress: bool) -> None:
    """Main-thread stage: show/write every result until the end, a stage's exception (re-raised) or quit."""
    while True:
        item = pipe.results.get()
        if item is _END:
            return
        if isinstance(item, Exception):
            raise item
        frame, det, times = item
        quit_asked = presenter.present(frame, det, times)
        stats.frames_processed += 1
        if presenter.output is not None:
            stats.frames_written += 1
        if quit_asked:
            return
        if log_progress and not presenter.display and stats.frames_processed % 50 == 0:
            log.info("%d frames processed", stats.frames_processed)


class _Presenter:
    """Display and/or write stage: annotates each frame and measures what the user sees (FPS, latency)."""

    def __init__(self, predictor: Predictor, output: FrameSink | None, display: bool, window: str) -> None:
        self.predictor = predictor
        self.output = output
        self.display = display
        self.window = window
        self.fps_ema = 0.0
        self.last_shown: float | None = None
        self.latencies: list[float] = []

    def present(self, frame: Frame, det: Detections, times: StageTimes) -> bool:
        """Annotate, write and show one frame; True when the user pressed q or Esc."""
        out = _annotate(self.predictor, frame, det, times, self.fps_ema)
        self._tick(frame)
        if self.output is not None:
            self.output.write(out, frame.name)
        return self._show(out) if self.display else False

    def _tick(self, frame: Frame) -> None:
        """Note the frame's capture-to-display latency and update the smoothed FPS."""
        now = time.perf_counter()
        self.latencies.append(now - frame.captured_at)
        if self.last_shown is not None:
            inst = 1.0 / max(now - self.last_shown, 1e-6)
            self.fps_ema = inst if self.fps_ema == 0.0 else 0.9 * self.fps_ema + 0.1 * inst
        self.last_shown = now

    def _show(self, out: np.ndarray) -> bool:
        """Show ``out``; a window that can't be shown turns the display off instead of ending the run."""
        try:
            cv2.imshow(self.window, out)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as e:
            log.warning(
                "cannot show a window (%s); continuing without display", str(e).strip().splitlines()[-1]
            )
            self.display = False
            return False
        return key in _QUIT_KEYS

    def close(self) -> None:
        if self.output is not None:
            self.output.close()
        if self.display:
            cv2.destroyAllWindows()


def _fill_rates(stats: WebcamStats, elapsed: float, latencies: list[float], stage: StageTimes) -> None:
    """Rates and per-frame averages of the finished run, into ``stats``."""
    n = max(stats.frames_processed, 1)
    stats.fps = stats.frames_processed / elapsed if elapsed > 0 else 0.0
    stats.mean_latency_ms = 1e3 * float(np.mean(latencies)) if latencies else 0.0
    stats.stage_ms = {
        "pre": 1e3 * stage.preprocess / n,
        "infer": 1e3 * stage.infer / n,
        "post": 1e3 * stage.postprocess / n,
    }


def _annotate(
    predictor: Predictor, frame: Frame, det: Detections, times: StageTimes, fps: float
) -> np.ndarray:
    out = predictor.draw(frame.image, det)
    latency_ms = 1e3 * (time.perf_counter() - frame.captured_at)
    lines = [
        f"{fps:.1f} FPS  latency {latency_ms:.0f} ms" if fps > 0 else f"latency {latency_ms:.0f} ms",
        f"model {1e3 * times.infer:.0f} ms  pre {1e3 * times.preprocess:.0f}  post {1e3 * times.postprocess:.0f}",
    ]
    scale = float(np.clip(out.shape[1] / 1100.0, 0.3, 0.7))  # readable on 160 px test clips and on 1080p
    return put_text_lines(out, lines, scale=scale)


def _quietly(fn: Any) -> Any:
    """Call ``fn`` with OpenCV's own warnings muted: a missing camera gets our message, not two of its."""
    logging_mod = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_mod is None:
        return fn()
    previous = logging_mod.getLogLevel()
    logging_mod.setLogLevel(logging_mod.LOG_LEVEL_ERROR)
    try:
        return fn()
    finally:
        logging_mod.setLogLevel(previous)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runtime.webcam",
        description="Detect and draw on a camera, video, or image folder with any model file.",
    )
    p.add_argument("--model", required=True, help="model file (.pth, .onnx, .xml, .engine) or a Triton URL")
    add_backend_arguments(p)
    p.add_argument("--input", default="0", help="camera index, video file, image folder or glob (default 0)")
    p.add_argument("--output", help="annotated output: a video file (.mp4, .avi) or a folder of JPEGs")
    p.add_argument("--no-display", action="store_true", help="no window (automatic without a display)")
    p.add_argument(
        "--confidence-threshold", type=float, default=0.7, help="minimum score shown (default 0.7)"
    )
    p.add_argument("--min-image-size", type=int, help="short side fed to the model (default: the model's)")
    p.add_argument("--show-mask-heatmaps", action="store_true", help="show the top masks' probabilities")
    p.add_argument("--masks-per-dim", type=int, default=2, help="heatmap grid size (default 2)")
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    p.add_argument(
        "--config-file",
        help="config of a .pth model: needed for plain state dicts; overrides a checkpoint's own",
    )
    return p


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    display = not args.no_display and display_available()
    if not args.no_display and not display:
        log.info("no display available: running headless")
    if not display and args.output is None and args.input.isdigit():
        log.warning("headless live camera without --output: nothing will be shown or saved (Ctrl-C stops)")
    with user_errors(OSError):  # SourceError is one; so is an output folder that can't be made
        source = FrameSource(args.input)
        predictor = Predictor(
            args.model, backend=args.backend, confidence_threshold=args.confidence_threshold,
            min_image_size=args.min_image_size, device=args.device, show_mask_heatmaps=args.show_mask_heatmaps,
            masks_per_dim=args.masks_per_dim, threads=args.threads, config_file=args.config_file,
            strict_options=False,
        )  # fmt: skip
        sink = FrameSink(args.output, source.fps, args.input) if args.output else None
    with user_errors(OSError):  # a frame that cannot be written
        stats = run_webcam(predictor, source, sink, display, args.max_frames)
    if stats.frames_read == 0 and not source.live:
        print(f"error: {args.input}: no frame could be read (see the warnings above)", file=sys.stderr)
        return 2
    print(
        f"{stats.frames_processed} frames processed ({stats.frames_read} read, {stats.frames_dropped} dropped, "
        f"{stats.frames_written} written); {stats.fps:.2f} FPS; mean latency {stats.mean_latency_ms:.0f} ms; "
        f"per frame pre {stats.stage_ms['pre']:.0f} / model {stats.stage_ms['infer']:.0f} / "
        f"post {stats.stage_ms['post']:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
