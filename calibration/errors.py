"""The one error type of calibration, so the CLI can turn every user mistake into a message, not a traceback."""

from __future__ import annotations


class CalibrationError(ValueError):
    """Bad calibration input: an empty or unreadable folder, too few images, a cache from another model."""
