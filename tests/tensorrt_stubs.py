"""Run mypy on TensorRT code against tensorrt-stubs, which mypy cannot use as installed.

The ``tensorrt-stubs`` wheel (10.13) installs ``tensorrt/__init__.pyi`` without a ``py.typed`` marker, so
mypy skips it as an untyped package and ``--ignore-missing-imports`` then silently types every TensorRT call
as ``Any`` (a check that cannot fail). Its generated ``tensorrt_bindings/tensorrt.pyi`` also has a few
lines Python cannot parse (parameters named ``in``, a parameter without default after defaults). This copies
the stubs to a folder, repairs exactly those lines, and puts the folder on ``MYPYPATH``, so calls are checked
against the real signatures.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STUB_PACKAGES = ("tensorrt", "tensorrt_bindings")


def site_stub_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent.parent / package
    return path if path.is_dir() else None


def repair_stub(text: str) -> str:
    """Make a generated .pyi parseable: rename ``in`` parameters, give late parameters a default."""
    text = re.sub(r"(?<=[(,] )in(?=: )|(?<=\()in(?=: )", "in_", text)
    lines = text.split("\n")
    for _ in range(200):
        try:
            ast.parse("\n".join(lines))
            break
        except SyntaxError as e:
            i = (e.lineno or 1) - 1
            fixed = _default_late_params(lines[i])
            if fixed == lines[i]:
                raise
            lines[i] = fixed
    return "\n".join(lines)


def _default_late_params(line: str) -> str:
    m = re.match(r"(\s*def \w+\()(.*)(\)\s*->.*)$", line)
    if not m:
        return line
    params, seen_default = [], False
    for p in m.group(2).split(", "):
        if "=" in p:
            seen_default = True
        elif seen_default and ":" in p and not p.lstrip().startswith("*"):
            p = f"{p} = ..."
        params.append(p)
    return m.group(1) + ", ".join(params) + m.group(3)


def prepare_stubs(dest: Path) -> Path | None:
    """Repaired copies of the TensorRT stub packages under ``dest``; None when tensorrt-stubs is missing."""
    for package in STUB_PACKAGES:
        src = site_stub_dir(package)
        if src is None:
            return None
        for pyi in src.rglob("*.pyi"):
            out = dest / package / pyi.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(repair_stub(pyi.read_text()))
    return dest


MYPY_CONFIG = """[mypy]
ignore_missing_imports = True

[mypy-tensorrt,tensorrt.*,tensorrt_bindings,tensorrt_bindings.*]
# the generated stubs have errors of their own (a ``bool`` that shadows the builtin, an undefined
# ``capsule``); report ours only
ignore_errors = True

[mypy-torch,torch.*,torchvision,torchvision.*]
# not what this checks, and analyzing them takes a minute
follow_imports = skip
"""


def run_mypy(paths: Sequence[str], stub_dir: Path) -> subprocess.CompletedProcess[str]:
    """mypy on ``paths`` (relative to the repository) with the repaired stubs first on the search path."""
    config = stub_dir / "mypy.ini"
    config.write_text(MYPY_CONFIG)
    env = dict(os.environ, MYPYPATH=str(stub_dir))
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(config), "--no-incremental", *paths]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
