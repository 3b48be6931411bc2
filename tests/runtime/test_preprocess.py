"""runtime.preprocess must reproduce torchvision's GeneralizedRCNNTransform (the model's own input)."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.preprocess import PreprocessParams, preprocess, resized_size

torch = pytest.importorskip("torch")
transform_mod = pytest.importorskip("torchvision.models.detection.transform")


def _torchvision_inputs(images: list[np.ndarray], params: PreprocessParams) -> tuple[np.ndarray, list]:
    t = transform_mod.GeneralizedRCNNTransform(
        params.min_size, params.max_size, list(params.pixel_mean), list(params.pixel_std),
        size_divisible=params.size_divisibility,
    ).eval()  # fmt: skip
    tensors = [
        torch.from_numpy(np.ascontiguousarray(im[:, :, ::-1])).permute(2, 0, 1).float() / 255 for im in images
    ]
    with torch.no_grad():
        image_list, _ = t(tensors)
    return image_list.tensors.numpy(), [tuple(s) for s in image_list.image_sizes]


# (h, w) chosen to shrink, enlarge, hit the max_size cap, and keep the size unchanged.
SIZES = [(240, 320), (500, 260), (301, 300), (200, 700), (64, 96)]


@pytest.mark.parametrize("hw", SIZES)
def test_single_image_matches_torchvision(hw: tuple[int, int]) -> None:
    params = PreprocessParams(min_size=256, max_size=480)
    image = np.random.default_rng(hw[0] * 1000 + hw[1]).integers(0, 256, (*hw, 3), dtype=np.uint8)
    batch = preprocess([image], params)
    ref, ref_sizes = _torchvision_inputs([image], params)
    assert batch.images.dtype == np.float32 and batch.images.shape == ref.shape
    assert [tuple(s) for s in batch.image_sizes.tolist()] == ref_sizes
    assert batch.original_sizes.tolist() == [list(hw)]
    np.testing.assert_allclose(batch.images, ref, atol=1e-5, rtol=0)


def test_batch_pads_like_torchvision_and_resized_size_agrees() -> None:
    params = PreprocessParams(min_size=200, max_size=333, size_divisibility=32)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, hw + (3,), dtype=np.uint8) for hw in [(150, 400), (300, 220), (90, 90)]]
    batch = preprocess(images, params)
    ref, ref_sizes = _torchvision_inputs(images, params)
    assert batch.images.shape == ref.shape
    np.testing.assert_allclose(batch.images, ref, atol=1e-5, rtol=0)
    assert [resized_size(im.shape[0], im.shape[1], params) for im in images] == ref_sizes
    assert batch.images.shape[2] % 32 == 0 and batch.images.shape[3] % 32 == 0


def test_pad_to_fixed_size_and_too_small_canvas() -> None:
    params = PreprocessParams(min_size=100, max_size=160)
    image = np.full((50, 80, 3), 255, np.uint8)
    batch = preprocess([image], params, pad_to=(128, 192))
    assert batch.images.shape == (1, 3, 128, 192)
    assert batch.image_sizes.tolist() == [[100, 160]]
    assert np.all(batch.images[0, :, 100:, :] == 0) and np.all(batch.images[0, :, :, 160:] == 0)
    with pytest.raises(ValueError, match="larger than the fixed input size"):
        preprocess([image], params, pad_to=(96, 192))


def test_params_round_trip_and_bad_input() -> None:
    params = PreprocessParams(min_size=320, max_size=512, size_divisibility=0)
    assert PreprocessParams.from_dict(params.to_dict()) == params
    with pytest.raises(ValueError, match="unknown pre-processing parameter"):
        PreprocessParams.from_dict({**params.to_dict(), "min_szie": 3})
    with pytest.raises(ValueError, match="HxWx3"):
        preprocess([np.zeros((10, 10), np.uint8)], params)
    with pytest.raises(ValueError, match="uint8"):
        preprocess([np.zeros((10, 10, 3), np.float32)], params)
