"""The engine build's timing cache and plugin loading, against stand-ins with TensorRT's documented behaviour.

A timing cache TensorRT refuses (another GPU, another TensorRT, a damaged file) used to end the build with an
AttributeError on ``get_timing_cache()`` returning None, after the engine was built. Now the build starts a
fresh cache with a warning, the engine is written first and the cache last, atomically, and nothing about the
cache can raise. The stand-ins (``tests/plugins/trt_stand_ins.py``) reproduce only what TensorRT documents:
``set_timing_cache`` returns False when it refuses a cache, ``get_timing_cache`` is then None,
``create_timing_cache(b"")`` is a new cache, ``load_library`` returns None on failure.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from exporter.errors import ExportError
from exporter.tensorrt_build import (
    attach_timing_cache,
    load_plugin_library,
    save_timing_cache,
    serialized_timing_cache,
)
from runtime.plugins.library import TRT_PLUGIN_CREATORS
from runtime.plugins.spec import NMS_OP, ROI_ALIGN_OP
from tests.plugins.trt_stand_ins import BuilderConfigStandIn, PluginRegistryStandIn

HEADER = b"TRT-CACHE this-gpu this-version;"


def this_machine(blob: bytes) -> bool:
    """What ``set_timing_cache`` takes: an empty (fresh) cache, or one whose header names this GPU and version."""
    return blob == b"" or blob.startswith(HEADER)


def build(config: BuilderConfigStandIn, new_entries: bytes = b"tactic;") -> None:
    """What a build does to the cache it was given: it adds the tactics it timed."""
    cache = config.get_timing_cache()
    if cache is not None:
        cache.blob = (cache.blob or HEADER) + new_entries


def test_an_accepted_cache_is_reused_and_written_back(tmp_path: Path, caplog) -> None:
    path = tmp_path / "timing.cache"
    path.write_bytes(HEADER + b"old;")
    config = BuilderConfigStandIn(this_machine)
    with caplog.at_level(logging.WARNING):
        attach_timing_cache(config, path)
        build(config)
        assert save_timing_cache(path, serialized_timing_cache(config))
    assert not caplog.records
    assert path.read_bytes() == HEADER + b"old;tactic;"
    assert [p.name for p in tmp_path.iterdir()] == ["timing.cache"]  # no temporary file left


@pytest.mark.parametrize(
    "blob",
    [b"TRT-CACHE other-gpu this-version;old;", b"\x00\x13garbage that is no timing cache"],
    ids=["another-gpu", "damaged"],
)
def test_a_refused_cache_gives_a_fresh_one_and_a_warning(tmp_path: Path, caplog, blob: bytes) -> None:
    path = tmp_path / "timing.cache"
    path.write_bytes(blob)
    config = BuilderConfigStandIn(this_machine)
    with caplog.at_level(logging.WARNING):
        attach_timing_cache(config, path)
    assert any(str(path) in r.getMessage() and "fresh" in r.getMessage() for r in caplog.records)
    cache = config.get_timing_cache()
    assert cache is not None and cache.blob == b""  # the build runs with a fresh cache
    build(config)
    assert save_timing_cache(path, serialized_timing_cache(config))
    assert path.read_bytes() == HEADER + b"tactic;"  # a cache that fits takes its name
    assert (
        tmp_path / "timing.cache.refused"
    ).read_bytes() == blob  # the refused file is kept, not overwritten


def test_no_cache_at_all_never_raises(tmp_path: Path, caplog) -> None:
    """Even the fresh cache refused: get_timing_cache() is None, and that is a warning, not an AttributeError."""
    path = tmp_path / "timing.cache"
    path.write_bytes(b"old")
    config = BuilderConfigStandIn(lambda blob: False)
    with caplog.at_level(logging.WARNING):
        attach_timing_cache(config, path)
        assert config.get_timing_cache() is None
        data = serialized_timing_cache(config)
        assert data is None
        assert save_timing_cache(path, data) is False
    assert "building without one" in caplog.text and "no timing cache to save" in caplog.text
    assert (tmp_path / "timing.cache.refused").read_bytes() == b"old"  # kept, never written over


def test_without_a_cache_file_the_build_gets_a_fresh_cache(tmp_path: Path, caplog) -> None:
    config = BuilderConfigStandIn(this_machine)
    with caplog.at_level(logging.WARNING):
        attach_timing_cache(config, None)
        attach_timing_cache(config, tmp_path / "absent.cache")
    assert not caplog.records
    cache = config.get_timing_cache()
    assert cache is not None and cache.blob == b""


def test_a_cache_that_cannot_be_written_is_a_warning(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        assert save_timing_cache(blocker / "timing.cache", HEADER) is False  # parent is a file
        folder = tmp_path / "a-folder.cache"
        folder.mkdir()
        assert save_timing_cache(folder, HEADER) is False  # the target is a folder
    assert caplog.text.count("the engine is written, the cache is not") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-folder.cache", "not-a-folder"]


def test_plugin_loading_failures_are_export_errors(tmp_path: Path) -> None:
    lib = tmp_path / "libmrd_trt_plugins.so"
    with pytest.raises(ExportError, match=f"load_library returned None.*{ROI_ALIGN_OP}.*{NMS_OP}"):
        load_plugin_library(PluginRegistryStandIn(), lib)
    registry = PluginRegistryStandIn({str(lib): TRT_PLUGIN_CREATORS})
    load_plugin_library(registry, lib)
    assert registry.get_creator(NMS_OP, "1", "") is not None
