"""The training pooler's sparse ROIAlign backward gives torchvision's values and gradients."""

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import roi_align as tv_roi_align

from trainer.roi_pooling import TrainingMultiScaleRoIAlign, roi_align


def _rois(gen: torch.Generator, n_images: int, count: int, width: float, height: float) -> torch.Tensor:
    image = torch.randint(0, n_images, (count,), generator=gen).float()
    # some boxes start outside the image, some are tiny, some cross the far border
    xy = torch.rand(count, 2, generator=gen) * torch.tensor([width, height]) * 1.1 - 4
    wh = torch.rand(count, 2, generator=gen) * 50 + 0.2
    return torch.cat([image[:, None], xy, xy + wh], 1)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize(
    ("output_size", "sampling_ratio", "scale"), [(7, 2, 0.25), ((14, 10), 1, 0.5), (5, 3, 1.0)]
)
def test_roi_align_matches_torchvision_value_and_gradient(
    output_size, sampling_ratio, scale, aligned
) -> None:
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(3, 6, 20, 17, generator=gen, requires_grad=True)
    rois = _rois(gen, 3, 40, 17 / scale, 20 / scale)
    ref = tv_roi_align(features, rois, output_size, scale, sampling_ratio, aligned)
    out = roi_align(features, rois, output_size, scale, sampling_ratio, aligned)
    torch.testing.assert_close(out, ref)
    grad_out = torch.randn(ref.shape, generator=gen)
    (ref_grad,) = torch.autograd.grad(ref, features, grad_out)
    (grad,) = torch.autograd.grad(out, features, grad_out)
    assert ref_grad.abs().max() > 0.1  # the rois do touch the features
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)


def test_no_rois_gives_zero_gradient() -> None:
    features = torch.randn(1, 4, 8, 8, requires_grad=True)
    out = roi_align(features, torch.zeros(0, 5), 7, 1.0, 2)
    (grad,) = torch.autograd.grad(out.sum(), features, allow_unused=True)
    assert grad is None or not grad.any()


@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_training_pooler_matches_torchvision_pooler(sampling_ratio: int) -> None:
    gen = torch.Generator().manual_seed(1)
    names = ["0", "1", "2"]
    feats = {
        k: torch.randn(2, 4, 64 // 2**i, 48 // 2**i, generator=gen, requires_grad=True)
        for i, k in enumerate(names)
    }
    boxes = []
    for _ in range(2):  # small and large boxes, so every level gets some
        xy = torch.rand(30, 2, generator=gen) * 150
        boxes.append(torch.cat([xy, xy + 4 + torch.rand(30, 2, generator=gen) ** 2 * 180], 1))
    shapes = [(256, 192)] * 2
    ours = TrainingMultiScaleRoIAlign(names, 7, sampling_ratio).train()
    ref = MultiScaleRoIAlign(names, 7, sampling_ratio)
    out, expected = ours(feats, boxes, shapes), ref(feats, boxes, shapes)
    torch.testing.assert_close(out, expected)
    g = torch.randn(out.shape, generator=gen)
    grads = torch.autograd.grad(out, list(feats.values()), g)
    ref_grads = torch.autograd.grad(expected, list(feats.values()), g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert sum(int(a.any()) for a in grads) >= 2


def test_training_pooler_under_bf16_autocast_keeps_dtype_and_gradient() -> None:
    gen = torch.Generator().manual_seed(2)
    feats = {"0": torch.randn(1, 4, 32, 32, generator=gen).bfloat16().requires_grad_()}
    boxes = [torch.tensor([[2.0, 3.0, 40.0, 50.0], [10.0, 10.0, 100.0, 90.0]])]
    pooler = TrainingMultiScaleRoIAlign(["0"], 7, 2).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pooler(feats, boxes, [(128, 128)])
    (grad,) = torch.autograd.grad(out.float().sum(), feats["0"])
    assert grad.dtype == torch.bfloat16 and grad.any()
