"""Throughput and latency of a Triton server at several concurrency levels: ``python -m runtime.triton.serve_bench``.

    python -m runtime.triton.serve_bench --url grpc://localhost:8001 --images DIR --concurrency 1,2,4,8 \
        --reference model.onnx [--json out.json] [--plot out.png]

Each request sends one image file's bytes to the ensemble of a repository written by ``python -m exporter
--to triton`` and gets its detections in image pixels back. Every level sends ``--requests`` requests from
that many client threads (one connection each) after a warm-up, and reports images/s and the p50/p90/p99
request latency, plus the network step's average batch (Triton's own statistics: what dynamic batching
made of the load). Every response is checked against what the local runtime gives for the same image
(``--reference``: a model file run here; default: the server's network step through the Triton backend,
which checks the server's pre/post-processing steps only): same detections, boxes within 1e-4 px, scores
within 1e-5, masks pixel for pixel. Exit status 1 when a response differs or fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.cli_common import add_progress_argument, cli_main, user_errors
from runtime.environment import environment_info
from runtime.image_io import ImageReadError, decode_image, list_images
from runtime.predictor import Predictor
from runtime.structures import Detections
from runtime.text_table import format_text_table
from runtime.triton import contract as tc
from runtime.triton.client import (
    TritonClient,
    TritonClientError,
    TritonURL,
    compare_served,
    detections_from_response,
    encoded_image_input,
    ensemble_outputs,
    parse_url,
)

log = logging.getLogger(__name__)


@dataclass
class Level:
    """One concurrency level: every request's latency (s), and what went wrong."""

    concurrency: int
    requests: int = 0
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    network_batch: float | None = None  # the network step's inferences per execution during the level

    def summary(self) -> dict[str, float]:
        t = np.asarray(self.latencies) if self.latencies else np.zeros(1)
        return {
            "images_per_s": len(self.latencies) / self.wall_s if self.wall_s > 0 else 0.0,
            "p50_ms": 1e3 * float(np.percentile(t, 50)),
            "p90_ms": 1e3 * float(np.percentile(t, 90)),
            "p99_ms": 1e3 * float(np.percentile(t, 99)),
            "mean_ms": 1e3 * float(t.mean()),
        }


@dataclass
class Reference:
    """The local runtime's detections of one image, with a digest of its 0/1 masks for cheap comparisons."""

    name: str
    detections: Detections
    mask_digest: str | None


@dataclass
class ServeReport:
    url: str
    model: str
    server: dict[str, Any]
    reference: str
    images: list[str]
    checked: dict[str, list[str]]  # image name -> problems of its first response (empty: equal)
    levels: list[Level]
    environment: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not any(self.checked.values()) and not any(lv.errors or lv.mismatches for lv in self.levels)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for lv, out in zip(self.levels, d["levels"]):
            out["summary"] = lv.summary()
            out["errors"], out["mismatches"] = lv.errors[:20], lv.mismatches[:20]
        return d


def mask_digest(masks: np.ndarray | None) -> str | None:
    return None if masks is None else hashlib.sha1(np.packbits(masks > 0.5).tobytes()).hexdigest()


def server_facts(client: TritonClient, model: str) -> tuple[dict[str, Any], dict[str, str], str | None]:
    """The ensemble's steps, the post-processing step's parameters and the network step's name."""
    config = client.model_config(model)
    if config.get("platform") != "ensemble":
        raise ValueError(f"{model} is not an ensemble; give the ensemble of an exported repository (--model)")
    facts: dict[str, Any] = {"steps": {}}
    post: dict[str, str] = {}
    network = None
    for step in config.get("ensemble_scheduling", {}).get("step", []):
        name = str(step["model_name"])
        step_config = client.model_config(name)
        params = tc.config_parameters(step_config)
        batching = step_config.get("dynamic_batching")
        facts["steps"][name] = {
            "backend": step_config.get("backend") or step_config.get("platform"),
            "max_batch_size": step_config.get("max_batch_size"),
            "instances": sum(int(g.get("count", 1)) for g in step_config.get("instance_group", [])),
            "dynamic_batching": None if batching is None else dict(batching),
        }
        if params.get(tc.PARAM_STEP) == tc.STEP_POSTPROCESS:
            post = params
        elif {t["name"] for t in step_config.get("input", [])} >= {"images", "image_sizes"}:
            network = name
    facts["outputs"] = ensemble_outputs(config)
    return facts, post, network


def inference_counts(client: TritonClient, model: str | None) -> tuple[int, int] | None:
    """(inference_count, execution_count) of a model from Triton's statistics, where it has them."""
    if model is None:
        return None
    try:
        if client.url.protocol == "grpc":
            stats = client.client.get_inference_statistics(model, as_json=True)
        else:
            stats = client.client.get_inference_statistics(model)
        entry = stats["model_stats"][0]
        return int(entry.get("inference_count", 0)), int(entry.get("execution_count", 0))
    except Exception as e:  # statistics are a nicety: never fail the benchmark on them
        log.debug("no statistics for %s: %s", model, e)
        return None


def run_level(url: TritonURL, model: str, outputs: Sequence[str], payloads: Sequence[bytes],
              references: Sequence[Reference] | None, concurrency: int, requests: int,
              class_names: Sequence[str], timeout_s: float | None) -> Level:  # fmt: skip
    """``requests`` requests from ``concurrency`` threads, one client each, images taken in turn."""
    level = Level(concurrency)
    lock = threading.Lock()
    counter = iter(range(requests))
    clients = [TritonClient(url, timeout_s) for _ in range(concurrency)]
    start = threading.Barrier(concurrency + 1)

    def worker(client: TritonClient) -> None:
        start.wait()
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            k = i % len(payloads)
            t0 = time.perf_counter()
            try:
                response = client.infer(model, encoded_image_input(payloads[k]), outputs)
            except TritonClientError as e:
                with lock:
                    level.errors.append(f"request {i}: {e}")
                continue
            elapsed = time.perf_counter() - t0
            problem = None
            if references is not None:
                ref = references[k]
                served = detections_from_response(response, ref.detections.image_size, class_names)
                if len(served) != len(ref.detections) or mask_digest(served.masks) != ref.mask_digest or (
                    len(served) and (float(np.abs(served.boxes - ref.detections.boxes).max()) > 1e-4
                                     or float(np.abs(served.scores - ref.detections.scores).max()) > 1e-5)
                ):  # fmt: skip
                    problem = f"{ref.name}: " + "; ".join(compare_served(ref.detections, served))
            with lock:
                level.latencies.append(elapsed)
                if problem:
                    level.mismatches.append(problem)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    level.wall_s = time.perf_counter() - t0
    level.requests = requests
    for c in clients:
        c.close()
    return level


def run_serve_bench(
    url: str,
    images: str | os.PathLike[str],
    concurrency: Sequence[int] = (1, 2, 4, 8),
    model: str | None = None,
    requests: int = 64,
    warmup: int = 4,
    reference: str | None = None,
    check: bool = True,
    timeout_s: float | None = 120.0,
    threads: int | None = None,
    progress: bool = True,
) -> ServeReport:
    target = parse_url(url)
    name = model or target.model or tc.DEFAULT_MODEL_NAME
    paths = list_images(images)
    payloads, decoded, names = [], [], []
    for path in paths:
        data = path.read_bytes()
        try:
            decoded.append(decode_image(data, str(path)))
        except ImageReadError as e:
            log.warning("skipping %s", e)
            continue
        payloads.append(data)
        names.append(path.name)
    if not payloads:
        raise FileNotFoundError(f"no readable images in {images}")
    client = TritonClient(target, timeout_s)
    facts, post, network = server_facts(client, name)
    threshold = float(post.get(tc.PARAM_CONFIDENCE_THRESHOLD, "0"))
    mask_threshold = float(post.get(tc.PARAM_MASK_THRESHOLD, tc.DEFAULT_MASK_THRESHOLD))
    outputs = facts["outputs"]
    refs: list[Reference] | None = None
    checked: dict[str, list[str]] = {}
    class_names: list[str] = []
    ref_name = "none (--no-check)"
    if check:
        source = reference or f"{target.protocol}://{target.address}/{network or name}"
        ref_name = reference or f"{source} (the server's network step, local pre/post-processing)"
        with Predictor(source, confidence_threshold=threshold, threads=threads, strict_options=False) as pred:
            class_names = pred.class_names
            refs = []
            for n, img in zip(names, decoded):
                det = pred.predict(img)
                if det.masks is not None:  # the server sends masks thresholded at its mask threshold
                    det.masks = (det.masks > mask_threshold).astype(np.float32)
                refs.append(Reference(n, det, mask_digest(det.masks)))
        for ref, data in zip(refs, payloads):
            response = client.infer(name, encoded_image_input(data), outputs)
            served = detections_from_response(response, ref.detections.image_size, class_names)
            checked[ref.name] = compare_served(ref.detections, served)
    for i in range(warmup):
        client.infer(name, encoded_image_input(payloads[i % len(payloads)]), outputs)
    levels = []
    for c in concurrency:
        before = inference_counts(client, network)
        level = run_level(target, name, outputs, payloads, refs, int(c), max(int(requests), int(c)), class_names,
                          timeout_s)  # fmt: skip
        after = inference_counts(client, network)
        if before and after and after[1] > before[1]:
            level.network_batch = (after[0] - before[0]) / (after[1] - before[1])
        levels.append(level)
        if progress:
            s = level.summary()
            print(
                f"concurrency {c}: {s['images_per_s']:.2f} images/s, p50 {s['p50_ms']:.1f} ms",
                file=sys.stderr,
            )
    client.close()
    return ServeReport(str(target), name, facts, ref_name, names, checked, levels, environment_info())


def format_report(report: ServeReport) -> str:
    env = report.environment
    steps = report.server["steps"]
    lines = [
        f"CPU: {env['cpu']} ({env['cpu_count']} logical cores); {env['platform']}",
        f"server: {report.url}, ensemble {report.model}: "
        + "; ".join(
            f"{n} ({s['backend']}, x{s['instances']}, batching "
            f"{'off' if s['dynamic_batching'] is None else str(s['dynamic_batching'].get('max_queue_delay_microseconds', 0)) + ' us'})"
            for n, s in steps.items()
        ),  # fmt: skip
        f"images: {len(report.images)}; reference: {report.reference}",
    ]
    headers = [
        "concurrency",
        "requests",
        "images/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "net batch",
        "errors",
        "mismatches",
    ]
    rows = []
    for lv in report.levels:
        s = lv.summary()
        rows.append([str(lv.concurrency), str(lv.requests), f"{s['images_per_s']:.2f}", f"{s['p50_ms']:.1f}",
                     f"{s['p90_ms']:.1f}", f"{s['p99_ms']:.1f}",
                     "-" if lv.network_batch is None else f"{lv.network_batch:.2f}", str(len(lv.errors)),
                     str(len(lv.mismatches))])  # fmt: skip
    lines += ["", format_text_table(headers, rows)]
    if report.checked:
        bad = {k: v for k, v in report.checked.items() if v}
        lines.append("")
        lines.append(
            f"check: {len(report.checked) - len(bad)}/{len(report.checked)} images answered exactly as the local "
            "runtime (boxes 1e-4 px, scores 1e-5, masks pixel for pixel)"
        )
        lines += [f"  {k}: {'; '.join(v)}" for k, v in bad.items()]
    problems = [p for lv in report.levels for p in (*lv.errors[:3], *lv.mismatches[:3])]
    if problems:
        lines += ["", "problems under load (first ones):", *[f"  {p}" for p in problems]]
    return "\n".join(lines)


def plot_report(report: ServeReport, path: str | os.PathLike[str]) -> None:
    """Images/s and p50/p90/p99 latency against the concurrency level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conc = [lv.concurrency for lv in report.levels]
    sums = [lv.summary() for lv in report.levels]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(conc, [s["images_per_s"] for s in sums], "o-")
    ax1.set_xlabel("concurrent requests")
    ax1.set_ylabel("images / s")
    ax1.set_xscale("log", base=2)
    for key, style in (("p50_ms", "o-"), ("p90_ms", "s--"), ("p99_ms", "^:")):
        ax2.plot(conc, [s[key] for s in sums], style, label=key.replace("_ms", ""))
    ax2.set_xlabel("concurrent requests")
    ax2.set_ylabel("latency, ms")
    ax2.set_xscale("log", base=2)
    ax2.legend()
    for ax in (ax1, ax2):
        ax.set_xticks(conc, [str(c) for c in conc])
        ax.grid(alpha=0.3)
    fig.suptitle(f"{report.model} at {report.url}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _levels(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 1,2,4,8, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"concurrency levels must be >= 1, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runtime.triton.serve_bench", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--url", required=True, help="grpc://HOST:8001 or http://HOST:8000 (no scheme: gRPC)")
    p.add_argument("--model", help=f"the ensemble (default: the URL's path, else {tc.DEFAULT_MODEL_NAME})")
    p.add_argument("--images", required=True, help="folder or glob of images (sent as their files' bytes)")
    p.add_argument("--concurrency", type=_levels, default=[1, 2, 4, 8], help="levels, e.g. 1,2,4,8")
    p.add_argument("--requests", type=int, default=64, help="requests per level (default 64)")
    p.add_argument("--warmup", type=int, default=4, help="requests before the first level")
    p.add_argument(
        "--reference", help="model file the local runtime runs for the check (.onnx, .pth, .engine)"
    )
    p.add_argument("--no-check", action="store_true", help="don't compare responses with the local runtime")
    p.add_argument("--threads", type=int, help="CPU threads of the local reference")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--json", help="write the report to this JSON file")
    p.add_argument("--plot", help="write throughput and latency against concurrency (PNG)")
    add_progress_argument(p)
    return p


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with user_errors(TritonClientError, ImportError):
        report = run_serve_bench(
            args.url, args.images, args.concurrency, args.model, args.requests, args.warmup, args.reference,
            not args.no_check, args.timeout, args.threads, not args.no_progress,
        )  # fmt: skip
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2))
        print(f"wrote {args.json}")
    if args.plot:
        plot_report(report, args.plot)
        print(f"wrote {args.plot}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
