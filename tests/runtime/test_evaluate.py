"""`python -m runtime.evaluate`: AP of both models and their delta, matching, the --max-ap-drop gate, pictures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runtime.backends.base import Backend
from runtime.datasets import DatasetError, resolve_dataset
from runtime.evaluate import evaluate_against_reference, main
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
