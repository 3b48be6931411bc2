"""The TensorRT backend's plugin loading (``load_engine_plugins``), against a stand-in plugin registry.

The registry reproduces TensorRT's documented behaviour (``load_library`` returns None on failure,
``get_creator`` None for an unknown creator; ``tests/plugins/trt_stand_ins.py``). Without TensorRT nothing
else of the backend can run here; ``tests/runtime/test_backends.py`` covers its errors where TensorRT is
missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.backends.base import BackendError, BackendUnavailable
from runtime.backends.tensorrt_backend import load_engine_plugins
from runtime.plugins import library
from runtime.plugins.library import TRT_PLUGIN_CREATORS, TRT_PLUGIN_LIBRARY
from runtime.plugins.spec import NMS_OP, ROI_ALIGN_OP
from tests.plugins.trt_stand_ins import PluginRegistryStandIn


def test_a_library_tensorrt_refuses_is_a_backend_error_naming_it(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    lib = tmp_path / TRT_PLUGIN_LIBRARY
    lib.write_bytes(b"\x7fELF not really")
    with pytest.raises(BackendError) as info:
        load_engine_plugins(PluginRegistryStandIn(), lib, engine)
    message = str(info.value)
    assert message.startswith(f"{engine}: ") and str(lib) in message and "returned None" in message
    assert ROI_ALIGN_OP in message and NMS_OP in message and "-DTENSORRT_ROOT=" in message


def test_the_built_library_is_loaded_and_checked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(library, "search_dirs", lambda: [tmp_path])
    engine = tmp_path / "model.engine"
    with pytest.raises(BackendUnavailable, match="the engine needs our plugin library: .*not found"):
        load_engine_plugins(PluginRegistryStandIn(), None, engine)
    built = tmp_path / TRT_PLUGIN_LIBRARY
    built.write_bytes(b"")
    registry = PluginRegistryStandIn({str(built): TRT_PLUGIN_CREATORS})
    load_engine_plugins(registry, None, engine)
    load_engine_plugins(registry, None, engine)  # a second engine in the process: not loaded twice
    assert registry.loads == [str(built)]
    assert all(registry.get_creator(*c) is not None for c in TRT_PLUGIN_CREATORS)


def test_a_library_missing_a_creator_is_a_backend_error(tmp_path: Path) -> None:
    lib = tmp_path / "libold.so"
    registry = PluginRegistryStandIn({str(lib): TRT_PLUGIN_CREATORS[:1]})
    with pytest.raises(BackendError, match=f"registry has no {NMS_OP}"):
        load_engine_plugins(registry, lib, tmp_path / "model.engine")
