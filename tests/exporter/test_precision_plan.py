"""Precision chosen by accuracy (``--int8 --max-ap-drop``) on a trained model: the fine-tuned detectron2 import
of ``tests/data/foreign/finetuned`` (6 channels wide, trained on shapes), with its calibration ranges.

A part whose calibration ranges are planted wrong (a scale 1000x too coarse) is what the search must find
and keep FP32; with no room to keep anything, it must refuse and say what the best plan was; and the model
it writes must be rebuilt exactly from the plan it records.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from calibration.image_source import images_in_dataset
from exporter.precision_plan import (
    PartCost,
    PlanNotFound,
    SearchInputs,
    build_with_parts,
    recorded_plan,
    search_plan,
)
from runtime.datasets import resolve_dataset
from tests.common import REPO

FINETUNED = REPO / "tests" / "data" / "foreign" / "finetuned" / "d2_mask_rcnn_R_50_FPN_1x"
BROKEN = "box_head"  # its first layer's input and output ranges are planted 1000x too wide
#: the parts the test's search may keep FP32 (all 14 would take a minute): the broken one among others
CANDIDATES = ("backbone.layer1", "fpn.level0", BROKEN, "box_predictor", "mask_head")


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """16 shapes images the model never saw (4 do not hold this weak model's AP still: 4 points of noise)."""
    from trainer.shapes import generate_shapes_dataset

    splits = generate_shapes_dataset(tmp_path_factory.mktemp("held_out"), num_train=4, num_val=16, seed=5,
                                     progress=False)  # fmt: skip
    return {split: f"{ann}:{img}" for split, (ann, img) in splits.items()}


@pytest.fixture(scope="module")
def finetuned_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from exporter.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("plan") / "fp32.onnx"
    return export_onnx(FINETUNED / "model_final.pth", out, progress=False).path


def _broken_cache(tmp_path: Path) -> Path:
    """The model's calibration ranges with the box head's activations planted 1000x too wide."""
    cache = json.loads((FINETUNED / "calib.json").read_text())
    planted = 0
    for name, tensor in cache["ranges"]["data"].items():
        if name.startswith(f"/{BROKEN}/"):
            for side in ("lowest", "highest"):
                tensor[side]["data"] = [v * 1000.0 for v in tensor[side]["data"]]
            planted += 1
    assert planted >= 2
    path = tmp_path / "broken.calib.json"
    path.write_text(json.dumps(cache))
    return path


def _inputs(held_out: dict[str, str], cache: Path, max_ap_drop: float, **extra) -> SearchInputs:
    spec = resolve_dataset(held_out["val"])
    extra.setdefault("candidate_parts", CANDIDATES)
    return SearchInputs(precision="int8", max_ap_drop=max_ap_drop, ann_file=spec.ann_file, img_dir=spec.img_dir,
                        held_out="16 held-out shapes images", sensitivity_images=images_in_dataset(held_out["train"])[:2],
                        calib_cache=cache, max_images=16, threads=1, bench_iters=3, progress=False, say=lambda _: None,
                        **extra)  # fmt: skip


def test_the_search_keeps_the_broken_part_refuses_without_room_and_the_plan_rebuilds_the_model(
    finetuned_onnx: Path, held_out: dict[str, str], tmp_path: Path
) -> None:
    cache = _broken_cache(tmp_path)
    out = tmp_path / "planned.onnx"
    plan = search_plan(finetuned_onnx, out, _inputs(held_out, cache, 3.0))
    ranked = sorted(plan.sensitivity, key=lambda c: -c["cost"])
    assert ranked[0]["part"] == BROKEN, ranked[:3]  # the planted part costs the most alone
    assert BROKEN in plan.fp32_parts
    assert all(-d <= 3.0 for d in plan.ap_delta.values())
    assert plan.p50_ms is not None and plan.fp32_p50_ms is not None
    recorded = recorded_plan(out)
    assert (
        recorded is not None and recorded["fp32_parts"] == plan.fp32_parts and recorded["max_ap_drop"] == 3.0
    )

    # the same model, node for node and weight for weight, from the plan it records
    again = build_with_parts("int8", finetuned_onnx, tmp_path / "again.onnx", recorded["fp32_parts"],
                             _inputs(held_out, cache, 3.0))  # fmt: skip
    assert onnx.load(str(out)).graph == onnx.load(str(again)).graph

    # no room to keep a part FP32: refused, with the best plan, and nothing written (the recorded sensitivity
    # is reused: searching again with another limit does not measure it again)
    sensitivity = [PartCost.from_dict(c) for c in recorded["sensitivity"]]
    inputs = _inputs(held_out, cache, 0.5, max_fp32_parts=0, sensitivity=sensitivity)
    with pytest.raises(PlanNotFound) as err:
        search_plan(finetuned_onnx, tmp_path / "refused.onnx", inputs)
    assert err.value.best.fp32_parts == [] and min(err.value.best.ap_delta.values()) < -0.5
    assert "no precision plan keeps AP within 0.5 points" in str(err.value)
    assert not (tmp_path / "refused.onnx").exists()


def test_the_command_line_checks_the_plan_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from exporter.cli import main

    weights = str(FINETUNED / "model_final.pth")
    cases = {
        ("--max-ap-drop", "0.5"): "for --fp16 or --int8",
        ("--int8", "--calib-dataset", "shapes_train", "--max-ap-drop", "0.5"): "held-out --dataset NAME",
        ("--int8", "--calib-dataset", "shapes_train", "--fp32-parts", "box_head", "--max-ap-drop", "1",
         "--dataset", "shapes_val"): "choose one",
    }  # fmt: skip
    for args, says in cases.items():
        with pytest.raises(SystemExit) as exit_:
            main(["--to", "onnx", "--weights", weights, "--output", str(tmp_path / "m.onnx"), *args])
        assert exit_.value.code == 2 and says in capsys.readouterr().err, args
    code = main(["--to", "onnx", "--weights", weights, "--output", str(tmp_path / "m.onnx"), "--fp16",
                 "--fp32-parts", "no_such_part", "--quiet"])  # fmt: skip
    assert (
        code == 2
        and "no part named no_such_part in this model; its parts: backbone.stem" in capsys.readouterr().err
    )
