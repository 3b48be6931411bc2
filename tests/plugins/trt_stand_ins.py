"""Stand-ins for the two TensorRT Python objects that plugin loading and the timing cache talk to.

Each reproduces only what TensorRT's Python API documents (the docstrings of tensorrt-stubs 10.13, which are
TensorRT's own), nothing more, and nothing here builds or runs an engine:

- ``IPluginRegistry.load_library(plugin_path)``: "The loaded plugin library handle. The call will fail and
  return None if any of the plugins are already registered." A library TensorRT cannot open gives None too:
  the C++ ``loadLibrary`` is noexcept and returns nullptr on every failure (TensorRT logs why).
  ``IPluginRegistry.get_creator(type, version, plugin_namespace)``: the creator registered under those three,
  None when there is none (C++ ``getCreator`` returns nullptr).
- ``IBuilderConfig.create_timing_cache(b"")``: "If an empty cache is provided (i.e. ``b""``), a new cache will
  be created." ``set_timing_cache(cache, ignore_mismatch)``: a bool, false when the cache is refused (its
  verification header names another device or TensorRT). ``get_timing_cache()``: "The timing cache used in
  current IBuilderConfig, or ``None`` if no timing cache is set."
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

Creator = tuple[str, str, str]


class PluginRegistryStandIn:
    """``libraries`` maps a path to the (name, version, namespace) of the creators its getCreators returns; a
    path not in it is a file TensorRT cannot load."""

    def __init__(self, libraries: dict[str, Iterable[Creator]] | None = None) -> None:
        self.libraries = {path: tuple(creators) for path, creators in (libraries or {}).items()}
        self.creators: dict[Creator, object] = {}
        self.loads: list[str] = []

    def load_library(self, plugin_path: str) -> object | None:
        self.loads.append(plugin_path)
        provided = self.libraries.get(plugin_path)
        if provided is None or any(c in self.creators for c in provided):
            return None
        for creator in provided:
            self.creators[creator] = object()
        return object()  # the library handle (a capsule in TensorRT)

    def get_creator(self, type: str, version: str, plugin_namespace: str = "") -> object | None:
        return self.creators.get((type, version, plugin_namespace))


class TimingCacheStandIn:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def serialize(self) -> memoryview:  # IHostMemory: a buffer
        return memoryview(self.blob)


class BuilderConfigStandIn:
    """``accepts(blob)`` decides whether ``set_timing_cache`` takes a cache: a cache from this GPU and this
    TensorRT, or not (another GPU, another version, a damaged file)."""

    def __init__(self, accepts: Callable[[bytes], bool]) -> None:
        self._accepts = accepts
        self._cache: TimingCacheStandIn | None = None

    def create_timing_cache(self, serialized_timing_cache: bytes) -> TimingCacheStandIn:
        return TimingCacheStandIn(bytes(serialized_timing_cache))

    def set_timing_cache(self, cache: TimingCacheStandIn, ignore_mismatch: bool) -> bool:
        if not self._accepts(cache.blob):
            return False
        self._cache = cache
        return True

    def get_timing_cache(self) -> TimingCacheStandIn | None:
        return self._cache
