"""The exporter's view of ``trainer.loading``: the same resolution of config and weights, its errors as
ExportError so the CLI prints one line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from exporter.errors import ExportError
from trainer.checkpoint import CheckpointError
from trainer.config import ConfigError
from trainer.loading import LoadedModel, load_trained_model

__all__ = ["LoadedModel", "load_model"]


def load_model(
    config_file: str | Path | None, weights: str | Path, opts: Sequence[str] = (), source: str | None = None
) -> LoadedModel:
    try:
        return load_trained_model(weights, config_file, opts, source)
    except (CheckpointError, ConfigError) as e:
        raise ExportError(str(e)) from None
