"""The SHA-256 of a file, read in blocks (a model file can be larger than the memory one wants to spend on
hashing it): what ties an engine to its ONNX, and a report row to its weights."""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
