"""The TensorRT plugin libraries against TensorRT's headers, without TensorRT's libraries and without a GPU.

Builds the plugin libraries and ``plugins_cuda/tests/test_trt_plugins.cpp`` against the headers named by
``TENSORRT_INCLUDE_DIR`` (the folder with ``NvInferRuntime.h``) or ``TENSORRT_ROOT`` (its parent), runs the
C++ test (a stand-in plugin registry: loadLibrary, self-registration, creators, shapes, serialization; see
the file), and checks with ``nm`` / ``readelf`` what the two libraries export and need. Skipped where no
headers are given (CI has none: the headers are never part of this repository) or nvcc is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from runtime.plugins.library import REPO_ROOT, TRT_PLUGIN_LIBRARY, TRT_SELF_REGISTERING_LIBRARY
from scripts.build_plugins import BuildToolMissing, _cuda_compiler, build_plugins


def tensorrt_include_dir() -> Path | None:
    if os.environ.get("TENSORRT_INCLUDE_DIR"):
        return Path(os.environ["TENSORRT_INCLUDE_DIR"])
    if os.environ.get("TENSORRT_ROOT"):
        return Path(os.environ["TENSORRT_ROOT"]) / "include"
    return None


HEADERS = tensorrt_include_dir()
pytestmark = [
    pytest.mark.skipif(
        HEADERS is None,
        reason="no TensorRT headers: set TENSORRT_INCLUDE_DIR (folder with NvInferRuntime.h) or TENSORRT_ROOT",
    ),
    pytest.mark.skipif(_cuda_compiler() is None, reason="the TensorRT plugin libraries need nvcc to build"),
]


def header_version(include: Path) -> str:
    """``major.minor`` of the headers (both spellings of NvInferVersion.h: 10.0-10.10 and 10.11+/11.x)."""
    text = (include / "NvInferVersion.h").read_text()
    defines = dict(re.findall(r"^\s*#\s*define\s+(\w+)\s+(\w+)", text, re.M))

    def value(part: str) -> str:
        v = defines[f"NV_TENSORRT_{part}"]
        return v if v.isdigit() else defines[v]

    return f"{value('MAJOR')}.{value('MINOR')}"


@pytest.fixture(scope="module")
def built() -> Path:
    assert HEADERS is not None
    if not (HEADERS / "NvInferRuntime.h").is_file():
        pytest.fail(f"{HEADERS} has no NvInferRuntime.h (TENSORRT_INCLUDE_DIR / TENSORRT_ROOT)")
    build = REPO_ROOT / "build" / f"trt-plugin-test-{header_version(HEADERS)}"
    try:
        # one CUDA architecture: nothing here runs a kernel, the build only has to compile and link
        out = build_plugins(build, tensorrt_include_dir=HEADERS, cuda_architectures="80", jobs=1)
    except BuildToolMissing as e:
        pytest.skip(f"cannot build the plugin libraries here: {e}")
    for name in (TRT_PLUGIN_LIBRARY, TRT_SELF_REGISTERING_LIBRARY, "mrd_test_trt_plugins"):
        assert (out / name).is_file(), f"the build made no {name} in {out}"
    return out


def test_cpp_plugin_test_passes(built: Path) -> None:
    result = subprocess.run(
        [
            str(built / "mrd_test_trt_plugins"),
            str(built / TRT_PLUGIN_LIBRARY),
            str(built / TRT_SELF_REGISTERING_LIBRARY),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^\d+ checks, 0 failed$", result.stdout, re.M), result.stdout


def dynamic_symbols(library: Path, which: str) -> set[str]:
    out = subprocess.run(["nm", "-D", which, str(library)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}


def needed(library: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


@pytest.mark.skipif(shutil.which("nm") is None or shutil.which("readelf") is None, reason="binutils missing")
def test_load_library_route_exports_only_the_entry_points(built: Path) -> None:
    """libmrd_trt_plugins.so: getCreators and setLoggerFinder, no TensorRT symbol to resolve, no libnvinfer or
    libcudart to find (TensorRT's loadLibrary and Python's RTLD_LOCAL tensorrt can load it anywhere)."""
    lib = built / TRT_PLUGIN_LIBRARY
    assert dynamic_symbols(lib, "--defined-only") == {"getCreators", "setLoggerFinder"}
    undefined = dynamic_symbols(lib, "--undefined-only")
    trt_like = {
        s for s in undefined if re.search(r"nvinfer|getPluginRegistry|getLogger|PluginRegistrar|^cuda", s)
    }
    assert not trt_like, trt_like
    assert not [n for n in needed(lib) if n.startswith(("libnvinfer", "libcudart"))], needed(lib)


@pytest.mark.skipif(shutil.which("nm") is None or shutil.which("readelf") is None, reason="binutils missing")
def test_self_registering_route_exports_nothing(built: Path) -> None:
    lib = built / TRT_SELF_REGISTERING_LIBRARY
    assert dynamic_symbols(lib, "--defined-only") == set()
    assert not [n for n in needed(lib) if n.startswith("libcudart")], needed(lib)
