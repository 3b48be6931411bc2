"""The benchmark as people read it: text tables (per model, per batch size, per operator type) and the plot."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from runtime.bench.measure import BenchReport
from runtime.op_profile import OpProfile, format_op_profile
from runtime.text_table import format_text_table


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
