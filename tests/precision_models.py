"""A tiny detector-shaped ONNX model of the contract, made here, for the precision and calibration tests.

A dense part (conv, relu, residual add, a head conv) and glue after it (``exp`` decoding scaled by the image
size, a sigmoid), with the contract's input names and metadata: enough for the region analysis, FP16 and
INT8 passes to have something to keep FP32, in a second instead of a Mask R-CNN export's minutes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import onnx

from runtime import onnx_contract as contract
from runtime.preprocess import PreprocessParams

PARAMS = PreprocessParams(min_size=48, max_size=64, size_divisibility=16)
HEAD_NODE = "/head/Conv"


def export_tiny_model(
    path: Path,
    seed: int = 0,
    static_size: tuple[int, int] | None = None,
    batch: int | None = None,
    group_norm: bool = False,
) -> Path:
    """``group_norm``: GroupNorm after each 3x3 conv, as the shapes recipe's backbone and heads have
    (it exports as Reshape -> InstanceNormalization -> Reshape -> Mul -> Add)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.norm1 = nn.GroupNorm(4, 8) if group_norm else nn.Identity()
            self.norm2 = nn.GroupNorm(4, 8) if group_norm else nn.Identity()
            self.head = nn.Conv2d(8, 4, 1)
            for norm in (self.norm1, self.norm2):  # distinct affine weights: the exporter dedups equal ones
                if isinstance(norm, nn.GroupNorm):
                    nn.init.uniform_(norm.weight, 0.5, 1.5)
                    nn.init.uniform_(norm.bias, -0.1, 0.1)

        def forward(
            self, images: torch.Tensor, image_sizes: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.relu(self.norm1(self.conv1(images)))
            x = torch.relu(self.norm2(self.conv2(x))) + x
            d = self.head(x)
            scale = image_sizes.to(torch.float32).repeat(1, 2)
            boxes = torch.exp(d.mean((2, 3)) * 0.1) * scale  # decoding: glue, stays FP32
            scores = torch.sigmoid(d.amax((2, 3)))
            return boxes, scores

    h, w = static_size or (64, 64)
    example = (torch.rand(batch or 1, 3, h, w), torch.tensor([[h, w]] * (batch or 1), dtype=torch.int64))
    axes: dict[str, dict[int, str]] = {}
    if batch is None:
        axes = {n: {0: "batch"} for n in ("images", "image_sizes", "boxes", "scores")}
    if static_size is None:
        axes.setdefault("images", {}).update({2: "height", 3: "width"})
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", DeprecationWarning
        )  # the legacy exporter, as exporter.onnx_export uses
        torch.onnx.export(
            Tiny().eval(),
            example,
            str(path),
            input_names=list(contract.INPUT_NAMES),
            output_names=["boxes", "scores"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    model = onnx.load(str(path))
    info = contract.ModelInfo(
        class_names=("__background__", "a", "b", "c"),
        preprocess=PARAMS,
        flavor="ort",
        opset=17,
        detections_per_image=4,
        static_input_size=static_size,
        batch=batch,
        max_batch=batch,
    )
    contract.set_metadata_props(model, contract.metadata_dict(info))
    onnx.save(model, str(path))
    return path


def write_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` random textured images of varied sizes (what calibration reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        image = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (5, 5), 0)
        p = folder / f"{i:03d}.png"
        cv2.imwrite(str(p), image)
        paths.append(p)
    return paths


def run(path: Path, images: np.ndarray, image_sizes: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {contract.INPUT_IMAGES: images, contract.INPUT_IMAGE_SIZES: image_sizes})
