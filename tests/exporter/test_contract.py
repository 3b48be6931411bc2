"""runtime.onnx_contract: metadata round trip and unpadding (numpy only, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from runtime import onnx_contract as contract
from runtime.coco_classes import COCO_TORCHVISION_CLASSES
from runtime.preprocess import PreprocessParams


def _info(**kw: object) -> contract.ModelInfo:
    base = dict(class_names=("__background__", "a", "b"), preprocess=PreprocessParams(min_size=256, max_size=480),
                flavor="ort", opset=17, detections_per_image=3, mask_size=28)  # fmt: skip
    base.update(kw)
    return contract.ModelInfo(**base)  # type: ignore[arg-type]


def test_metadata_round_trip() -> None:
    info = _info(static_input_size=(320, 480), batch=2, max_batch=2, config_yaml="MODEL:\n  MASK_ON: true\n")
    back = contract.model_info_from_metadata(contract.metadata_dict(info))
    assert back == info


def test_missing_metadata_names_the_keys() -> None:
    props = contract.metadata_dict(_info())
    del props[contract.META_PREPROCESS]
    with pytest.raises(contract.ContractError, match="lacks metadata preprocess"):
        contract.model_info_from_metadata(props, "m.onnx")


def test_outputs_to_raw_unpads() -> None:
    k = 3
    outputs = {
        "num_detections": np.array([2, 0], np.int64),
        "boxes": np.arange(2 * k * 4, dtype=np.float32).reshape(2, k, 4),
        "scores": np.array([[0.9, 0.5, 0.0], [0.0, 0.0, 0.0]], np.float32),
        "labels": np.array([[1, 2, -1], [-1, -1, -1]], np.int64),
        "masks": np.ones((2, k, 28, 28), np.float32),
    }
    raws = contract.outputs_to_raw(outputs)
    assert [len(r) for r in raws] == [2, 0]
    assert raws[0].labels.tolist() == [1, 2] and raws[0].masks.shape == (2, 28, 28)
    assert raws[1].boxes.shape == (0, 4) and raws[1].masks.shape == (0, 28, 28)


def test_outputs_to_raw_rejects_bad_counts() -> None:
    with pytest.raises(contract.ContractError, match="outside"):
        contract.outputs_to_raw({"num_detections": np.array([5]), "boxes": np.zeros((1, 3, 4)),
                                 "scores": np.zeros((1, 3)), "labels": np.zeros((1, 3))})  # fmt: skip


def test_coco_names_match_torchvision() -> None:
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    assert list(COCO_TORCHVISION_CLASSES) == MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
