"""Latency of one or more model files through the full pipeline: ``python -m runtime.bench``.

Models are timed alternately (A B A B ...) rather than one after the other, so a machine that slows down
half-way (thermal throttling, a neighbour's job) slows every model alike and the ratios still hold.
Each iteration is pre-process + inference + post-process (mask pasting included) on the same batch, with
device work synchronized before every clock read; medians and tail percentiles, not means, because a
single page fault or GC pause must not move the result.

On the CPU every model's time is also put against the compute floor (``runtime.compute_floor``): the FLOPs
its network executed on each batch over the float32 matmul rate measured in the same run, so the table says
how far each backend is from what the machine can do, not only from the other backends.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from runtime.backends.base import BackendError
from runtime.cli_common import add_backend_arguments, add_progress_argument, cli_main, user_errors
from runtime.compare import format_text_table
from runtime.compute_floor import MatmulRate, measure_matmul_rate
from runtime.cpu_features import cpu_features
from runtime.image_io import iter_images
from runtime.model_file import UnknownModelType
from runtime.op_profile import OpProfile, format_op_profile
from runtime.openvino_ir import IR_EXTENSIONS, bin_path
from runtime.predictor import Predictor
from runtime.synthetic import images_of_size

log = logging.getLogger(__name__)

#: distinct batches whose FLOPs are counted in one profiling session (all are held pre-processed at once)
FLOP_CHUNK = 16
#: the synthetic images' shape before resizing: a common camera aspect ratio (4:3)
SYNTHETIC_HW = (480, 640)


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


def environment_info() -> dict[str, Any]:
    """Machine and library versions, so numbers from two machines are never compared unknowingly."""
    import cv2
    import onnxruntime

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    for name in ("torch", "torchvision", "tensorrt"):  # only those a model already imported: stay light
        mod = sys.modules.get(name)
        if mod is not None:
            versions[name] = getattr(mod, "__version__", "?")
    cpu = cpu_features()
    return {
        "cpu": cpu.name,
        "cpu_features": list(cpu.features),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "versions": versions,
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


def format_op_profiles(report: BenchReport) -> str:
    """Each profiled model's top operator types (``--profile-ops N``), beside its timed inference."""
    parts = []
    for m in report.ok:
        name = f"{Path(m.path).name} ({m.backend}, {m.precision})"
        if not m.op_runs:
            parts.append(f"{name}: no operator profile (this backend has no profiler, or it failed)")
            continue
        network = m.summary(report.settings.batch)["infer_ms"]
        parts.append(
            format_op_profile(name, OpProfile(m.op_ms, m.op_runs), report.settings.profile_ops, network)
        )
    return "\n\n".join(parts)


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


def format_report(report: BenchReport) -> str:
    """The environment, then one row per model; the ratio column is what to quote."""
    s = report.settings
    env = report.environment
    lines = [
        f"CPU: {env['cpu']} ({env['cpu_count']} logical cores); {env['platform']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        f"images: {report.image_source} ({report.num_images}); batch {s.batch}; short side "
        f"{s.size or 'model default'}; warmup {s.warmup}; iters {s.iters}; threads {s.threads or 'default'}; "
        f"device {s.device}",
    ]
    gpus = sorted({str(m.describe["gpu"]) for m in report.models if m.describe.get("gpu")})
    if gpus:
        lines.insert(1, "GPU: " + ", ".join(gpus))
    if report.matmul is not None:
        lines.append("compute floor: " + report.matmul.describe())
    headers = ["model", "backend", "precision", "size MB", "load s", "pre ms", "infer ms", "post ms",
               "p50 ms", "p90 ms", "p99 ms", "img/s", "dets/img", "ratio"]  # fmt: skip
    floor_headers = ["GFLOP/img", "floor ms", "infer/floor", "p50/floor"] if report.matmul is not None else []
    rows = []
    for m in report.models:
        name = Path(m.path).name
        if m.error is not None or not m.total:
            rows.append([name, m.backend or "-", m.precision or "-", f"{m.file_mb:.1f}", "-", *["-"] * 8,
                         "FAILED", *["-"] * len(floor_headers)])  # fmt: skip
            continue
        sm = m.summary(s.batch, report.matmul)
        rows.append([
            name, m.backend, m.precision, f"{m.file_mb:.1f}", f"{m.load_s:.2f}", f"{sm['pre_ms']:.1f}",
            f"{sm['infer_ms']:.1f}", f"{sm['post_ms']:.1f}", f"{sm['p50_ms']:.1f}", f"{sm['p90_ms']:.1f}",
            f"{sm['p99_ms']:.1f}", f"{sm['images_per_s']:.2f}", f"{m.detections_per_image:.1f}",
            f"{report.ratio(m):.2f}x",
        ])  # fmt: skip
        if floor_headers:
            rows[-1] += (
                [f"{sm['gflop_per_image']:.1f}", f"{sm['floor_ms']:.1f}", f"{sm['infer_to_floor']:.2f}x",
                 f"{sm['total_to_floor']:.2f}x"] if "floor_ms" in sm else ["-"] * len(floor_headers)
            )  # fmt: skip
    table = format_text_table(headers + floor_headers, rows)
    errors = [f"{Path(m.path).name}: {m.error}" for m in report.models if m.error]
    return "\n".join([*lines, "", table, *(["", "errors:", *errors] if errors else [])])


def plot_report(report: BenchReport, path: str | os.PathLike[str]) -> None:
    """Stacked pre/infer/post median bars per model, with the p90 as a whisker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = report.ok
    if not ok:
        raise ValueError("nothing to plot: no model ran")
    names = [f"{Path(m.path).name}\n({m.backend}, {m.precision})" for m in ok]
    sums = [m.summary(report.settings.batch) for m in ok]
    y = np.arange(len(ok))
    fig, ax = plt.subplots(figsize=(9, 1.8 + 0.8 * len(ok)))
    left = np.zeros(len(ok))
    for key, label, color in (("pre_ms", "pre-process", "#8da0cb"), ("infer_ms", "inference", "#fc8d62"),
                              ("post_ms", "post-process", "#66c2a5")):  # fmt: skip
        values = np.asarray([s[key] for s in sums])
        ax.barh(y, values, left=left, color=color, label=label)
        left += values
    p50 = np.asarray([s["p50_ms"] for s in sums])
    p90 = np.asarray([s["p90_ms"] for s in sums])
    ax.errorbar(
        p50, y, xerr=[np.zeros_like(p50), np.maximum(p90 - p50, 0)], fmt="k|", capsize=4, label="p50 to p90"
    )
    for yi, m, s in zip(y, ok, sums):
        ax.text(
            s["p90_ms"],
            float(yi),
            f"  {s['p50_ms']:.0f} ms ({report.ratio(m):.2f}x)",
            va="center",
            fontsize=9,
        )
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(f"milliseconds per batch of {report.settings.batch} (median)")
    ax.set_title(f"end-to-end latency, {report.environment['cpu']}", fontsize=10)
    ax.set_xlim(0, float(p90.max()) * 1.35)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(ok) < 3 else -0.15), ncol=4, fontsize=8,
              frameon=False)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _file_mb(path: Path) -> float:
    """Size on disk of a model; an OpenVINO IR is its .xml and its .bin together."""
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    size = path.stat().st_size
    if path.suffix.lower() in IR_EXTENSIONS and bin_path(path).is_file():
        size += bin_path(path).stat().st_size
    return size / 2**20


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runtime.bench",
        description="Time model files (.pth, .onnx, .xml, .engine) end to end, alternating them; print a table.",
    )
    p.add_argument(
        "--model",
        action="append",
        required=True,
        help="model file; repeat to compare (first is the baseline)",
    )
    add_backend_arguments(
        p,
        backend_help="backend override (torch, onnxruntime, openvino, tensorrt, triton); once, or once per --model",
        repeatable_backend=True,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder or glob of images")
    src.add_argument("--synthetic", type=int, metavar="N", help="N generated images (480x640)")
    p.add_argument("--size", type=int, help="short side fed to the models (default: each model's own)")
    p.add_argument("--batch", type=_batch_sizes, default=[1], metavar="N[,N...]",
                   help="images per batch; several (1,2,4) time every batch size and add an images/s table")  # fmt: skip
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.0,
        help="score threshold before mask pasting (default 0: paste every detection)",
    )
    p.add_argument(
        "--config-file",
        help="config of .pth models: needed for plain state dicts; overrides a checkpoint's own",
    )
    p.add_argument("--no-floor", action="store_true",
                   help="skip the compute floor (FLOPs counted per batch, matmul rate measured; CPU only)")  # fmt: skip
    p.add_argument("--profile-ops", type=int, default=0, metavar="N",
                   help="also profile each model's operators (untimed runs, the backend's own profiler) and "
                        "print its N most expensive operator types")  # fmt: skip
    p.add_argument("--json", help="write all timings to this JSON file")
    p.add_argument("--plot", help="write a bar chart (PNG) to this file")
    add_progress_argument(p)
    return p


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    reports: list[BenchReport] = []
    with user_errors():
        images, source = _bench_images(args.synthetic, args.images)
        options = {"config_file": args.config_file} if args.config_file else {}
        matmul = None
        for batch in args.batch:
            settings = BenchSettings(batch=batch, warmup=args.warmup, iters=args.iters, threads=args.threads,
                                     size=args.size, device=args.device,
                                     confidence_threshold=args.confidence_threshold,
                                     floor=not args.no_floor, profile_ops=args.profile_ops)  # fmt: skip
            report = run_benchmark(args.model, images, settings, args.backend, options, source,
                                   not args.no_progress, matmul)  # fmt: skip
            matmul = report.matmul  # one rate for every batch size: they are compared with each other
            reports.append(report)
            print(format_report(report), flush=True)
            if settings.profile_ops > 0:
                print("\n" + format_op_profiles(report), flush=True)
    if len(reports) > 1:
        print("\n" + format_batch_table(reports))
    if args.json:
        data = reports[0].to_dict() if len(reports) == 1 else {"by_batch": [r.to_dict() for r in reports]}
        Path(args.json).write_text(json.dumps(data, indent=2))
        print(f"wrote {args.json}")
    if args.plot:
        for report in reports:
            if report.ok:
                path = Path(args.plot)
                if len(reports) > 1:
                    path = path.with_name(f"{path.stem}_b{report.settings.batch}{path.suffix}")
                plot_report(report, path)
                print(f"wrote {path}")
    return 0 if all(len(r.ok) == len(r.models) for r in reports) else 1


def format_batch_table(reports: Sequence[BenchReport]) -> str:
    """Images per second of every model at every batch size (and the end-to-end ratio to the floor)."""
    batches = [r.settings.batch for r in reports]
    headers = ["model", "backend", "precision", *[f"img/s b{b}" for b in batches]]
    if all(r.matmul is not None for r in reports):
        headers += [f"p50/floor b{b}" for b in batches]
    rows = []
    for i, m in enumerate(reports[0].models):
        row = [Path(m.path).name, m.backend or "-", m.precision or "-"]
        sums = [
            r.models[i].summary(r.settings.batch, r.matmul) if r.models[i] in r.ok else None for r in reports
        ]
        row += [f"{sm['images_per_s']:.2f}" if sm else "FAILED" for sm in sums]
        if len(headers) > 3 + len(batches):
            row += [f"{sm['total_to_floor']:.2f}x" if sm and "total_to_floor" in sm else "-" for sm in sums]
        rows.append(row)
    return format_text_table(headers, rows)


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected batch sizes such as 1 or 1,2,4, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return sizes


def _bench_images(synthetic: int | None, folder: str | None) -> tuple[list[np.ndarray], str]:
    """The images of ``--synthetic N`` or ``--images``, and how the report names their source."""
    if synthetic is None:
        return load_images(str(folder)), str(folder)
    if synthetic < 1:
        raise ValueError("--synthetic needs at least 1 image")
    return images_of_size(synthetic, SYNTHETIC_HW), f"synthetic {SYNTHETIC_HW[0]}x{SYNTHETIC_HW[1]}"


if __name__ == "__main__":
    sys.exit(main())
