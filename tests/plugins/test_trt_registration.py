"""Loading our TensorRT plugin library into a plugin registry: ``runtime.plugins.library.register_trt_plugins``.

TensorRT's ``IPluginRegistry.load_library`` returns None instead of raising, so the helper checks the result
and then that every creator of the spec is in the registry; the exporter and the TensorRT backend both use it.
The registry here is a stand-in with exactly the documented behaviour (``tests/plugins/trt_stand_ins.py``);
no TensorRT is needed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runtime.plugins import library
from runtime.plugins.library import (
    HOST_LIBRARY,
    TRT_PLUGIN_CREATORS,
    TRT_PLUGIN_LIBRARY,
    TRT_SELF_REGISTERING_LIBRARY,
    PluginLibraryNotFound,
    PluginRegistrationError,
    missing_trt_creators,
    register_trt_plugins,
)
from runtime.plugins.spec import NMS_OP, PLUGIN_NAMESPACE, PLUGIN_VERSION, ROI_ALIGN_OP
from tests.common import REPO
from tests.plugins.trt_stand_ins import PluginRegistryStandIn


def test_the_creators_are_the_spec_ops() -> None:
    assert TRT_PLUGIN_CREATORS == (
        (ROI_ALIGN_OP, PLUGIN_VERSION, PLUGIN_NAMESPACE),
        (NMS_OP, PLUGIN_VERSION, PLUGIN_NAMESPACE),
    )


def test_loads_once_and_checks_every_creator(tmp_path: Path) -> None:
    lib = tmp_path / TRT_PLUGIN_LIBRARY
    registry = PluginRegistryStandIn({str(lib): TRT_PLUGIN_CREATORS})
    assert missing_trt_creators(registry) == [
        f"{ROI_ALIGN_OP} (version '1', namespace '')",
        f"{NMS_OP} (version '1', namespace '')",
    ]
    assert register_trt_plugins(registry, lib) is not None
    assert missing_trt_creators(registry) == []
    # a second engine build in the same process: TensorRT would refuse the library (its plugins are
    # registered), so it is not loaded again, and that is no error
    assert register_trt_plugins(registry, lib) is None
    assert registry.loads == [str(lib)]


def test_a_library_tensorrt_cannot_load_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    missing = tmp_path / TRT_PLUGIN_LIBRARY
    registry = PluginRegistryStandIn()  # load_library returns None for every path
    with pytest.raises(PluginRegistrationError) as info:
        register_trt_plugins(registry, missing)
    message = str(info.value)
    assert str(missing) in message and "returned None" in message and "does not exist" in message
    assert ROI_ALIGN_OP in message and NMS_OP in message
    assert "-DTENSORRT_ROOT=" in message and TRT_PLUGIN_LIBRARY in message

    junk = tmp_path / "libjunk.so"
    junk.write_bytes(b"not an ELF file")
    with pytest.raises(PluginRegistrationError, match=r"cannot be loaded: .*libjunk\.so"):
        register_trt_plugins(registry, junk)


def test_the_self_registering_library_is_named_as_the_wrong_one(tmp_path: Path) -> None:
    selfreg = tmp_path / TRT_SELF_REGISTERING_LIBRARY
    selfreg.write_bytes(b"\x7fELF")  # never opened: it would register itself as a side effect
    with pytest.raises(
        PluginRegistrationError, match=f"self-registering library .*needs {TRT_PLUGIN_LIBRARY}"
    ):
        register_trt_plugins(PluginRegistryStandIn(), selfreg)


def test_a_shared_library_without_get_creators_is_named() -> None:
    from scripts.build_plugins import BuildToolMissing, ensure_built

    try:
        host = ensure_built(HOST_LIBRARY)
    except BuildToolMissing as e:
        pytest.skip(f"cannot build the plugin libraries here: {e}")
    with pytest.raises(PluginRegistrationError, match="exports no getCreators"):
        register_trt_plugins(PluginRegistryStandIn(), host)


def test_a_library_without_all_creators_is_an_error(tmp_path: Path) -> None:
    lib = tmp_path / "libother.so"
    registry = PluginRegistryStandIn({str(lib): TRT_PLUGIN_CREATORS[:1]})  # an old or foreign build
    with pytest.raises(PluginRegistrationError) as info:
        register_trt_plugins(registry, lib)
    message = str(info.value)
    assert "loaded the plugin library" in message and NMS_OP in message and ROI_ALIGN_OP not in message
    assert "Rebuild it from this checkout" in message


def test_creators_half_registered_by_another_library_are_an_error(tmp_path: Path) -> None:
    registry = PluginRegistryStandIn({str(tmp_path / "a.so"): TRT_PLUGIN_CREATORS[1:]})
    registry.load_library(str(tmp_path / "a.so"))
    with pytest.raises(PluginRegistrationError, match=f"has {NMS_OP} .*already .*but not {ROI_ALIGN_OP}"):
        register_trt_plugins(registry, tmp_path / TRT_PLUGIN_LIBRARY)
    assert len(registry.loads) == 1  # not tried: TensorRT would refuse it


def test_without_a_library_the_built_one_or_the_build_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(library, "search_dirs", lambda: [tmp_path])
    with pytest.raises(PluginLibraryNotFound, match=re.escape(TRT_PLUGIN_LIBRARY) + ".*TENSORRT_ROOT"):
        register_trt_plugins(PluginRegistryStandIn())
    built = tmp_path / TRT_PLUGIN_LIBRARY
    built.write_bytes(b"")
    registry = PluginRegistryStandIn({str(built): TRT_PLUGIN_CREATORS})
    assert register_trt_plugins(registry) is not None and registry.loads == [str(built)]


def test_one_copy_of_the_loading_logic() -> None:
    """The engine build and the TensorRT backend load plugins through the helper, never by hand."""
    for source in ("exporter/tensorrt_build.py", "runtime/backends/tensorrt_backend.py"):
        text = (REPO / source).read_text()
        assert "register_trt_plugins(" in text, source
        assert ".load_library(" not in text, source
