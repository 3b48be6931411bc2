"""Good clients of a served model with and without a hostile client, and the server's memory, in one run.

What the hostile-server issue measures: the repository of ``python -m exporter --to triton --backend python``
served by ``scripts/serve.sh`` on loopback; ``runtime.triton.serve_bench`` sends good requests at a fixed
concurrency (each answer checked against the local runtime), once alone and once while a hostile client
sends every class of ``tests/serving/hostile_clients.py`` one at a time. The server's resident memory (the
tritonserver process and its Python stubs, summed from /proc) is sampled every 50 ms.

    python benchmarks/hostile_server.py --repository REPO --onnx MODEL.onnx --images DIR \\
        [--requests 200] [--concurrency 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runtime.canvas import largest_canvas  # noqa: E402
from runtime.model_file import read_model_info  # noqa: E402
from runtime.text_table import format_text_table  # noqa: E402
from runtime.triton.client import TritonClient  # noqa: E402
from runtime.triton.serve_bench import run_serve_bench  # noqa: E402
from runtime.triton.server import TritonProcess, default_serving_python  # noqa: E402
from tests.serving.hostile_clients import HostileClient, hostile_requests  # noqa: E402


def tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and every process below it, in MB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            statm = (entry / "statm").read_text().split()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
        rss[int(entry.name)] = int(statm[1]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total / 1e6


class PeakMemory:
    """The largest :func:`tree_rss_mb` seen while running, sampled every ``interval_s``."""

    def __init__(self, root: int, interval_s: float = 0.05) -> None:
        self.root, self.interval_s, self.peak = root, interval_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_mb(self.root))
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--repository", type=Path, required=True, help="written by exporter --to triton --backend python"
    )
    p.add_argument("--onnx", type=Path, required=True, help="the ONNX the repository serves (the reference)")
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument(
        "--canvas-side",
        type=int,
        help="side of the canvas sent to the network step (default: "
        "twice the largest the export accepts; the issue's attack sent 3008)",
    )
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    serving_python = default_serving_python()
    if serving_python is None:
        print("error: no serving environment: run `bash scripts/setup_serving.sh`", file=sys.stderr)
        return 2
    log = Path(args.json or "hostile_server").with_suffix(".server.log")
    server = TritonProcess.serve_sh(args.repository, serving_python, log_path=log)
    rows, results = [], {}
    try:
        server.wait_ready(180)
        info = read_model_info(args.onnx)
        largest = max(largest_canvas(info.preprocess, info.static_input_size))
        client = TritonClient(server.http_url, timeout_s=60)
        requests = hostile_requests(client, largest, canvas_side=args.canvas_side)
        client.close()
        bench = dict(concurrency=(args.concurrency,), requests=args.requests, warmup=4,
                     reference=str(args.onnx), timeout_s=60, progress=False)  # fmt: skip
        run_serve_bench(server.http_url, args.images, **{**bench, "requests": 8})  # warm every step
        idle = tree_rss_mb(server.process.pid)
        for run in ("calm", "attack"):
            hostile = HostileClient(server.http_url, requests) if run == "attack" else None
            with PeakMemory(server.process.pid) as memory:
                if hostile:
                    hostile.start()
                report = run_serve_bench(server.http_url, args.images, **bench)
                if hostile:
                    hostile.stop()
            level = report.levels[0]
            s = level.summary()
            results[run] = {"summary": s, "errors": len(level.errors), "mismatches": len(level.mismatches),
                            "peak_rss_mb": memory.peak, "idle_rss_mb": idle,
                            "hostile_sent": dict(hostile.sent) if hostile else {},
                            "hostile_wrong": hostile.wrong if hostile else [],
                            "hostile_slowest_s": hostile.seconds if hostile else {},
                            "hostile_cpu_s": hostile.cpu_s if hostile else 0.0, "wall_s": level.wall_s}  # fmt: skip
            rows.append([run, f"{s['images_per_s']:.2f}", f"{s['p50_ms']:.1f}", f"{s['p90_ms']:.1f}",
                         f"{s['p99_ms']:.1f}", str(len(level.errors)), str(len(level.mismatches)),
                         str(sum(hostile.sent.values())) if hostile else "0", str(len(hostile.wrong)) if hostile else "-",
                         f"{memory.peak:.0f}"])  # fmt: skip
    finally:
        status = server.stop()
    print(f"server: idle {idle:.0f} MB resident (tritonserver + stubs); stopped with status {status}")
    print(format_text_table(["run", "images/s", "p50 ms", "p90 ms", "p99 ms", "errors", "mismatches",
                             "hostile sent", "hostile wrong", "peak MB"], rows))  # fmt: skip
    ratio = results["attack"]["summary"]["p99_ms"] / results["calm"]["summary"]["p99_ms"]
    print(
        f"good p99 under attack / calm: {ratio:.2f}x; peak / idle memory: "
        f"{results['attack']['peak_rss_mb'] / idle:.2f}x"
    )
    attack = results["attack"]
    print(
        f"the hostile client's own CPU time: {attack['hostile_cpu_s']:.1f} s of the attack run's "
        f"{attack['wall_s']:.1f} s (it runs on this machine, beside the server)"
    )
    for name, seconds in sorted(results["attack"]["hostile_slowest_s"].items()):
        print(
            f"  {name}: {results['attack']['hostile_sent'][name]} sent, slowest answer {seconds * 1e3:.0f} ms"
        )
    for wrong in results["attack"]["hostile_wrong"][:10]:
        print(f"  WRONG {wrong}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
