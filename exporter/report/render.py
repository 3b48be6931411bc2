"""The report as people read it: ``report.json``, ``report.md``, ``index.html`` and their pictures.

The table is one row per combination (skipped ones say why); the plot is latency at batch 1 against AP
with the Pareto front drawn; the stage plot splits each row's batch-1 time into pre-processing, network and
post-processing; the PR curves and disagreement pictures are of the combination that lost the most AP.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

from exporter.report.measure import DeploymentReport, Row
from runtime.atomic_files import write_atomic
from runtime.text_table import format_text_table

HEADERS = ["backend", "precision", "file MB", "load s", "p50 ms", "p90 ms", "p99 ms", "img/s (batch)",
           "p50/floor", "bbox AP", "segm AP", "kp AP", "agreement AP50", "matched", "verified", "note"]  # fmt: skip


def _ap(row: Row, iou: str) -> str:
    if iou not in row.ap:
        return "-"
    return f"{row.ap[iou]:.2f} ({row.ap_delta.get(iou, 0.0):+.2f})"


def table_rows(report: DeploymentReport) -> list[list[str]]:
    """The table's cells, in :data:`HEADERS`' order."""
    rows = []
    for r in report.rows:
        if not r.ok:
            note = r.skipped or r.error or "not measured"
            rows.append([r.backend, r.precision, *["-"] * (len(HEADERS) - 3), note])
            continue
        b1 = r.bench["b1"]
        best = r.best_batch()
        floor = b1.get("total_to_floor")
        note = (
            "recommended"
            if r.name == report.recommendation
            else ("Pareto front" if r.name in report.front else "")
        )
        if not r.verified:
            note = (note + "; " if note else "") + "verification: " + r.verification[0]
        rows.append([
            r.backend, r.precision, f"{r.file_mb:.1f}", f"{r.load_s:.2f}", f"{b1['p50_ms']:.1f}",
            f"{b1['p90_ms']:.1f}", f"{b1['p99_ms']:.1f}", f"{r.bench[best]['images_per_s']:.2f} ({best[1:]})",
            f"{floor:.2f}x" if floor is not None else "-", _ap(r, "bbox"), _ap(r, "segm"), _ap(r, "keypoints"),
            "-" if r.agreement_ap is None else f"{r.agreement_ap:.3f}",
            "-" if r.matched is None else f"{100 * r.matched:.1f}%", "yes" if r.verified else "NO", note,
        ])  # fmt: skip
    return rows


def summary_lines(report: DeploymentReport) -> list[str]:
    env = report.environment
    ref = report.reference.get("ap", {})
    lines = [
        f"Recommendation: {report.recommendation or 'none'}: {report.why}.",
        f"PyTorch (the reference) on the same {len(report.images)} images: "
        + ", ".join(f"{t} AP {v:.2f}" for t, v in ref.items()),
        f"Machine: {env.get('cpu', '?')}, {env.get('cpu_count', '?')} cores, features "
        f"{', '.join(env.get('cpu_features', [])) or 'none'}; {env.get('platform', '')}",
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()),
        f"Latency: batch 1 over {report.options.get('bench_images')} images, {report.options.get('iters')} "
        f"iterations each, all combinations alternately in one run; p50/floor is the end-to-end time over the "
        f"compute floor (the model's FLOPs at this machine's measured matmul rate).",
    ]
    if report.reused:
        lines.append(
            f"Reused from an earlier run (same weights, config, images and options): {', '.join(report.reused)}."
        )
    lines.append(f"Measured in {report.seconds:.0f} s.")
    return lines


def format_text(report: DeploymentReport) -> str:
    return "\n".join([*summary_lines(report), "", format_text_table(HEADERS, table_rows(report))])


def plot_latency_against_ap(report: DeploymentReport, path: Path) -> bool:
    """Each measured row as a point (p50 at batch 1, the primary AP), the front joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if r.ok]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        marker = "*" if r.name == report.recommendation else ("o" if r.verified else "x")
        ax.scatter(r.p50(), r.primary_ap(), s=140 if marker == "*" else 50, marker=marker, zorder=3)
        ax.annotate(r.name, (r.p50(), r.primary_ap()), textcoords="offset points", xytext=(6, 4), fontsize=8)
    front = [r for name in report.front for r in rows if r.name == name]
    ax.plot(
        [r.p50() for r in front], [r.primary_ap() for r in front], "--", color="gray", label="Pareto front"
    )
    ref = report.reference.get("ap", {})
    ref_ap = ref.get("segm", ref.get("bbox"))
    if ref_ap is not None:
        ax.axhline(ref_ap, color="green", linewidth=0.8, label="PyTorch")
        budget = float(report.options.get("max_ap_drop", 0.5))
        ax.axhspan(ref_ap - budget, ref_ap, color="green", alpha=0.08, label=f"within {budget:g} AP")
    kind = "segm" if any("segm" in r.ap for r in rows) else "bbox"
    ax.set_xlabel("p50 latency at batch 1 (ms, end to end)")
    ax.set_ylabel(f"{kind} AP")
    ax.set_title("latency against accuracy (* recommended, x failed verification)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_stages(report: DeploymentReport, path: Path) -> bool:
    """Batch-1 time of each row split into pre-processing, network and post-processing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if r.ok]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.5))
    left = [0.0] * len(rows)
    for stage, label in (
        ("pre_ms", "pre-processing"),
        ("infer_ms", "network"),
        ("post_ms", "post-processing"),
    ):
        widths = [r.bench["b1"][stage] for r in rows]
        ax.barh([r.name for r in rows], widths, left=left, label=label)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_xlabel("ms per image at batch 1 (medians)")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def markdown(report: DeploymentReport, pictures: Sequence[str]) -> str:
    rows = table_rows(report)
    lines = ["# Deployment report", "", *[f"- {line}" for line in summary_lines(report)], ""]
    lines += ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    lines += ["", *[f"![{p}]({p})" for p in pictures]]
    return "\n".join(lines) + "\n"


def html_page(report: DeploymentReport, pictures: Sequence[str]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in HEADERS)
    body = []
    for row, r in zip(table_rows(report), report.rows):
        cls = "rec" if r.name == report.recommendation else ("skip" if not r.ok else "")
        body.append(f"<tr class='{cls}'>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
    items = "".join(f"<li>{esc(line)}</li>" for line in summary_lines(report))
    figures = "".join(f"<figure><img src='{esc(p)}' alt='{esc(p)}'><figcaption>{esc(p)}</figcaption></figure>"
                      for p in pictures)  # fmt: skip
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Deployment report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 7px; text-align: right; }}
th {{ background: #f0f0f0; }} td:first-child, td:nth-child(2), td:last-child {{ text-align: left; }}
tr.rec td {{ background: #e6f4e6; font-weight: 600; }} tr.skip td {{ color: #888; }}
figure {{ display: inline-block; margin: 1em 1em 0 0; }} img {{ max-width: 720px; border: 1px solid #ddd; }}
</style></head><body>
<h1>Deployment report</h1>
<ul>{items}</ul>
<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>
{figures}
</body></html>
"""


def write_report(report: DeploymentReport, output: Path) -> list[Path]:
    """Write the JSON, Markdown and HTML (and the plots) into ``output``; the paths written."""
    pictures = []
    if plot_latency_against_ap(report, output / "latency_vs_ap.png"):
        pictures.append("latency_vs_ap.png")
    if plot_stages(report, output / "stages.png"):
        pictures.append("stages.png")
    pictures += [p for p in ("pr_worst.png", "disagreements_worst.png") if (output / p).is_file()]
    written = []
    for name, text in (("report.json", json.dumps(report.to_dict(), indent=1, default=str)),
                       ("report.md", markdown(report, pictures)), ("index.html", html_page(report, pictures))):  # fmt: skip
        write_atomic(output / name, lambda tmp, text=text: Path(tmp).write_text(text))
        written.append(output / name)
    return written + [output / p for p in pictures]
