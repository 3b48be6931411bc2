"""PyTorch eager backend: the reference every exported model is measured against.

It runs the trainer's model up to, not through, torchvision's own post-processing
(``trainer.inference.raw_forward_batch``), so its outputs go through the same host-side pasting as the
ONNX Runtime and TensorRT outputs. It lives in the trainer, beside the model it runs, so that every arrow
points one way (trainer -> runtime): ``runtime.model_file.BACKENDS`` names it by string and imports it only
when a ``.pth`` is opened.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from runtime.backends.base import Backend, BackendError, BackendUnavailable
from runtime.onnx_contract import ModelInfo
from runtime.op_profile import OpProfile, torch_op_profile
from runtime.preprocess import PreprocessedBatch
from runtime.structures import RawDetections

log = logging.getLogger(__name__)


class TorchBackend(Backend):
    """A checkpoint of ours (config inside) or a plain torchvision state dict (config from ``config_file``).

    A plain state dict without ``config_file`` is tried with the default config, which is torchvision's
    COCO R-50-FPN Mask R-CNN: the common case of a user holding torchvision's published weights.
    """

    name = "torch"
    OPTIONS = ("config_file", "opts", "threads", "source")

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        device: str = "cpu",
        config_file: str | os.PathLike[str] | None = None,
        opts: Sequence[str] = (),
        threads: int | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(model_path, device)
        try:
            import torch
        except ImportError as e:
            raise BackendUnavailable(
                f"{self.model_path}: the torch backend needs PyTorch and torchvision "
                f"(pip install 'maskrcnn-deploy[train]'); export the model to ONNX to run it without them"
            ) from e
        from .checkpoint import CheckpointError
        from .config import ConfigError
        from .loading import load_trained_model

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(
                f"device {device!r} asked for, but PyTorch sees no CUDA GPU; use --device cpu"
            )
        self._torch = torch
        if threads is not None:  # process-wide in PyTorch: the last torch model opened decides
            torch.set_num_threads(int(threads))
        try:
            loaded = load_trained_model(self.model_path, config_file, opts, source)
        except (CheckpointError, ConfigError) as e:
            raise BackendError(f"{self.model_path}: {e}") from None
        self.cfg = loaded.cfg
        self.model = loaded.model.to(device)
        self._info = model_info_for(loaded.cfg, loaded.class_names, loaded.keypoint_names)

    @classmethod
    def from_model(
        cls, model: Any, info: ModelInfo, device: str = "cpu", name: str = "<in-memory model>"
    ) -> TorchBackend:
        """A model already in memory (training-time evaluation, export verification) behind the same
        interface, so those loops run through the Predictor like every other model."""
        import torch

        backend = cls.__new__(cls)
        Backend.__init__(backend, name, device)
        backend._torch = torch
        backend.cfg = None
        backend.model = model.to(device)
        backend._info = info
        return backend

    @property
    def info(self) -> ModelInfo:
        return self._info

    def infer(self, batch: PreprocessedBatch) -> list[RawDetections]:
        from .inference import raw_forward_batch

        with self._torch.inference_mode():
            return raw_forward_batch(self.model, batch, self.device, self._info.output_convention)

    def count_flops(self, batches: Sequence[PreprocessedBatch]) -> list[float] | None:
        from runtime.compute_floor import torch_flops

        return [torch_flops(lambda b=b: self.infer(b)) for b in batches]

    def profile_ops(self, batches: Sequence[PreprocessedBatch]) -> OpProfile:
        return torch_op_profile([lambda b=b: self.infer(b) for b in batches])

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            self._torch.cuda.synchronize(self.device)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()

    def describe(self) -> dict[str, Any]:
        import torchvision

        torch = self._torch
        d = super().describe()
        d["versions"] = {"torch": torch.__version__, "torchvision": torchvision.__version__}
        d["threads"] = torch.get_num_threads()
        if self.device.startswith("cuda"):
            d["gpu"] = torch.cuda.get_device_name(self.device)
        return d


def model_info_for(
    cfg: Any, class_names: Sequence[str], keypoint_names: Sequence[str] | None = None
) -> ModelInfo:
    """What the exported model's metadata would say, from the config it is built from."""
    from .inference import preprocess_params

    return ModelInfo(
        class_names=tuple(class_names),
        preprocess=preprocess_params(cfg),
        mask_size=2 * int(cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION) if cfg.MODEL.MASK_ON else None,
        keypoint_names=tuple(keypoint_names) if keypoint_names else None,
        detections_per_image=int(cfg.TEST.DETECTIONS_PER_IMG),
        precision="fp32",
        config_yaml=cfg.dump(),
        output_convention=str(cfg.TEST.OUTPUT_CONVENTION),
    )
