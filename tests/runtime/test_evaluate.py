"""`python -m runtime.evaluate`: AP of both models and their delta, matching, the --max-ap-drop gate, pictures."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from runtime.backends.base import Backend
from runtime.datasets import DatasetError, resolve_dataset
from runtime.evaluate import evaluate_against_reference, main
from runtime.evaluate.cli import _output_paths
from runtime.onnx_contract import ModelInfo
from runtime.predictor import Predictor
from runtime.preprocess import PreprocessedBatch
from runtime.structures import RawDetections


def _split(tiny_shapes: dict[str, str]) -> tuple[Path, Path]:
    ann, _, img = tiny_shapes["val"].partition(".json:")
    return Path(ann + ".json"), Path(img)


def test_onnx_model_against_its_pytorch_weights(
    random_shapes_onnx: Path,
    random_shapes_checkpoint: Path,
    tiny_shapes: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The headline command: `runtime.evaluate --model model.onnx --reference W.pth` on a COCO data set."""
    ann, images = _split(tiny_shapes)
    out = {k: tmp_path / f"out.{k}" for k in ("json", "png")}
    rc = main([
        "--model", str(random_shapes_onnx), "--reference", str(random_shapes_checkpoint), "--annotations", str(ann), "--images",
        str(images), "--max-ap-drop", "0.1", "--json", str(out["json"]), "--plot", str(out["png"]),
        "--threads", "1", "--no-progress",
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "delta vs reference" in printed and "PASSED" in printed
    report = json.loads(out["json"].read_text())
    assert report["model"]["backend"] == "onnxruntime" and report["reference"]["backend"] == "torch"
    assert set(report["ap_delta_points"]) == {"bbox", "segm"}
    assert all(abs(d) <= 0.01 for d in report["ap_delta_points"].values()), report["ap_delta_points"]
    assert report["passed"] and report["num_images"] == 4
    comparison = report["comparison"]
    # a random-init model with a low threshold: every image has detections, all of them matched
    assert comparison["num_reference"] >= 4 * 10 and comparison["matched_reference"] == 1.0
    assert comparison["matched_candidate"] == 1.0
    assert comparison["max_box_diff"] <= 0.05 and comparison["max_score_diff"] <= 1e-4
    assert comparison["max_mask_diff"] <= 1e-2
    assert out["png"].stat().st_size > 0


class OracleBackend(Backend):
    """Returns each image's ground-truth boxes: AP 100 for bbox, a reference a random model falls short of."""

    name = "oracle"

    def __init__(self, ann_file: Path, info: ModelInfo) -> None:
        super().__init__(ann_file)
        data = json.loads(ann_file.read_text())
        self._boxes = {im["id"]: [] for im in data["images"]}
        for a in data["annotations"]:
            x, y, w, h = a["bbox"]
            self._boxes[a["image_id"]].append((x, y, x + w, y + h, a["category_id"]))
        self._order = sorted(self._boxes)  # the evaluation's image order
        self._info = ModelInfo(class_names=info.class_names, preprocess=info.preprocess)

    @property
    def info(self) -> ModelInfo:
        return self._info

    def infer(self, batch: PreprocessedBatch) -> list[RawDetections]:
        (resized, original) = batch.image_sizes[0], batch.original_sizes[0]
        gt = np.asarray(self._boxes[self._order.pop(0)], np.float32).reshape(-1, 5)
        scale = np.tile(resized[::-1] / original[::-1], 2).astype(np.float32)
        return [RawDetections(gt[:, :4] * scale, np.ones(len(gt), np.float32), gt[:, 4].astype(np.int64))]


def test_ap_drop_beyond_the_bound_fails(
    random_shapes_checkpoint: Path, tiny_shapes: dict[str, str], tmp_path: Path
) -> None:
    ann, images = _split(tiny_shapes)
    model = Predictor(random_shapes_checkpoint, confidence_threshold=0.0, threads=1)
    reference = Predictor(OracleBackend(ann, model.info), confidence_threshold=0.0)
    report = evaluate_against_reference(model, reference, ann, images, max_ap_drop=1.0, progress=False)
    assert report.metrics["reference"]["bbox"]["AP"] == pytest.approx(1.0)
    assert list(report.ap_deltas()) == ["bbox"]  # the reference has no masks: segm is not compared
    assert report.ap_deltas()["bbox"] < -50
    assert report.failures() and "bbox AP dropped" in report.failures()[0]

    from runtime.evaluate import save_disagreements

    picture = tmp_path / "disagree.png"
    assert save_disagreements(report, picture, count=2) == 2  # default 0.5: untrained scores are far below
    assert picture.stat().st_size > 0


def test_drawing_keeps_what_was_compared_below_the_threshold() -> None:
    """The picture's detections: matched from the threshold up, unmatched ones even below it (best first)."""
    from runtime.evaluate import split_for_drawing
    from runtime.structures import Detections

    scores = np.array([0.9, 0.3, 0.2, 0.6, 0.1, 0.05, 0.4], np.float32)
    det = Detections(
        boxes=np.tile(np.array([[0, 0, 10, 10]], np.float32), (7, 1)), scores=scores,
        labels=np.ones(7, np.int64), image_size=(20, 20),
    )  # fmt: skip
    matched, unmatched = split_for_drawing(det, np.array([0, 1]), score_threshold=0.5, max_unmatched=3)
    assert matched.scores.tolist() == pytest.approx([0.9])  # matched 0.3 is below the threshold
    assert sorted(unmatched.scores.tolist()) == pytest.approx([0.2, 0.4, 0.6])  # 0.6 above, then the best two
    _, few = split_for_drawing(det, np.array([], np.int64), score_threshold=0.95, max_unmatched=2)
    assert sorted(few.scores.tolist()) == pytest.approx(
        [0.6, 0.9]
    )  # nothing above 0.95: the top 2 still drawn
    _, many = split_for_drawing(det, np.array([], np.int64), score_threshold=0.25, max_unmatched=1)
    assert len(many) == 4  # all four unmatched above the threshold, though max_unmatched is 1


def test_bad_data_arguments_are_clear(
    random_shapes_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(DatasetError, match="--annotations"):
        resolve_dataset(None, None, None)
    with pytest.raises(DatasetError, match="unknown data set"):
        resolve_dataset("cocoo_2017_val", None, None, root=str(tmp_path))
    rc = main(["--model", str(random_shapes_checkpoint), "--reference", str(random_shapes_checkpoint), "--annotations",
               str(tmp_path / "none.json"), "--images", str(tmp_path), "--no-progress"])  # fmt: skip
    assert rc == 2 and "annotation file not found" in capsys.readouterr().err


def test_several_models_share_one_reference_run(
    random_shapes_onnx: Path, random_shapes_checkpoint: Path, tiny_shapes: dict[str, str]
) -> None:
    """Both exports of a checkpoint against one pass of the reference (the oracle serves each image once)."""
    from runtime.evaluate import evaluate_models_against_reference

    ann, images = _split(tiny_shapes)
    models = [
        Predictor(p, confidence_threshold=0.0, threads=1)
        for p in (random_shapes_onnx, random_shapes_checkpoint)
    ]
    reference = Predictor(OracleBackend(ann, models[0].info), confidence_threshold=0.0)
    reports = evaluate_models_against_reference(models, reference, ann, images, progress=False)
    assert [r.model.path for r in reports] == [str(random_shapes_onnx), str(random_shapes_checkpoint)]
    assert [r.model.backend for r in reports] == ["onnxruntime", "torch"]
    for r in reports:
        assert r.metrics["reference"]["bbox"]["AP"] == pytest.approx(1.0)
        assert len(r.records) == 4 and r.comparison.num_reference > 0
    # the export and its weights score the same against the same reference
    assert reports[0].ap_deltas()["bbox"] == pytest.approx(reports[1].ap_deltas()["bbox"], abs=0.05)


def test_several_models_need_model_in_output_names(
    random_shapes_onnx: Path,
    random_shapes_checkpoint: Path,
    tiny_shapes: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ann, images = _split(tiny_shapes)
    models = tmp_path / "models"
    models.mkdir()
    onnx_copy = models / "model_ort.onnx"  # the fixtures are model.onnx and model.pth: the same stem
    onnx_copy.write_bytes(random_shapes_onnx.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    base = [
        "--model", str(onnx_copy), "--model", str(random_shapes_checkpoint),
        "--reference", str(random_shapes_checkpoint), "--annotations", str(ann), "--images", str(images),
        "--threads", "1", "--no-progress",
    ]  # fmt: skip
    assert main([*base, "--json", str(out / "out.json")]) == 2
    err = capsys.readouterr().err
    assert "--json" in err and "{model}" in err and "out_{model}.json" in err
    assert not list(out.iterdir())  # refused before anything ran or was written
    twin = models / "model.onnx"  # the same file name as the fixture's, in another folder
    twin.write_bytes(random_shapes_onnx.read_bytes())
    same_name = [
        *base,
        "--model",
        str(random_shapes_onnx),
        "--model",
        str(twin),
        "--json",
        str(out / "{model}.json"),
    ]
    assert main(same_name) == 2 and "repeat" in capsys.readouterr().err
    assert not list(out.iterdir())
    # an export and its weights share the stem: their names keep the extension instead
    names = _output_paths(
        argparse.Namespace(json="e_{model}.json", plot=None, disagreements=None), ["m.onnx", "m.pth"]
    )
    assert names == [{"json": "e_m_onnx.json"}, {"json": "e_m_pth.json"}]

    rc = main([*base, "--max-ap-drop", "0.1", "--json", str(out / "evaluate_{model}.json")])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert "2 of 2 models PASSED" in printed.out
    stems = sorted(Path(p).stem for p in (onnx_copy, random_shapes_checkpoint))
    assert sorted(p.name for p in out.iterdir()) == [f"evaluate_{s}.json" for s in stems]
    for s in stems:
        report = json.loads((out / f"evaluate_{s}.json").read_text())
        assert report["passed"] and Path(report["model"]["path"]).stem == s
