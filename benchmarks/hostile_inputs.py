"""Hostile files through the real command lines: how many were tried, crashes, tracebacks, peak memory.

Each input class gets the crafted files of the hostile-files issue plus seeded random byte edits of a valid
file, and each file runs through the command a user would give it to, in its own process:

    pickle      python -m exporter --to onnx --weights X.pkl --config-file <detectron2 config>
    torch zip   python -m exporter --to onnx --weights X.pth
    YAML        python -m trainer eval --config-file X.yaml --weights <checkpoint>
    images      python -m runtime.webcam --model <onnx> --input X --no-display   (one file per format)
    plugins     python -m runtime.bench --model X.onnx --synthetic 1             (trt flavor, attributes edited)
    targets     python -m exporter --to triton / runtime.webcam --output onto files that are not theirs

A run passes when it exits 0, 1 or 2 (no signal), prints no Python traceback and its peak resident memory
(``wait4``'s ``ru_maxrss`` of that process) stays under ``--max-rss-mb``. Prints one row per class.

    python benchmarks/hostile_inputs.py [--per-class 12] [--max-rss-mb 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PY = sys.executable
D2 = REPO / "tests" / "data" / "foreign" / "d2_mask_rcnn_R_50_FPN_1x"
SHAPES_CONFIG = REPO / "configs" / "shapes_mask_rcnn_R_18_FPN.yaml"


def mutations(data: bytes, count: int, seed: int) -> Iterator[bytes]:
    """``count`` seeded edits of ``data``: a few bytes changed, then maybe cut short."""
    rng = random.Random(seed)
    for _ in range(count):
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        if rng.random() < 0.3:
            b = b[: rng.randrange(1, len(b))]
        yield bytes(b)


#: started from a small process, so that the measured command's peak memory is its own: Linux keeps a
#: child's ru_maxrss across exec, and a child forked from this (torch-sized) process would start at its size
LAUNCHER = """
import json, os, subprocess, sys, time
proc = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=open(sys.argv[1], "wb"))
deadline = time.monotonic() + 300
while True:
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    if pid:
        break
    if time.monotonic() > deadline:
        proc.kill()
        pid, status, usage = os.wait4(proc.pid, 0)
        break
    time.sleep(0.02)
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "rss_kb": usage.ru_maxrss}))
"""


def run(cmd: list[str]) -> dict:
    """Run one command; its exit status, whether it printed a traceback, its own peak memory."""
    start = time.perf_counter()
    with tempfile.NamedTemporaryFile(suffix=".err") as err:
        out = subprocess.run([PY, "-c", LAUNCHER, err.name, *cmd], cwd=REPO, capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)  # fmt: skip
        measured = json.loads(out.stdout)
        text = Path(err.name).read_text(errors="replace")
    return {
        "rc": measured["rc"],
        "traceback": "Traceback (most recent call last)" in text,
        "rss_mb": measured["rss_kb"] / 1024,
        "seconds": time.perf_counter() - start,
        "last_line": (text.strip().splitlines() or [""])[-1][:200],
    }


def to_onnx(weights: Path, output: Path, *extra: str) -> list[str]:
    """The export command a user gives a checkpoint (where the checkpoint reader runs)."""
    return [PY, "-m", "exporter", "--to", "onnx", "--weights", str(weights), "--output", str(output), *extra]


def pickles(tmp: Path, n: int) -> Iterator[list[str]]:
    from tests.foreign.test_foreign_weights import _hostile_pickles

    crafted = [data for data, _ in _hostile_pickles().values()]
    crafted.append(pickle.dumps({"model": {"w": _Exploit()}, "__author__": "x"}))
    small = pickle.dumps({"model": {"a": np.ones((3, 4), np.float32)}, "__author__": "x"}, protocol=2)
    for i, data in enumerate([*crafted, *mutations(small, max(0, n - len(crafted)), 1)]):
        path = tmp / f"p{i}.pkl"
        path.write_bytes(data)
        yield to_onnx(path, tmp / f"p{i}.onnx", "--config-file", str(D2 / "config.yaml"))


class _Exploit:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo pwned",))


def torch_zips(tmp: Path, n: int) -> Iterator[list[str]]:
    import torch

    valid = tmp / "valid.pth"
    torch.save({"model": {"w": torch.ones(3)}, "config": "MODEL: {}"}, valid)
    for i, data in enumerate(mutations(valid.read_bytes(), n, 2)):
        path = tmp / f"z{i}.pth"
        path.write_bytes(data)
        yield to_onnx(path, tmp / f"z{i}.onnx")


def yamls(tmp: Path, n: int, weights: Path) -> Iterator[list[str]]:
    crafted = [
        b"MODEL: &a {X: *a}\n",
        b"a: &a [x,x,x,x,x,x,x,x,x]\n" + b"".join(b"%c: &%c [*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c]\n" % ((c,) + (c,) + (c - 1,) * 9) for c in range(98, 106)),
        bytes(range(256)) * 4,
        b"MODEL:\n" + b"".join(b" " * (i + 1) + b"A%d:\n" % i for i in range(200)),
        b"SOLVER: {BASE_LR: 1e999}\n",
        b"INPUT: {MIN_SIZE_TEST: -5}\n",
    ]  # fmt: skip
    for i, data in enumerate([*crafted, *mutations(SHAPES_CONFIG.read_bytes(), max(0, n - len(crafted)), 3)]):
        path = tmp / f"y{i}.yaml"
        path.write_bytes(data)
        yield [PY, "-m", "trainer", "eval", "--config-file", str(path), "--weights", str(weights),
               "--max-images", "1", "DATASETS.TEST", "('no_such_dataset',)"]  # fmt: skip


def images(tmp: Path, n: int, model: Path) -> Iterator[list[str]]:
    import cv2

    from tests.runtime.test_image_io import HOSTILE

    crafted = [data for data, _ in HOSTILE.values()]
    base = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    valid = [
        cv2.imencode(ext, base)[1].tobytes() for ext in (".png", ".jpg", ".bmp", ".tif", ".webp", ".ppm")
    ]
    edited = [
        m for k, v in enumerate(valid) for m in mutations(v, max(1, (n - len(crafted)) // len(valid)), 10 + k)
    ]
    for i, data in enumerate([*crafted, *edited]):
        path = tmp / f"i{i}.img"
        path.write_bytes(data)
        yield [PY, "-m", "runtime.webcam", "--model", str(model), "--input", str(path), "--no-display",
               "--output", str(tmp / f"out{i}")]  # fmt: skip


def plugin_models(tmp: Path, n: int, trt_model: Path) -> Iterator[list[str]]:
    import onnx
    from onnx import helper

    rng = random.Random(4)
    values = {"sampling_ratio": [10**6, 2**31 - 1, -(2**31)], "output_height": [0, 10**5, -1],
              "output_width": [0, 10**5], "canonical_box_size": [0, -7], "keep_top_k": [0, -1, 10**9],
              "iou_threshold": [float("nan"), 2.0], "legacy_plus_one": [7]}  # fmt: skip
    for i in range(n):
        model = onnx.load(str(trt_model))
        nodes = [nd for nd in model.graph.node if nd.op_type.startswith("MRD_")]
        node = rng.choice(nodes)
        names = [a.name for a in node.attribute if a.name in values]
        name = rng.choice(names)
        for a in node.attribute:
            if a.name == name:
                a.CopyFrom(helper.make_attribute(name, rng.choice(values[name])))
        path = tmp / f"m{i}.onnx"
        onnx.save(model, str(path))
        yield [PY, "-m", "runtime.bench", "--model", str(path), "--synthetic", "1", "--iters", "1", "--warmup", "0",
               "--no-floor", "--no-progress"]  # fmt: skip


def targets(tmp: Path, model: Path) -> Iterator[list[str]]:
    import cv2

    project = tmp / "project"
    project.mkdir()
    (project / "README.md").write_text("mine")
    photos = tmp / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.jpg"), np.zeros((40, 60, 3), np.uint8))
    yield [PY, "-m", "exporter", "--to", "triton", "--onnx", str(model), "--output", str(project), "--quiet"]
    for output in (photos, project):  # the input itself; a folder of the user's
        yield [PY, "-m", "runtime.webcam", "--model", str(model), "--input", str(photos), "--no-display",
               "--output", str(output)]  # fmt: skip
    yield to_onnx(tmp / "missing.pth", project)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-class", type=int, default=12)
    parser.add_argument("--max-rss-mb", type=float, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from exporter.onnx_export import export_onnx
    from tests.runtime_fixtures import save_random_shapes_checkpoint

    tmp = Path(tempfile.mkdtemp(prefix="hostile_"))
    try:
        weights = save_random_shapes_checkpoint(tmp / "ckpt")
        model = export_onnx(weights, tmp / "model.onnx", progress=False).path
        trt_model = export_onnx(weights, tmp / "model_trt.onnx", flavor="trt", progress=False).path
        classes: dict[str, Callable[[], Iterator[list[str]]]] = {
            "pickle (.pkl)": lambda: pickles(tmp, args.per_class),
            "torch zip (.pth)": lambda: torch_zips(tmp, args.per_class),
            "YAML config": lambda: yamls(tmp, args.per_class, weights),
            "images (8 formats)": lambda: images(tmp, args.per_class * 3, model),
            "plugin attributes": lambda: plugin_models(tmp, args.per_class, trt_model),
            "file targets": lambda: targets(tmp, model),
        }
        rows = []
        for name, make in classes.items():
            results = [run(cmd) for cmd in make()]
            bad = [r for r in results if r["rc"] not in (0, 1, 2)]
            tracebacks = [r for r in results if r["traceback"]]
            worst = max(results, key=lambda r: r["rss_mb"])
            rows.append({
                "worst rss case": worst["last_line"][:120],
                "class": name, "tried": len(results), "crashes": len(bad), "tracebacks": len(tracebacks),
                "exit 0/1/2": "/".join(str(sum(r["rc"] == c for r in results)) for c in (0, 1, 2)),
                "max rss MB": max(r["rss_mb"] for r in results), "max s": max(r["seconds"] for r in results),
                "examples": [r["last_line"] for r in (bad + tracebacks)[:3]],
            })  # fmt: skip
            print(f"{name}: {rows[-1]}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    head = ["class", "tried", "crashes", "tracebacks", "exit 0/1/2", "max rss MB", "max s"]
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(f"{r[h]:.0f}" if isinstance(r[h], float) else str(r[h]) for h in head) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    ok = all(r["crashes"] == 0 and r["tracebacks"] == 0 and r["max rss MB"] <= args.max_rss_mb for r in rows)
    print(f"bound {args.max_rss_mb:.0f} MB per process: {'PASSED' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
