"""End-to-end CPU latency of the exported ONNX model (ONNX Runtime) vs the same model in PyTorch eager.

Both sides take one BGR image and return detections in its pixels with pasted masks:
- ONNX Runtime: ``runtime.preprocess`` -> session (the exported graph) -> ``runtime.postprocess``;
- PyTorch: torchvision's own ``model([image])`` (its transform, eval forward and mask pasting).
They run alternately in one process on the same thread count, so the ratio holds on a noisy machine.
The issue's target: ratio <= 0.8 for R-50-FPN at 800 px with 100 detections on 2 threads.

    python benchmarks/bench_export_latency.py --weights r50.pth [--onnx r50.onnx] [--iters 10] [--threads 2]

Without ``--onnx`` the model is exported first (ort flavor) to a temporary file.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from exporter.model_loading import load_model
from exporter.onnx_export import export_onnx
from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from runtime.postprocess import postprocess_batch
from runtime.preprocess import preprocess


def test_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Blocky noise with rectangles: busy enough that a random-init R-50 keeps 100 detections."""
    rng = np.random.default_rng(seed)
    img = (
        rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        .repeat(16, 0)
        .repeat(16, 1)[:h, :w]
    )
    for _ in range(8):
        y, x = rng.integers(0, h - h // 4), rng.integers(0, w - w // 4)
        img[y : y + h // 4, x : x + w // 4] = rng.integers(0, 256, 3, dtype=np.uint8)
    return np.ascontiguousarray(img)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", type=Path, required=True, help="checkpoint or torchvision state dict")
    parser.add_argument("--config-file", type=Path, default=None, help="default: R-50-FPN (torchvision)")
    parser.add_argument("--onnx", type=Path, default=None, help="an exported model of these weights")
    parser.add_argument("--size", default="800x1066", help="input image HxW (default 800x1066)")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(args.threads)

    loaded = load_model(args.config_file, args.weights)
    model = loaded.model
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = args.onnx
        if onnx_path is None:
            onnx_path = Path(tmp) / "model.onnx"
            export_onnx(args.weights, onnx_path, config_file=args.config_file)
        backend = OnnxRuntimeBackend(onnx_path, threads=args.threads)
        image = test_image(h, w)
        params, names = backend.info.preprocess, list(backend.info.class_names)

        def run_onnx() -> int:
            batch = preprocess([image], params)
            dets = postprocess_batch(backend.infer(batch), batch, names)
            return len(dets[0])

        @torch.no_grad()
        def run_torch() -> int:
            tensor = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1).float().div_(255.0)
            out = model([tensor])[0]
            return int(out["boxes"].shape[0])

        counts = {"onnxruntime": run_onnx(), "pytorch": run_torch()}
        for _ in range(args.warmup):
            run_onnx()
            run_torch()
        times: dict[str, list[float]] = {"onnxruntime": [], "pytorch": []}
        for _ in tqdm(range(args.iters), desc="alternating runs", unit="pair"):
            for name, fn in (("onnxruntime", run_onnx), ("pytorch", run_torch)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        backend.close()

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"image {h}x{w}, {args.threads} threads, {args.iters} alternating iterations, "
          f"torch {torch.__version__}, onnx model {onnx_path.name}")  # fmt: skip
    for name in ("onnxruntime", "pytorch"):
        v = sorted(times[name])
        print(f"  {name:12s} median {med[name] * 1000:8.1f} ms  min {v[0] * 1000:8.1f} ms  "
              f"max {v[-1] * 1000:8.1f} ms  detections {counts[name]}")  # fmt: skip
    print(
        f"  ratio onnxruntime / pytorch (medians): {med['onnxruntime'] / med['pytorch']:.3f}  (target <= 0.8)"
    )


if __name__ == "__main__":
    main()
