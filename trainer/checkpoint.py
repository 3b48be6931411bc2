"""Checkpoints: atomic writes, safe loads, and torchvision state dicts accepted as they are.

A checkpoint is a dict ``{"model", "optimizer", "scheduler", "iteration", "config", "class_names"}``; a
plain state dict (what torchvision publishes) is read as ``{"model": state_dict}``. Everything a user hands
in is read with ``weights_only=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from runtime.atomic_files import write_atomic

LAST_CHECKPOINT = "last_checkpoint"

#: parameters whose shape depends on the number of classes (or keypoints): the ones a fine-tune replaces
CLASS_SPECIFIC_PREFIXES = (
    "roi_heads.box_predictor.",
    "roi_heads.mask_predictor.mask_fcn_logits.",
    "roi_heads.keypoint_predictor.",
)


class CheckpointError(ValueError):
    """A weights file can't be used; the message names the file and the reason."""


def _atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write to a temporary file beside ``path`` and rename it, so a kill never leaves half a file."""

    def write_file(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    write_atomic(path, write_file)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    _atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: str | Path, text: str) -> None:
    _atomic_write(path, lambda f: f.write(text.encode()))


def save_checkpoint(
    output_dir: str | Path,
    name: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    iteration: int,
    config_yaml: str,
    class_names: list[str],
    keypoint_names: list[str] | None = None,
) -> Path:
    """Save and point ``OUTPUT_DIR/last_checkpoint`` at it (after the file is complete)."""
    output_dir = Path(output_dir)
    model = model.module if hasattr(model, "module") else model
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "iteration": int(iteration),
        "config": config_yaml,
        "class_names": list(class_names),
        "keypoint_names": list(keypoint_names or []),
    }
    path = output_dir / f"{name}.pth"
    atomic_torch_save(state, path)
    atomic_write_text(output_dir / LAST_CHECKPOINT, path.name)
    return path


def last_checkpoint(output_dir: str | Path) -> Path | None:
    """The checkpoint ``OUTPUT_DIR/last_checkpoint`` names; None when there is no such marker.

    A marker naming a file that is not there (deleted, or not yet copied back) is an error, not a reason to
    start over silently: a resumed run would otherwise train from nothing into the same folder.
    """
    marker = Path(output_dir) / LAST_CHECKPOINT
    if not marker.is_file():
        return None
    try:
        name = marker.read_text(errors="replace").strip()
    except OSError as e:
        raise CheckpointError(f"cannot read {marker}: {e.strerror or e}") from None
    if not name or Path(name).name != name or name in (".", ".."):
        raise CheckpointError(f"{marker} must name a checkpoint file in {output_dir}, not {name[:80]!r}")
    path = Path(output_dir) / name
    if not path.is_file():
        raise CheckpointError(
            f"{marker} names {name}, which is not in {output_dir}: put it back, or train with --no-resume to "
            "start over"
        )
    return path


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint of ours or a plain state dict; raise CheckpointError with a reason otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"weights file {path} is empty")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated zips, pickles and foreign files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated, corrupt, or not a .pth file): {reason}"
        ) from None
    if _is_state_dict(obj):
        return {"model": dict(obj)}
    if isinstance(obj, Mapping) and _is_state_dict(obj.get("model")):
        return dict(obj)
    raise CheckpointError(
        f"{path} holds no model weights: expected a state dict or a dict with a 'model' state dict"
    )


def _strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def load_model_weights(
    model: nn.Module, state: Mapping[str, torch.Tensor], skip_class_heads: bool = False
) -> None:
    """Load ``state`` with strict key matching, explaining mismatches in the user's terms.

    BatchNorm's ``num_batches_tracked`` counters are the one tolerated difference: torchvision's published
    weights (FrozenBatchNorm) lack them and a BatchNorm model has them, and they carry no weights.
    """
    state = _strip_prefix(state, "module.")
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.endswith("num_batches_tracked")}
    for k in own:
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = own[k]

    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    class_mismatch = [k for k in mismatched if k.startswith(CLASS_SPECIFIC_PREFIXES)]
    other_mismatch = [k for k in mismatched if k not in class_mismatch]
    if other_mismatch:
        k = other_mismatch[0]
        raise CheckpointError(
            f"the weights don't fit this config's model: {k} is {tuple(state[k].shape)} in the file but "
            f"{tuple(own[k].shape)} in the model ({len(other_mismatch)} such tensors); check "
            "MODEL.BACKBONE.* and the ROI head sizes against the config the weights were trained with"
        )
    if class_mismatch:
        if not skip_class_heads:
            cls_key = "roi_heads.box_predictor.cls_score.bias"
            n_file = state[cls_key].shape[0] if cls_key in state else "?"
            n_model = own[cls_key].shape[0] if cls_key in own else "?"
            raise CheckpointError(
                f"the weights are for {n_file} classes (background included) but the config has "
                f"MODEL.ROI_HEADS.NUM_CLASSES {n_model}; set NUM_CLASSES to {n_file}, or load all but the "
                "class-specific heads to fine-tune (--skip-class-heads)"
            )
        for k in class_mismatch:
            state[k] = own[k]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        for what, names in (("missing", missing), ("unexpected", unexpected)):
            if names:
                more = f", ... ({len(names)} in all)" if len(names) > 5 else ""
                parts.append(f"{what}: {', '.join(names[:5])}{more}")
        raise CheckpointError(
            "the weights' parameter names don't match this config's model: "
            + ", ".join(parts)
            + "; is MODEL.MASK_ON / MODEL.KEYPOINT_ON / MODEL.BACKBONE.CONV_BODY the one they were trained with?"
        )
    model.load_state_dict(state, strict=True)
