"""The exporter's user-facing error: raised for anything the user can fix, printed by the CLI without a traceback."""

from __future__ import annotations


class ExportError(ValueError):
    """Bad input to the exporter (config, weights, options, output path); the message says how to fix it."""


class VerificationError(RuntimeError):
    """The exported model diverged from PyTorch beyond tolerance; the message names the diverged outputs."""
