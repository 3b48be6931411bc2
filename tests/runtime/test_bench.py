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


def test_bench_profiles_the_operators_of_every_backend(
    random_shapes_checkpoint: Path,
    random_shapes_onnx: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out_json = tmp_path / "bench.json"
    models = ["--model", str(random_shapes_checkpoint), "--model", str(random_shapes_onnx)]
    backends = ["--backend", "torch", "--backend", "onnxruntime"]
    conv = {"torch": "aten::", "onnxruntime": "Conv"}  # each profiler's own names
    if importlib.util.find_spec("openvino") is not None:
        models += ["--model", str(random_shapes_onnx)]
        backends += ["--backend", "openvino"]
        conv["openvino"] = "Convolution"
    rc = main([*models, *backends, "--synthetic", "3", "--size", "96", "--warmup", "0", "--iters", "2",
               "--threads", "1", "--no-floor", "--profile-ops", "4", "--json", str(out_json),
               "--no-progress"])  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0
    assert printed.count("ms per run in the profiled nodes over 2 run(s); timed inference") == len(conv)
    assert "op type" in printed and "other types)" in printed  # top 4 of many, the rest on one row
    for m in json.loads(out_json.read_text())["models"]:
        ops = m["op_ms"]
        assert m["op_runs"] == 2  # the two distinct batches the timing ran, once each
        assert len(ops) > 4 and all(ms >= 0 for ms in ops.values())
        assert any(op.startswith(conv[m["backend"]]) and ms > 0 for op, ms in ops.items()), sorted(ops)


def test_op_profile_table_ranks_and_sums_the_rest() -> None:
    from runtime.op_profile import OpProfile, format_op_profile

    profile = OpProfile({"Conv": 6.0, "Add": 1.0, "Relu": 1.0, "RoiAlign": 2.0}, runs=3)
    assert profile.total_ms == 10.0
    assert profile.top(3) == [("Conv", 6.0), ("RoiAlign", 2.0), ("Add", 1.0)]  # ties by name
    table = format_op_profile("m.onnx", profile, 2, network_ms=12.5)
    assert "m.onnx: 10.0 ms per run in the profiled nodes over 3 run(s); timed inference 12.5 ms" in table
    rows = [line.split() for line in table.splitlines()[3:]]
    assert rows == [
        ["Conv", "6.00", "60.0"],
        ["RoiAlign", "2.00", "20.0"],
        ["(2", "other", "types)", "2.00", "20.0"],
    ]
    with pytest.raises(ValueError, match="profile-ops >= 0"):
        from runtime.bench import BenchSettings

        BenchSettings(profile_ops=-1)
