"""`python -m runtime.bench`: alternating timing, the table, JSON and plot, and going on past a bad model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from runtime.bench import main


def test_bench_prints_table_json_and_plot(
    random_shapes_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    missing = tmp_path / "missing.onnx"
    rc = main([
        "--model", str(random_shapes_checkpoint), "--model", str(missing), "--model", str(random_shapes_checkpoint),
        "--synthetic", "2", "--size", "96", "--warmup", "1", "--iters", "3", "--threads", "1",
        "--json", str(out_json), "--plot", str(out_png), "--no-progress",
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 1  # one model failed; the others were still timed
    for column in ("backend", "precision", "load s", "pre ms", "infer ms", "post ms", "p50 ms", "p90 ms",
                   "p99 ms", "img/s", "ratio"):  # fmt: skip
        assert column in printed
    assert "CPU:" in printed and "torch 2." in printed and "onnxruntime" in printed
    assert "FAILED" in printed and "missing.onnx: model file not found" in printed

    report = json.loads(out_json.read_text())
    ok = [m for m in report["models"] if m["error"] is None]
    assert len(ok) == 2 and [len(m["total"]) for m in ok] == [3, 3]
    assert ok[0]["ratio_to_first"] == 1.0 and ok[0]["backend"] == "torch"
    s = ok[1]["summary"]
    assert 0 < s["pre_ms"] and 0 < s["infer_ms"] and s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"]
    assert ok[1]["detections_per_image"] > 0  # threshold 0: every detection is pasted
    assert report["settings"]["size"] == 96
    assert out_png.stat().st_size > 0


def test_bench_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "m.pth", "--images", str(tmp_path), "--no-progress"]) == 2
    assert "no image files" in capsys.readouterr().err
    assert main(["--model", "m.pth", "--synthetic", "1", "--iters", "0", "--no-progress"]) == 2


def test_bench_puts_every_model_against_the_compute_floor(
    random_shapes_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "bench.json"
    models = ["--model", str(random_shapes_onnx)]
    backends = ["--backend", "onnxruntime"]
    if importlib.util.find_spec("openvino") is not None:  # the same file under OpenVINO: the same FLOPs
        models += ["--model", str(random_shapes_onnx)]
        backends += ["--backend", "openvino"]
    rc = main([*models, *backends, "--synthetic", "2", "--size", "96", "--warmup", "1", "--iters", "2",
               "--threads", "1", "--batch", "1,2", "--json", str(out_json), "--no-progress"])  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0
    assert "compute floor: float32 matmul" in printed and "GFLOP/s" in printed
    for column in ("GFLOP/img", "floor ms", "infer/floor", "p50/floor", "img/s b1", "img/s b2"):
        assert column in printed
    by_batch = json.loads(out_json.read_text())["by_batch"]
    assert [r["settings"]["batch"] for r in by_batch] == [1, 2]
    for report in by_batch:
        assert report["matmul"]["gflops"] > 0
        sums = [m["summary"] for m in report["models"]]
        assert all(s["gflop_per_image"] > 0 and s["total_to_floor"] >= s["infer_to_floor"] > 0 for s in sums)
        flops = [m["flops"] for m in report["models"]]
        assert all(f == flops[0] for f in flops)  # one network, one count, whichever backend runs it
    # two images per batch: twice the FLOPs of one (the floor follows the work)
    one, two = by_batch[0]["models"][0]["flops"], by_batch[1]["models"][0]["flops"]
    assert sum(two) / len(two) == pytest.approx(sum(one) / len(one) * 2, rel=0.25)
