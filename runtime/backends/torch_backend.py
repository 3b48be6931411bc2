"""PyTorch eager backend: the reference every exported model is measured against.

It runs the trainer's model up to, not through, torchvision's own post-processing
(``trainer.inference.raw_forward_batch``), so its outputs go through the same host-side pasting as the
ONNX Runtime and TensorRT outputs. The only module of ``runtime`` that imports torch and the trainer,
and only when a ``.pth`` is opened.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from runtime.backends.base import Backend, BackendError, BackendUnavailable, ModelInfo, default_class_names
from runtime.coco_classes import COCO_PERSON_KEYPOINTS, COCO_TORCHVISION_CLASSES
from runtime.preprocess import PreprocessedBatch
from runtime.structures import RawDetections

log = logging.getLogger(__name__)


class TorchBackend(Backend):
    """A checkpoint of ours (config inside) or a plain torchvision state dict (config from ``config_file``).

    A plain state dict without ``config_file`` is tried with the default config, which is torchvision's
    COCO R-50-FPN Mask R-CNN: the common case of a user holding torchvision's published weights.
    """

    name = "torch"
    OPTIONS = ("config_file", "opts", "threads")

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        device: str = "cpu",
        config_file: str | os.PathLike[str] | None = None,
        opts: Sequence[str] = (),
        threads: int | None = None,
    ) -> None:
        super().__init__(model_path, device)
        try:
            import torch
        except ImportError as e:
            raise BackendUnavailable(
                f"{self.model_path}: the torch backend needs PyTorch and torchvision "
                f"(pip install 'maskrcnn-deploy[train]'); export the model to ONNX to run it without them"
            ) from e
        from trainer.checkpoint import CheckpointError, load_checkpoint_file, load_model_weights
        from trainer.config import ConfigError, config_from_yaml_text, load_config
        from trainer.inference import preprocess_params
        from trainer.model import build_model

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"device {device!r} asked for, but PyTorch sees no CUDA GPU; use --device cpu")
        self._torch = torch
        if threads is not None:  # process-wide in PyTorch: the last torch model opened decides
            torch.set_num_threads(int(threads))
        has_config = config_file is not None
        try:
            ckpt = load_checkpoint_file(self.model_path)
            has_config = has_config or bool(ckpt.get("config"))
            if config_file is not None:
                cfg = load_config(config_file, list(opts))
            elif ckpt.get("config"):
                cfg = config_from_yaml_text(str(ckpt["config"]))
                if opts:
                    cfg.defrost()
                    from trainer.config import merge_from_list

                    merge_from_list(cfg, list(opts))
                    cfg.freeze()
            else:
                log.info("%s holds no config: using the default (torchvision COCO R-50-FPN)", self.model_path)
                cfg = load_config(None, list(opts))
            model = build_model(cfg, train=False)
            load_model_weights(model, ckpt["model"])
        except (CheckpointError, ConfigError) as e:
            hint = "" if has_config else " (the file has no config: pass the one it was trained with, --config-file)"
            raise BackendError(f"{self.model_path}: {e}{hint}") from None
        self.cfg = cfg
        self.model = model.eval().to(device)
        num_classes = int(cfg.MODEL.ROI_HEADS.NUM_CLASSES)
        names = ckpt.get("class_names") or _default_names(num_classes)
        if len(names) != num_classes:
            log.warning("%s: %d class names for %d classes; using placeholders", self.model_path, len(names),
                        num_classes)  # fmt: skip
            names = default_class_names(num_classes)
        keypoint_names = ckpt.get("keypoint_names")
        if cfg.MODEL.KEYPOINT_ON and not keypoint_names:
            num_kp = int(cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS)
            keypoint_names = COCO_PERSON_KEYPOINTS if num_kp == 17 else [f"kp_{i}" for i in range(num_kp)]
        self._info = ModelInfo(
            class_names=tuple(str(n) for n in names),
            preprocess=preprocess_params(cfg),
            mask_size=2 * int(cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION) if cfg.MODEL.MASK_ON else None,
            keypoint_names=tuple(keypoint_names) if cfg.MODEL.KEYPOINT_ON else None,
            detections_per_image=int(cfg.TEST.DETECTIONS_PER_IMG),
            precision="fp32",
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    def infer(self, batch: PreprocessedBatch) -> list[RawDetections]:
        from trainer.inference import raw_forward_batch

        with self._torch.inference_mode():
            return raw_forward_batch(self.model, batch, self.device)

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



def _default_names(num_classes: int) -> tuple[str, ...]:
    """COCO's names for torchvision's 91-label COCO weights, placeholders otherwise."""
    if num_classes == len(COCO_TORCHVISION_CLASSES):
        return COCO_TORCHVISION_CLASSES
    return default_class_names(num_classes)
