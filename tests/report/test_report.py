"""``python -m exporter report`` on a small random model: every combination this machine runs is exported,
verified, timed and scored; the rest say why not; a re-run reuses what it measured."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest

from exporter.report.combinations import Combination
from exporter.report.measure import ReportOptions, Row, build_report, cache_key, choose_recommendation
from exporter.report.pareto import pareto_front

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def test_the_pareto_front_of_hand_made_points() -> None:
    points = [(10, 50), (20, 60), (15, 40), (30, 60), (5, 30), (20, 55), (10, 50)]
    # (15, 40) loses to (10, 50); (30, 60) and (20, 55) lose to (20, 60); the equal (10, 50)s both stay
    assert pareto_front(points) == [4, 0, 6, 1]
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 1.0)]) == [0]


def _row(name: str, p50: float, delta: float, verified: bool = True) -> Row:
    backend, precision = name.split()
    return Row(backend, precision, verified=verified, bench={"b1": {"p50_ms": p50, "images_per_s": 1e3 / p50}},
               ap={"bbox": 50 + delta}, ap_delta={"bbox": delta})  # fmt: skip


def test_the_recommendation_is_the_fastest_verified_row_within_the_budget() -> None:
    rows = [_row("onnxruntime fp32", 100, 0.0), _row("onnxruntime int8", 60, -0.8),
            _row("openvino fp32", 80, -0.1), _row("openvino int8", 50, 0.0, verified=False)]  # fmt: skip
    assert choose_recommendation(rows, 0.5)[0] == "openvino fp32"
    assert choose_recommendation(rows, 1.0)[0] == "onnxruntime int8"
    tied = [_row("onnxruntime fp32", 100, 0.0), _row("onnxruntime fp16", 98, -0.01)]
    name, why = choose_recommendation(tied, 0.5)  # within 5 %: a tie, which the more accurate wins
    assert name == "onnxruntime fp32" and "tied within 5 % with onnxruntime fp16 98.0 ms" in why
    name, why = choose_recommendation(rows[1:2], 0.5)
    assert name is None and "the closest is onnxruntime int8 at -0.80" in why


def test_the_cache_key_changes_with_each_input(tmp_path: Path) -> None:
    images = [tmp_path / "a.png", tmp_path / "b.png"]
    for i, p in enumerate(images):
        p.write_bytes(b"x" * (10 + i))
    config = tmp_path / "c.yaml"
    config.write_text("MODEL: {}\n")
    options = ReportOptions(weights=tmp_path / "w.pth", output=tmp_path / "r", config_file=config)
    combo = Combination("onnxruntime", "fp32")
    key = cache_key(options, combo, images, "digest")
    assert key == cache_key(
        replace(options, output=tmp_path / "elsewhere", progress=False), combo, images, "digest"
    )
    changed = {
        "weights": cache_key(options, combo, images, "other digest"),
        "combination": cache_key(options, Combination("onnxruntime", "int8"), images, "digest"),
        "images": cache_key(options, combo, images[:1], "digest"),
        "options": cache_key(replace(options, iters=11), combo, images, "digest"),
        "opts": cache_key(replace(options, opts=("TEST.DETECTIONS_PER_IMG", "5")), combo, images, "digest"),
    }
    images[1].write_bytes(b"y" * 99)
    changed["an image's content"] = cache_key(options, combo, images, "digest")
    config.write_text("MODEL: {MASK_ON: true}\n")
    changed["config"] = cache_key(options, combo, images, "digest")
    assert all(k != key for k in changed.values()), changed
    assert len(set(changed.values())) == len(changed)


def test_the_report_measures_every_combination_and_reuses_them(
    tmp_path: Path, random_shapes_checkpoint: Path, tiny_shapes: dict[str, str]
) -> None:
    from exporter.report.render import write_report

    backends = ("onnxruntime", "openvino", "tensorrt") if HAS_OPENVINO else ("onnxruntime", "tensorrt")
    options = ReportOptions(weights=Path(random_shapes_checkpoint), output=tmp_path / "report",
                            dataset=tiny_shapes["val"], backends=backends, precisions=("fp32", "int8"),
                            max_images=4, bench_images=2, batch=2, iters=2, warmup=1, threads=1, verify_images=2,
                            calib_dataset=tiny_shapes["train"], calib_count=8, matmul_sizes=(256,),
                            progress=False)  # fmt: skip
    report = build_report(options)
    written = write_report(report, options.output)
    data = json.loads((options.output / "report.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    measured = [n for n in rows if not n.startswith("tensorrt")]
    assert len(measured) == (4 if HAS_OPENVINO else 2)
    for name in measured:
        row = rows[name]
        assert row["error"] is None and row["skipped"] is None, (name, row["error"])
        assert row["bench"]["b1"]["p50_ms"] > 0 and row["bench"]["b2"]["images_per_s"] > 0, name
        assert "total_to_floor" in row["bench"]["b1"], name
        assert set(row["ap"]) == {"bbox", "segm"} and set(row["ap_delta"]) == {"bbox", "segm"}, name
        assert row["agreement_ap"] is not None and 0 <= row["matched"] <= 1, name
        assert (options.output / row["path"]).is_file()
    assert rows["onnxruntime fp32"]["verified"] and rows["onnxruntime fp32"]["matched"] > 0.99
    for name in ("tensorrt fp32", "tensorrt int8"):
        assert rows[name]["skipped"], rows[name]  # no TensorRT or no GPU here: said, not faked
    assert data["environment"]["cpu_features"] is not None and data["reference"]["ap"]
    expected, _ = choose_recommendation(report.rows, options.max_ap_drop)
    assert data["recommendation"] == expected
    assert set(data["pareto_front"]) <= set(measured)
    assert {p.name for p in written} >= {"report.json", "report.md", "index.html", "latency_vs_ap.png"}
    html = (options.output / "index.html").read_text()
    assert "onnxruntime" in html and "tensorrt" in html and "latency_vs_ap.png" in html

    again = build_report(options)  # nothing changed: every measured row is reused, nothing is re-measured
    assert sorted(again.reused) == sorted(measured)
    assert [r.bench for r in again.rows] == [r.bench for r in report.rows]


def test_the_command_line_says_what_is_wrong_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter.report.cli import main

    assert main(["--weights", str(tmp_path / "missing.pth"), "--output", str(tmp_path / "r")]) == 2
    assert "missing.pth: no such file" in capsys.readouterr().err
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    assert main(["--weights", str(weights), "--output", str(tmp_path / "r"), "--precisions", "fp8"]) == 2
    assert "unknown precision(s) fp8" in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("a user's page")
    assert main(["--weights", str(weights), "--output", str(mine)]) == 2
    assert "holds files that are not a report's" in capsys.readouterr().err
    assert (mine / "index.html").read_text() == "a user's page"
