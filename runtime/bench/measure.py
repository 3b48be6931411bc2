"""Timing model files through the Predictor: settings in, a :class:`BenchReport` of every model's timings out
(models alternated each iteration; FLOPs and the matmul rate for the compute floor)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from runtime.backends.base import BackendError
from runtime.compute_floor import MatmulRate, measure_matmul_rate
from runtime.environment import environment_info
from runtime.image_io import iter_images
from runtime.model_file import UnknownModelType
from runtime.openvino_ir import IR_EXTENSIONS, bin_path
from runtime.predictor import Predictor

log = logging.getLogger(__name__)


#: distinct batches whose FLOPs are counted in one profiling session (all are held pre-processed at once)
FLOP_CHUNK = 16


@dataclass
class BenchSettings:
    batch: int = 1
    warmup: int = 3
    iters: int = 20
    threads: int | None = None
    size: int | None = None  # short side fed to the model (None: the model's own)
    device: str = "cpu"
    confidence_threshold: float = 0.0  # 0 pastes every detection: the worst case a deployment must budget
    floor: bool = True  # count FLOPs and measure the matmul rate (CPU only)
    profile_ops: int = 0  # print this many top operator types per model (backends with a profiler)

    def __post_init__(self) -> None:
        if self.batch < 1 or self.iters < 1 or self.warmup < 0 or self.profile_ops < 0:
            raise ValueError(
                f"need batch >= 1, iters >= 1, warmup >= 0, profile-ops >= 0; got {self.batch}, {self.iters}, "
                f"{self.warmup}, {self.profile_ops}"
            )


@dataclass
class ModelResult:
    """One model's timings in seconds per batch (lists hold every timed iteration)."""

    path: str
    backend: str = ""
    precision: str = ""
    file_mb: float = 0.0
    load_s: float = 0.0
    describe: dict[str, Any] = field(default_factory=dict)
    pre: list[float] = field(default_factory=list)
    infer: list[float] = field(default_factory=list)
    post: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    detections_per_image: float = 0.0
    flops: list[float] = field(default_factory=list)  # per timed iteration: the FLOPs of its batch
    flops_from: str = ""  # the model file they were counted on (this one, or the same network's)
    op_ms: dict[str, float] = field(default_factory=dict)  # ms per run by operator type (--profile-ops)
    op_runs: int = 0
    error: str | None = None

    def summary(self, batch: int, rate: MatmulRate | None = None) -> dict[str, float]:
        t = np.asarray(self.total)
        p50 = float(np.median(t))
        floor: dict[str, float] = {}
        if rate is not None and self.flops and len(self.flops) == len(self.total):
            floors = np.asarray([rate.floor_seconds(f) for f in self.flops])
            floor = {
                "gflop_per_image": float(np.median(self.flops)) / batch / 1e9,
                "floor_ms": 1e3 * float(np.median(floors)),
                "infer_to_floor": float(np.median(np.asarray(self.infer) / floors)),
                "total_to_floor": float(np.median(t / floors)),
            }
        return {
            "pre_ms": 1e3 * float(np.median(self.pre)),
            "infer_ms": 1e3 * float(np.median(self.infer)),
            "post_ms": 1e3 * float(np.median(self.post)),
            "p50_ms": 1e3 * p50,
            "p90_ms": 1e3 * float(np.percentile(t, 90)),
            "p99_ms": 1e3 * float(np.percentile(t, 99)),
            "images_per_s": batch / p50 if p50 > 0 else float("inf"),
            **floor,
        }


@dataclass
class BenchReport:
    settings: BenchSettings
    environment: dict[str, Any]
    models: list[ModelResult]
    num_images: int
    image_source: str
    matmul: MatmulRate | None = None

    @property
    def ok(self) -> list[ModelResult]:
        return [m for m in self.models if m.error is None and m.total]

    def ratio(self, m: ModelResult) -> float:
        """End-to-end median relative to the first model that ran (< 1 is faster)."""
        base = self.ok[0]
        return float(np.median(m.total) / np.median(base.total))

    def to_dict(self) -> dict[str, Any]:
        models = []
        for m in self.models:
            d = asdict(m)
            if m.error is None and m.total:
                d["summary"] = m.summary(self.settings.batch, self.matmul)
                d["ratio_to_first"] = self.ratio(m)
            models.append(d)
        return {
            "settings": asdict(self.settings),
            "environment": self.environment,
            "num_images": self.num_images,
            "image_source": self.image_source,
            "models": models,
            "matmul": None if self.matmul is None else asdict(self.matmul) | {"gflops": self.matmul.gflops},
        }


def load_images(source: str | os.PathLike[str], limit: int | None = None) -> list[np.ndarray]:
    """Decoded images of a folder/glob, unreadable ones skipped with a warning (iter_images)."""
    images = []
    for _, img in iter_images(source):
        images.append(img)
        if limit is not None and len(images) >= limit:
            break
    if not images:
        raise FileNotFoundError(f"no readable images in {source}")
    return images


def run_benchmark(
    model_paths: Sequence[str | os.PathLike[str]],
    images: Sequence[np.ndarray],
    settings: BenchSettings,
    backends: Sequence[str | None] | None = None,
    backend_options: dict[str, Any] | None = None,
    image_source: str = "",
    progress: bool = True,
    matmul: MatmulRate | None = None,
) -> BenchReport:
    """Time every model on the same batches, alternating models each iteration.

    A model that fails to load is reported with its error and the others still run. On the CPU, with
    ``settings.floor``, each model's FLOPs are counted on every batch it ran (after the timing, untimed)
    and ``matmul`` (measured here when not given) gives the floor.
    """
    if not images:
        raise ValueError("no images to benchmark with")
    backends = _backends_per_model(backends, len(model_paths))
    options = _predictor_options(settings, backend_options)
    results = [ModelResult(path=str(path)) for path in model_paths]
    live = [
        (r, pred)
        for r, backend in zip(results, backends)
        if (pred := _load_model(r, backend, settings, options)) is not None
    ]
    batches = _batches(images, settings.batch)
    detections = _time_alternately(live, batches, settings, progress)
    use_floor = settings.floor and settings.device == "cpu" and any(r.error is None for r, _ in live)
    if use_floor:
        _count_flops(live, batches, settings, progress)
        matmul = matmul or measure_matmul_rate(settings.threads)
    if settings.profile_ops > 0:
        _profile_ops(live, batches, settings, progress)
    for r, pred in live:
        r.detections_per_image = detections[id(r)] / max(1, len(r.total) * settings.batch)
        pred.close()
    return BenchReport(settings, environment_info(), results, len(images), image_source,
                       matmul if use_floor else None)  # fmt: skip


def _count_flops(
    live: Sequence[tuple[ModelResult, Predictor]],
    batches: Sequence[list[np.ndarray]],
    settings: BenchSettings,
    progress: bool,
) -> None:
    """``r.flops`` of every timed iteration: each distinct batch counted once per model (a batch's FLOPs
    depend on its image sizes and on how many detections reach the mask head).

    A model that cannot count (an IR without its ONNX beside it) takes the count of a model of the same
    network in the run (same config, canvas and batch: the same graph in another format or precision).
    """
    ok = [(r, pred) for r, pred in live if r.error is None]
    timed = range(settings.warmup, settings.warmup + settings.iters)
    used = _used_batches(batches, settings)
    with tqdm(total=len(ok), desc="counting FLOPs", unit="model", disable=not progress) as bar:
        for r, pred in ok:
            counts = _flops_of(r, pred, [batches[b] for b in used])
            bar.update(1)
            if counts is not None:
                per_batch = dict(zip(used, counts))
                r.flops, r.flops_from = [per_batch[it % len(batches)] for it in timed], r.path
    for r, pred in ok:
        if not r.flops:
            same = next((o for o, p in ok if o.flops and _network(p) == _network(pred)), None)
            if same is not None:
                r.flops, r.flops_from = list(same.flops), same.flops_from


def _used_batches(batches: Sequence[list[np.ndarray]], settings: BenchSettings) -> list[int]:
    """Indices of the distinct batches the timed iterations ran (they cycle through ``batches``)."""
    timed = range(settings.warmup, settings.warmup + settings.iters)
    return sorted({it % len(batches) for it in timed})


def _profile_ops(
    live: Sequence[tuple[ModelResult, Predictor]],
    batches: Sequence[list[np.ndarray]],
    settings: BenchSettings,
    progress: bool,
) -> None:
    """``r.op_ms`` of every model whose backend has a profiler: one untimed run on each distinct batch
    the timing used (at most FLOP_CHUNK of them, held pre-processed at once)."""
    ok = [(r, pred) for r, pred in live if r.error is None]
    used = _used_batches(batches, settings)[:FLOP_CHUNK]
    with tqdm(total=len(ok), desc="profiling ops", unit="model", disable=not progress) as bar:
        for r, pred in ok:
            try:
                calls = [c for b in used for _, c in pred.calls(pred.preprocess(batches[b]))]
                profile = pred.backend.profile_ops(calls)
            except Exception as e:  # a profiler failing must not take the timings down
                log.warning("%s: operators not profiled: %s: %s", r.path, type(e).__name__, e)
                profile = None
            bar.update(1)
            if profile is not None:  # per timed batch, which may take several calls
                per_batch = len(calls) / max(1, len(used))
                r.op_ms = {op: ms * per_batch for op, ms in profile.ms_per_run.items()}
                r.op_runs = len(used)


def _flops_of(r: ModelResult, pred: Predictor, batches: Sequence[list[np.ndarray]]) -> list[float] | None:
    """FLOPs of each of ``batches`` under ``pred``, counted in chunks (a chunk's batches are held
    pre-processed at once); None where its backend cannot count, or its counter failed (logged: a
    counter failing must not take the timings down)."""
    counts: list[float] = []
    try:
        for start in range(0, len(batches), FLOP_CHUNK):
            # what runs: each batch's calls (one per canvas, Predictor.calls), summed per batch
            calls = [
                [c for _, c in pred.calls(pred.preprocess(b))] for b in batches[start : start + FLOP_CHUNK]
            ]
            part = pred.backend.count_flops([c for per_batch in calls for c in per_batch])
            if part is None:
                return None
            for per_batch in calls:
                counts.append(sum(part[: len(per_batch)]))
                part = part[len(per_batch) :]
    except Exception as e:
        log.warning("%s: FLOPs not counted: %s: %s", r.path, type(e).__name__, e)
        return None
    return counts


def _network(pred: Predictor) -> tuple[Any, ...]:
    """What makes two model files the same network for counting FLOPs (not the format or the precision)."""
    info = pred.info
    return (info.config_yaml, info.static_input_size, info.batch, info.detections_per_image)


def _backends_per_model(backends: Sequence[str | None] | None, num_models: int) -> list[str | None]:
    """One backend (None: from the file) per model: ``--backend`` given never, once for all, or per model."""
    per_model: list[str | None] = list(backends) if backends else [None] * num_models
    if len(per_model) == 1 and num_models > 1:
        per_model = per_model * num_models
    if len(per_model) != num_models:
        raise ValueError(
            f"{len(per_model)} --backend values for {num_models} models; give one or one per model"
        )
    return per_model


def _predictor_options(settings: BenchSettings, backend_options: dict[str, Any] | None) -> dict[str, Any]:
    """Predictor keywords shared by all models; not strict, since one option rarely fits every backend."""
    options: dict[str, Any] = {"strict_options": False, **(backend_options or {})}
    if settings.threads is not None:
        options["threads"] = settings.threads
    return options


def _batches(images: Sequence[np.ndarray], batch: int) -> list[list[np.ndarray]]:
    """The images cut into batches, wrapping around so that fewer images than ``batch`` still fill one."""
    return [
        [images[(i * batch + j) % len(images)] for j in range(batch)]
        for i in range(max(1, len(images) // batch))
    ]


def _load_model(
    r: ModelResult, backend: str | None, settings: BenchSettings, options: dict[str, Any]
) -> Predictor | None:
    """The model of ``r`` loaded (its file size, load time and backend noted in ``r``), or None with ``r.error``."""
    try:
        r.file_mb = _file_mb(Path(r.path))
        pred = Predictor(r.path, backend=backend, confidence_threshold=settings.confidence_threshold,
                         min_image_size=settings.size, device=settings.device, **options)  # fmt: skip
    except (BackendError, UnknownModelType, FileNotFoundError, ValueError, TypeError, ImportError) as e:
        r.error = str(e)
        log.error("skipping %s: %s", r.path, e)
        return None
    r.backend, r.precision, r.load_s = pred.backend.name, pred.backend.precision, pred.load_seconds
    r.describe = pred.backend.describe()
    return pred


def _time_alternately(
    live: Sequence[tuple[ModelResult, Predictor]],
    batches: Sequence[list[np.ndarray]],
    settings: BenchSettings,
    progress: bool,
) -> dict[int, int]:
    """Warm-up then timed iterations, every model once per iteration; detections counted per ``id(result)``."""
    detections = {id(r): 0 for r, _ in live}
    total_steps = (settings.warmup + settings.iters) * len(live)
    with tqdm(total=total_steps, desc="benchmark", unit="batch", disable=not progress) as bar:
        for it in range(settings.warmup + settings.iters):
            batch = batches[it % len(batches)]
            for r, pred in live:
                if r.error is None:
                    detections[id(r)] += _time_one(r, pred, batch, it, timed=it >= settings.warmup)
                bar.update(1)
    return detections


def _time_one(r: ModelResult, pred: Predictor, batch: list[np.ndarray], it: int, timed: bool) -> int:
    """One end-to-end run of ``pred``, its times appended to ``r`` when ``timed``; returns its detections.

    A backend failing mid-run sets ``r.error`` rather than raising: it must not take the other models down.
    """
    try:
        t0 = time.perf_counter()
        dets, times = pred.predict_timed(batch)
        total = time.perf_counter() - t0
    except Exception as e:
        r.error = f"failed at iteration {it}: {type(e).__name__}: {e}"
        log.error("%s %s", r.path, r.error)
        return 0
    if not timed:
        return 0
    r.pre.append(times.preprocess)
    r.infer.append(times.infer)
    r.post.append(times.postprocess)
    r.total.append(total)
    return sum(len(d) for d in dets)


def _file_mb(path: Path) -> float:
    """Size on disk of a model; an OpenVINO IR is its .xml and its .bin together."""
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    size = path.stat().st_size
    if path.suffix.lower() in IR_EXTENSIONS and bin_path(path).is_file():
        size += bin_path(path).stat().st_size
    return size / 2**20
