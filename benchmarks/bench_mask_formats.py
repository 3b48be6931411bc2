"""Box masks against full-image masks in Triton responses: bytes on the wire and the postprocess step's time.

One repository holds two ensembles of the same ONNX (``maskrcnn_box``: ``--masks box``, the default, and
``maskrcnn_full``: ``--masks full``), served by ``scripts/serve.sh``; the same photo, upscaled to about
12 MP, is sent to each in turn. Response size is the bytes of the output tensors; server time is the
postprocess step's compute time from Triton's statistics. The box response is put back into full masks
(``detections_from_response``) and compared with the full one, pixel for pixel.

    python benchmarks/bench_mask_formats.py --weights W.pth [--image PHOTO] [--megapixels 12] \\
        [--detections 50] [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from exporter.cli import main as exporter_main  # noqa: E402
from runtime import onnx_contract as contract  # noqa: E402
from runtime.text_table import format_text_table  # noqa: E402
from runtime.triton import contract as tc  # noqa: E402
from runtime.triton.client import TritonClient, detections_from_response, encoded_image_input  # noqa: E402
from runtime.triton.server import TritonProcess, default_serving_python  # noqa: E402


def postprocess_ns(http_url: str, model: str) -> tuple[int, int]:
    """(count, total compute ns) of a model's executions so far, from Triton's statistics."""
    with urllib.request.urlopen(f"{http_url}/v2/models/{model}/stats", timeout=10) as response:
        stats = json.loads(response.read())["model_stats"][0]["inference_stats"]["compute_infer"]
    return int(stats["count"]), int(stats["ns"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=REPO / "output/shapes_mask_rcnn_R_18_FPN/model_final.pth")
    p.add_argument("--image", type=Path, default=REPO / "tests/data/foreign/images/coffee_480x640.jpg")
    p.add_argument("--megapixels", type=float, default=12.0)
    p.add_argument("--detections", type=int, default=50)
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    serving_python = default_serving_python()
    if serving_python is None:
        print("error: no serving environment: run `bash scripts/setup_serving.sh`", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="mask-formats-"))
    try:
        repo = work / "repo"
        for masks in ("box", "full"):
            out = work / masks
            rc = exporter_main(["--to", "triton", "--weights", str(args.weights), "--output", str(out),
                                "--backend", "python", "--masks", masks, "--model-name", f"maskrcnn_{masks}",
                                "--confidence-threshold", "0", "--quiet",
                                "TEST.DETECTIONS_PER_IMG", str(args.detections), "MODEL.ROI_HEADS.SCORE_THRESH", "0.0"])  # fmt: skip
            if rc != 0:
                return rc
            repo.mkdir(exist_ok=True)
            for model in out.iterdir():
                if model.is_dir():
                    shutil.move(str(model), repo / model.name)
        photo = cv2.imread(str(args.image))
        scale = (args.megapixels * 1e6 / (photo.shape[0] * photo.shape[1])) ** 0.5
        big = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        data = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        size = big.shape[:2]

        server = TritonProcess.serve_sh(repo, serving_python, log_path=work / "server.log")
        results: dict[str, dict[str, float]] = {}
        responses = {}
        try:
            server.wait_ready(180)
            client = TritonClient(server.http_url, timeout_s=300)
            outputs = {m: [str(o["name"]) for o in client.model_config(f"maskrcnn_{m}")["output"]]
                       for m in ("box", "full")}  # fmt: skip
            for masks in ("box", "full"):  # warm-up
                client.infer(f"maskrcnn_{masks}", encoded_image_input(data), outputs[masks])
            walls: dict[str, list[float]] = {"box": [], "full": []}
            before = {
                m: postprocess_ns(server.http_url, f"maskrcnn_{m}_{tc.STEP_POSTPROCESS}") for m in walls
            }
            for _ in range(args.repeats):
                for masks in ("box", "full"):  # alternately, so that drift hits both
                    started = time.perf_counter()
                    responses[masks] = client.infer(
                        f"maskrcnn_{masks}", encoded_image_input(data), outputs[masks]
                    )
                    walls[masks].append(time.perf_counter() - started)
            for masks in walls:
                count, ns = postprocess_ns(server.http_url, f"maskrcnn_{masks}_{tc.STEP_POSTPROCESS}")
                runs = count - before[masks][0]
                results[masks] = {
                    "response_mb": sum(v.nbytes for v in responses[masks].values()) / 1e6,
                    "postprocess_ms": (ns - before[masks][1]) / 1e6 / max(runs, 1),
                    "request_ms": 1e3 * float(np.median(walls[masks])),
                    "detections": int(len(responses[masks][contract.OUTPUT_SCORES][0])),
                }
            client.close()
        finally:
            server.stop()
        box = detections_from_response(responses["box"], size)
        full = detections_from_response(responses["full"], size)
        same = box.masks is not None and full.masks is not None and np.array_equal(box.masks, full.masks)
        rows = [[m, str(int(r["detections"])), f"{r['response_mb']:.2f}", f"{r['postprocess_ms']:.1f}",
                 f"{r['request_ms']:.0f}"] for m, r in results.items()]  # fmt: skip
        print(
            f"{args.image.name} upscaled to {size[1]}x{size[0]} ({size[0] * size[1] / 1e6:.1f} MP), "
            f"{args.repeats} requests each, alternately"
        )
        print(format_text_table(["masks", "detections", "response MB", "postprocess ms", "request ms (median)"],
                                rows))  # fmt: skip
        f, b = results["full"], results["box"]
        print(
            f"full / box: response {f['response_mb'] / b['response_mb']:.1f}x, postprocess time "
            f"{f['postprocess_ms'] / b['postprocess_ms']:.2f}x, request {f['request_ms'] / b['request_ms']:.2f}x; "
            f"box masks put back equal the full ones: {same}"
        )
        return 0 if same else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
