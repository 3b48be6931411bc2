"""Export, verify, time and score every combination: the measuring half of ``python -m exporter report``.

Each combination becomes one :class:`Row`. Its export reuses the FP32 ONNX (FP16 converts it, INT8
calibrates it, OpenVINO converts the ONNX of its precision), its verification is ``--verify``'s comparison
with PyTorch under the precision's tolerances, its timing is ``runtime.bench`` (every new row in one run,
alternately, at batch 1 and at the larger batch), and its accuracy is ``runtime.evaluate`` against one
PyTorch run on the same images. A finished row is stored under the report folder with the key of its
inputs (weights, config, images, options), so a re-run measures only what changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from exporter.report.combinations import Combination, plan_combinations
from exporter.report.pareto import pareto_front
from runtime.file_hash import file_sha256

#: bump when a row's meaning changes, so stored rows of an older report are measured again
ROW_FORMAT = 1
IOU_TYPES = ("bbox", "segm", "keypoints")


@dataclass(frozen=True)
class ReportOptions:
    """What the report measures; every field but ``output``/``progress`` is part of a row's cache key."""

    weights: Path
    output: Path
    dataset: str = "shapes_val"
    config_file: Path | None = None
    opts: tuple[str, ...] = ()
    backends: tuple[str, ...] = ("onnxruntime", "openvino", "tensorrt")
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")
    max_ap_drop: float = 0.5
    max_images: int | None = None  # evaluated images (None: all the data set lists)
    bench_images: int = 8
    batch: int = 4  # the larger batch timed beside batch 1
    iters: int = 10
    warmup: int = 2
    threads: int | None = None
    verify_images: int = 6  # the first N evaluated images verify each export against PyTorch
    calib_dataset: str | None = None  # INT8 calibration (default: the data set's training split, if named)
    calib_images: Path | None = None
    calib_count: int = 64
    datasets_root: Path = Path("datasets")
    matmul_sizes: tuple[int, ...] | None = None  # the floor's matmul probe (None: runtime.compute_floor's)
    progress: bool = True

    def cache_fields(self) -> dict[str, Any]:
        skip = {"output", "progress", "backends", "precisions"}
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items() if k not in skip}


@dataclass
class Row:
    """One combination, measured (or why not)."""

    backend: str
    precision: str
    key: str = ""
    path: str = ""  # the exported file, relative to the report folder
    file_mb: float = 0.0
    load_s: float = 0.0
    verified: bool = False
    verification: list[str] = field(default_factory=list)  # the failures (empty: passed)
    verify_agreement_ap: float | None = None
    bench: dict[str, dict[str, float]] = field(default_factory=dict)  # "b1", "b4" -> runtime.bench summary
    ap: dict[str, float] = field(default_factory=dict)  # iou type -> AP in points (0-100)
    ap_delta: dict[str, float] = field(default_factory=dict)  # against PyTorch on the same images
    agreement_ap: float | None = None  # AP50 of this row's detections with PyTorch's as ground truth
    matched: float | None = None  # fraction of PyTorch's detections matched
    skipped: str | None = None  # why this combination did not run here
    error: str | None = None  # why it failed

    @property
    def name(self) -> str:
        return f"{self.backend} {self.precision}"

    @property
    def ok(self) -> bool:
        return self.skipped is None and self.error is None and "b1" in self.bench and bool(self.ap)

    def p50(self, batch: str = "b1") -> float:
        return float(self.bench[batch]["p50_ms"])

    def best_batch(self) -> str:
        return max(self.bench, key=lambda b: self.bench[b]["images_per_s"])

    def worst_delta(self) -> float:
        return min(self.ap_delta.values()) if self.ap_delta else float("-inf")

    def primary_ap(self) -> float:
        """The AP the plot and the front use: masks where the model has them, else boxes."""
        return self.ap.get("segm", self.ap.get("bbox", 0.0))


@dataclass
class DeploymentReport:
    options: dict[str, Any]
    rows: list[Row]
    reference: dict[str, Any]  # PyTorch's AP on the same images, and its own timing
    environment: dict[str, Any]
    images: list[str]
    recommendation: str | None
    why: str
    front: list[str]  # names of the rows on the Pareto front
    reused: list[str]  # rows taken from an earlier run
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "options": self.options,
            "rows": [asdict(r) | {"name": r.name} for r in self.rows],
            "reference": self.reference,
            "environment": self.environment,
            "images": self.images,
            "recommendation": self.recommendation,
            "why": self.why,
            "pareto_front": self.front,
            "reused": self.reused,
            "seconds": self.seconds,
        }


def cache_key(options: ReportOptions, combo: Combination, images: Sequence[Path], weights_digest: str) -> str:
    """The hash of everything a row depends on: the weights' bytes, the config's text, the images (names and
    sizes), the options and the combination."""
    config = options.config_file.read_text() if options.config_file else ""
    parts = {
        "format": ROW_FORMAT,
        "weights": weights_digest,
        "config": hashlib.sha256(config.encode()).hexdigest(),
        "images": [(p.name, p.stat().st_size) for p in images],
        "options": options.cache_fields(),
        "combination": [combo.backend, combo.precision],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


#: p50s this close to the fastest count as a tie (run-to-run noise on a busy machine is of this order)
TIE_FRACTION = 0.05


def choose_recommendation(rows: Sequence[Row], max_ap_drop: float) -> tuple[str | None, str]:
    """The verified row with the lowest batch-1 p50 whose AP drops at most ``max_ap_drop`` points in every
    IoU type; and why (or why none). Rows within :data:`TIE_FRACTION` of the fastest tie, and the tie goes to
    the most accurate: FP16 on a CPU runs at FP32's speed, and a 1 % difference is no reason to lose AP."""
    fit = [r for r in rows if r.ok and r.verified and -r.worst_delta() <= max_ap_drop + 1e-9]
    if not fit:
        measured = [r for r in rows if r.ok]
        if not measured:
            return None, "no combination could be measured"
        best = max(measured, key=lambda r: r.worst_delta())
        return None, (f"no verified combination keeps AP within {max_ap_drop:g} points; the closest is "
                      f"{best.name} at {best.worst_delta():+.2f}")  # fmt: skip
    fastest = min(r.p50() for r in fit)
    tied = [r for r in fit if r.p50() <= fastest * (1 + TIE_FRACTION)]
    best = max(tied, key=lambda r: (round(r.worst_delta(), 2), -r.p50()))
    why = (
        f"{best.p50():.1f} ms p50 at batch 1, the fastest of the {len(fit)} verified combination(s) within "
        f"{max_ap_drop:g} AP points of PyTorch (its worst delta {best.worst_delta():+.2f})"
    )
    if len(tied) > 1:
        others = ", ".join(f"{r.name} {r.p50():.1f} ms" for r in tied if r is not best)
        why += f"; tied within {100 * TIE_FRACTION:.0f} % with {others}, and the most accurate of them"
    return best.name, why


def front_of(rows: Sequence[Row]) -> list[str]:
    measured = [r for r in rows if r.ok]
    return [measured[i].name for i in pareto_front([(r.p50(), r.primary_ap()) for r in measured])]


class _Steps:
    """One progress bar over the report's steps (quiet off a terminal, as every bar here)."""

    def __init__(self, total: int, progress: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="report", unit="step", disable=not progress, leave=True)

    def __call__(self, what: str) -> None:
        self.bar.set_postfix_str(what)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def build_report(options: ReportOptions, say: Callable[[str], None] = print) -> DeploymentReport:
    """Measure every combination of ``options`` (reusing stored rows) and choose the recommendation."""
    from runtime.datasets import image_paths, load_coco_annotations, resolve_dataset
    from runtime.environment import environment_info

    started = time.perf_counter()
    out = options.output
    run, skipped = plan_combinations(options.backends, options.precisions)  # checked before writing anything
    spec = resolve_dataset(options.dataset, root=options.datasets_root)
    data = load_coco_annotations(spec.ann_file)
    images = image_paths(spec, data)[: options.max_images]
    if not images:
        raise ValueError(f"{options.dataset} lists no images")
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "rows").mkdir(exist_ok=True)
    digest = file_sha256(options.weights)
    rows: list[Row] = []
    stored: dict[Combination, Row] = {}
    for combo in run:
        key = cache_key(options, combo, images, digest)
        row = _stored_row(out, combo, key)
        if row is not None:
            stored[combo] = row
        rows.append(row or Row(combo.backend, combo.precision, key=key))
    for combo, why in skipped.items():
        rows.append(Row(combo.backend, combo.precision, skipped=why))
    fresh = [r for r in rows if r.skipped is None and not r.ok]
    tag = cache_key(options, Combination("onnxruntime", "fp32"), images, digest)
    reference_path = out / "rows" / f"reference-{tag}.json"
    reference: dict[str, Any] = json.loads(reference_path.read_text()) if reference_path.is_file() else {}
    if fresh or not reference:
        reference = _measure(options, fresh, spec, images, reference, tag, say) or reference
        reference_path.write_text(json.dumps(reference, indent=1))
        for row in fresh:
            if row.ok or row.error:
                _row_path(out, Combination(row.backend, row.precision), row.key).write_text(
                    json.dumps(asdict(row), indent=1)
                )
    recommendation, why = choose_recommendation(rows, options.max_ap_drop)
    report = DeploymentReport(
        options={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        rows=rows, reference=reference, environment=environment_info(),
        images=[p.name for p in images], recommendation=recommendation, why=why, front=front_of(rows),
        reused=[r.name for r in stored.values()], seconds=time.perf_counter() - started,
    )  # fmt: skip
    return report


def _row_path(out: Path, combo: Combination, key: str) -> Path:
    """Where a measured row is kept: its combination and the key of its inputs."""
    return out / "rows" / f"{combo.backend}_{combo.precision}-{key}.json"


def _stored_row(out: Path, combo: Combination, key: str) -> Row | None:
    path = _row_path(out, combo, key)
    if not path.is_file():
        return None
    try:
        row = Row(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None
    model = out / row.path if row.path else None
    if not row.error and (model is None or not model.exists()):
        return None  # its model file is gone: measure it again
    return row


def _measure(
    options: ReportOptions,
    rows: list[Row],
    spec: Any,
    images: list[Path],
    reference: dict[str, Any],
    tag: str,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Export, verify, score and time ``rows`` in place; PyTorch's AP and timing on the same images."""
    from exporter.model_loading import load_model
    from exporter.report.exports import export_row

    steps = _Steps(2 * len(rows) + 2, options.progress)
    try:
        loaded = load_model(options.config_file, options.weights, options.opts)
        verify_dir = options.output / "verify_images"
        verify_dir.mkdir(exist_ok=True)
        for p in images[: options.verify_images]:
            if not (verify_dir / p.name).exists():
                (verify_dir / p.name).write_bytes(p.read_bytes())
        sources: dict[str, Path] = {}
        for row in rows:
            try:
                export_row(row, options, loaded, sources, verify_dir, tag)
            except Exception as e:  # noqa: BLE001 (one combination's failure is its row's, the others go on)
                row.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                say(f"{row.name}: {row.error}")
            steps(f"exported {row.name}")
        live = [r for r in rows if r.error is None]
        reference = _score(options, live, spec, images, reference) or reference
        steps("scored")
        _time(options, live, images)
        for _ in live:
            steps("timed")
        for row in rows:
            if row.error is None and not row.ok:
                row.error = "not measured"
        steps("done")
    finally:
        steps.close()
    return reference


def _predictor_kwargs(options: ReportOptions) -> dict[str, Any]:
    return {"confidence_threshold": 0.0, "threads": options.threads, "strict_options": False}


def _score(
    options: ReportOptions, rows: list[Row], spec: Any, images: list[Path], reference: dict[str, Any]
) -> dict[str, Any]:
    """COCO AP of every row and of PyTorch on the same images; agreement with PyTorch's detections."""
    from runtime.evaluate import evaluate_models_against_reference, plot_precision_recall, save_disagreements
    from runtime.predictor import Predictor

    if not rows:
        return reference
    kwargs = _predictor_kwargs(options)
    ref = Predictor(options.weights, backend="torch", config_file=options.config_file, **kwargs)
    models = [Predictor(options.output / r.path, backend=r.backend, **kwargs) for r in rows]
    try:
        reports = evaluate_models_against_reference(
            models, ref, spec.ann_file, spec.img_dir, len(images), progress=options.progress
        )
    finally:
        for m in [ref, *models]:
            m.close()
    worst: tuple[float, Any, Row] | None = None
    for row, report in zip(rows, reports):
        metrics = report.metrics
        row.ap = {
            t: 100.0 * metrics[report.model.name][t]["AP"]
            for t in IOU_TYPES
            if t in metrics[report.model.name]
        }
        row.ap_delta = report.ap_deltas()
        row.agreement_ap = report.comparison.agreement_ap
        n_ref = report.comparison.num_reference
        row.matched = report.comparison.num_matched / n_ref if n_ref else 1.0
        if worst is None or row.worst_delta() < worst[0]:
            worst = (row.worst_delta(), report, row)
    reference = {
        "ap": {t: 100.0 * reports[0].metrics[reports[0].reference.name][t]["AP"]
               for t in IOU_TYPES if t in reports[0].metrics[reports[0].reference.name]},
        "path": str(options.weights),
    }  # fmt: skip
    if worst is not None:
        _, report, row = worst
        plot_precision_recall(report, options.output / "pr_worst.png")
        drawn = save_disagreements(report, options.output / "disagreements_worst.png", 4, 0.5)
        reference["worst"] = {"name": row.name, "pictures": drawn}
    return reference


def _time(options: ReportOptions, rows: list[Row], images: list[Path]) -> None:
    """Every row alternately in one run per batch size (batch 1 and ``options.batch``), floor columns included."""
    from runtime.bench import BenchSettings, run_benchmark
    from runtime.image_io import read_image

    if not rows:
        return
    from runtime.compute_floor import MATMUL_SIZES, measure_matmul_rate

    pictures = [read_image(p) for p in images[: options.bench_images]]
    paths = [str(options.output / r.path) for r in rows]
    matmul = measure_matmul_rate(options.threads, options.matmul_sizes or MATMUL_SIZES)
    for batch in sorted({1, options.batch}):
        settings = BenchSettings(
            batch=batch, warmup=options.warmup, iters=options.iters, threads=options.threads
        )
        report = run_benchmark(paths, pictures, settings, [r.backend for r in rows], {}, progress=options.progress,
                               matmul=matmul)  # fmt: skip
        matmul = report.matmul
        for row, result in zip(rows, report.models):
            if result.error is not None:
                row.error = f"timing failed: {result.error}"
                continue
            row.bench[f"b{batch}"] = result.summary(batch, report.matmul)
            row.load_s = result.load_s
            row.file_mb = result.file_mb
