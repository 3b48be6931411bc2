"""ONNX -> TensorRT engine with TensorRT's Python API (>= 10), strongly typed, plus the engine's JSON sidecar.

Strongly typed because TensorRT 11 removed the FP16/INT8 builder flags: the ONNX decides each layer's type
(FP32, the mixed FP16 of ``exporter.precision_fp16``, the Q/DQ INT8 of ``exporter.quantize_int8``), so the
precision measured with ONNX Runtime on the CPU is the precision the engine runs. The timing cache is
reused across builds (rebuilding another precision of one model then takes seconds instead of minutes).

Where TensorRT or a GPU is missing this raises :class:`TensorRTUnavailable`, whose message says what is
missing (``runtime.tensorrt_probe``, shared with the TensorRT backend) and carries the equivalent ``trtexec``
line (``exporter.trtexec``), to run where both exist.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from exporter.errors import ExportError
from exporter.trtexec import format_command, trtexec_command
from runtime import onnx_contract as contract
from runtime.atomic_files import write_bytes_atomic
from runtime.engine_sidecar import write_engine_with_sidecar
from runtime.file_hash import file_sha256
from runtime.plugins.spec import DOMAIN
from runtime.tensorrt_probe import MIN_TENSORRT_MAJOR, probe_tensorrt

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_MIB = 2048
#: where the plugin library is looked for when it is not built yet, for the printed trtexec line
PLUGIN_PLACEHOLDER = "build/plugins_cuda/libmrd_trt_plugins.so"

BHW = tuple[int, int, int]


class TensorRTUnavailable(ExportError):
    """TensorRT's Python package or a CUDA GPU is missing here; the message holds the trtexec line to use."""

    def __init__(self, missing: str, trtexec_line: str) -> None:
        self.missing = missing
        self.trtexec_line = trtexec_line
        super().__init__(
            f"cannot build a TensorRT engine here: {missing}. The ONNX model is written; build the engine on a "
            f"machine with TensorRT >= {MIN_TENSORRT_MAJOR} and an NVIDIA GPU with:\n  {trtexec_line}"
        )


@dataclass(frozen=True)
class ProfileShapes:
    """min/opt/max (batch, height, width) of the ``images`` input; ``image_sizes`` follows the batch."""

    min: BHW
    opt: BHW
    max: BHW

    def __post_init__(self) -> None:
        for axis, name in enumerate(("batch", "height", "width")):
            lo, mid, hi = self.min[axis], self.opt[axis], self.max[axis]
            if not 1 <= lo <= mid <= hi:
                raise ExportError(
                    f"optimization profile {name}: need 1 <= min <= opt <= max, got {lo}, {mid}, {hi}"
                )

    def input_shapes(self, which: str) -> dict[str, tuple[int, ...]]:
        b, h, w = {"min": self.min, "opt": self.opt, "max": self.max}[which]
        return {contract.INPUT_IMAGES: (b, 3, h, w), contract.INPUT_IMAGE_SIZES: (b, 2)}

    def to_dict(self) -> dict[str, dict[str, list[int]]]:
        return {
            name: {k: list(self.input_shapes(k)[name]) for k in ("min", "opt", "max")}
            for name in contract.INPUT_NAMES
        }


@dataclass
class EngineBuildResult:
    engine_path: Path
    sidecar_path: Path
    timing_cache: Path | None
    seconds: float
    size_bytes: int

    def summary(self) -> str:
        return (
            f"wrote {self.engine_path} ({self.size_bytes / 2**20:.1f} MiB, {self.seconds:.0f} s) and "
            f"{self.sidecar_path.name}" + (f"; timing cache {self.timing_cache}" if self.timing_cache else "")
        )


def parse_bhw(text: str) -> BHW:
    """``"1x800x1344"`` (batch x height x width) -> (1, 800, 1344), for the CLI's profile arguments."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not m:
        raise ExportError(f"expected BATCHxHEIGHTxWIDTH such as 1x800x1344, got {text!r}")
    b, h, w = (int(g) for g in m.groups())
    return b, h, w


def default_profile(info: contract.ModelInfo, max_batch: int = 1, opt_batch: int = 1) -> ProfileShapes:
    """Profile covering every image the model's pre-processing can produce, tuned for 4:3 images.

    A static model (fixed size or batch in its metadata) gets exactly its shape on those axes.
    """
    pre = info.preprocess
    div = max(pre.size_divisibility, 1)

    def pad(v: float) -> int:
        return int(math.ceil(v / div) * div)

    if info.batch is not None:
        max_batch = opt_batch = info.batch
    min_batch = info.batch or 1
    if info.static_input_size is not None:
        h, w = info.static_input_size
        return ProfileShapes((min_batch, h, w), (opt_batch, h, w), (max_batch, h, w))
    long_side = pad(pre.max_size)
    opt_h, opt_w = pad(pre.min_size), pad(min(pre.min_size * 4 / 3, pre.max_size))
    small = pad(32)
    return ProfileShapes(
        (min_batch, small, small), (opt_batch, opt_h, opt_w), (max_batch, long_side, long_side)
    )


def needs_plugins(onnx_path: Path) -> bool:
    """True for the ``trt`` flavor: its graph has our plugin nodes."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(n.domain == DOMAIN for n in model.graph.node)


def equivalent_trtexec(
    onnx_path: Path,
    engine_path: Path,
    profile: ProfileShapes,
    plugin_library: str | Path | None,
    timing_cache: Path | None,
    workspace_mib: int,
) -> str:
    return format_command(
        trtexec_command(
            onnx_path,
            engine_path,
            profile.input_shapes("min"),
            profile.input_shapes("opt"),
            profile.input_shapes("max"),
            plugin_library=plugin_library,
            timing_cache=timing_cache,
            workspace_mib=workspace_mib,
        )
    )


def build_engine(
    onnx_path: str | os.PathLike[str],
    engine_path: str | os.PathLike[str],
    profile: ProfileShapes | None = None,
    plugin_library: str | os.PathLike[str] | None = None,
    workspace_mib: int = DEFAULT_WORKSPACE_MIB,
    timing_cache: str | os.PathLike[str] | None = None,
    optimization_level: int | None = None,
    verbose: bool = False,
) -> EngineBuildResult:
    """Build a strongly typed engine from ``onnx_path`` and write it with its JSON sidecar.

    ``profile`` defaults to :func:`default_profile` of the model's metadata. ``plugin_library`` defaults to
    the built ``libmrd_trt_plugins.so`` when the graph has plugin nodes. ``timing_cache`` is read when it
    exists and TensorRT accepts it (else the build starts a fresh cache, with a warning) and written back
    after the build, atomically; a cache that cannot be read or written never costs the engine.
    """
    start = time.perf_counter()
    src, dst = Path(onnx_path), Path(engine_path)
    try:
        info = contract.read_metadata(src)
    except contract.ContractError as e:
        raise ExportError(str(e)) from None
    if profile is None:
        profile = default_profile(info)
    check_profile(profile, info)
    if workspace_mib <= 0:
        raise ExportError(f"the workspace limit must be positive, got {workspace_mib} MiB")
    cache = Path(timing_cache) if timing_cache is not None else None
    plugins = resolve_plugin_library(src, plugin_library)
    trt_version, gpu_facts, missing = probe_tensorrt()
    if missing is not None:
        line = equivalent_trtexec(src, dst, profile, plugins or _placeholder(src), cache, workspace_mib)
        raise TensorRTUnavailable(missing, line)
    assert trt_version is not None and gpu_facts is not None
    if plugins is None and needs_plugins(src):
        from runtime.plugins.library import PluginLibraryNotFound, trt_plugin_library_path

        try:
            plugins = trt_plugin_library_path()
        except PluginLibraryNotFound as e:
            raise ExportError(f"{src} has plugin nodes (trt flavor): {e}") from None
    serialized, cache_bytes = _build(src, profile, plugins, workspace_mib, cache, optimization_level, verbose)
    props = _metadata_props(src)
    sidecar = write_engine_with_sidecar(
        dst,
        serialized,
        contract.sidecar_dict(
            props,
            {
                contract.SIDECAR_TENSORRT_VERSION: trt_version,
                contract.SIDECAR_GPU: gpu_facts[0],
                contract.SIDECAR_COMPUTE_CAPABILITY: gpu_facts[1],
                contract.SIDECAR_ONNX_SHA256: file_sha256(src),
                contract.SIDECAR_PROFILE: profile.to_dict(),
                contract.SIDECAR_PLUGIN_LIBRARY: str(plugins) if plugins else None,
            },
        ),
    )
    # last, after the engine and its sidecar are on disk: a cache that cannot be written costs a warning only
    saved = cache if cache is not None and save_timing_cache(cache, cache_bytes) else None
    return EngineBuildResult(dst, sidecar, saved, time.perf_counter() - start, len(serialized))


def check_profile(profile: ProfileShapes, info: contract.ModelInfo) -> None:
    """A static model accepts only its own shape; say so instead of letting TensorRT fail on it."""
    for which in ("min", "opt", "max"):
        b, h, w = getattr(profile, which)
        if info.static_input_size is not None and (h, w) != tuple(info.static_input_size):
            raise ExportError(
                f"the model was exported for a fixed {info.static_input_size[0]}x{info.static_input_size[1]} input, but the "
                f"{which} profile asks for {h}x{w}; drop the profile arguments or re-export with a dynamic size"
            )
        if info.batch is not None and b != info.batch:
            raise ExportError(
                f"the model was exported for a fixed batch of {info.batch}, but the {which} profile asks for {b}"
            )


def resolve_plugin_library(onnx_path: Path, plugin_library: str | os.PathLike[str] | None) -> Path | None:
    """The given library (which must exist), else the built one if the graph needs plugins and it is built."""
    if plugin_library is not None:
        path = Path(plugin_library)
        if not path.is_file():
            raise ExportError(f"plugin library {path} not found")
        return path
    if not needs_plugins(onnx_path):
        return None
    from runtime.plugins.library import PluginLibraryNotFound, trt_plugin_library_path

    try:
        return trt_plugin_library_path()
    except PluginLibraryNotFound:
        return None  # reported by build_engine where TensorRT exists; a placeholder in the trtexec line


def _placeholder(onnx_path: Path) -> str | None:
    return PLUGIN_PLACEHOLDER if needs_plugins(onnx_path) else None


def _metadata_props(onnx_path: Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return contract.metadata_props(model)


def refused_cache_path(path: Path) -> Path:
    """Where a file TensorRT refused as a timing cache is kept (``timing.cache`` -> ``timing.cache.refused``)."""
    return path.with_name(path.name + ".refused")


def attach_timing_cache(config: trt.IBuilderConfig, path: Path | None) -> None:
    """Give the build the timing cache at ``path`` if TensorRT accepts it, else a fresh one, with a warning.

    ``set_timing_cache`` returns False when it refuses a cache (another GPU, another TensorRT version, a
    damaged file); TensorRT then has no cache set. A fresh cache (``create_timing_cache(b"")``) takes its
    place, so the build runs and the cache written after it fits this machine.
    """
    old = b""
    if path is not None and path.is_file():
        try:
            old = path.read_bytes()
        except OSError as e:
            log.warning("cannot read the timing cache %s (%s); starting a fresh one", path, e)
    if old:
        cache = _create_timing_cache(config, old)
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return
        assert path is not None
        kept = refused_cache_path(path)
        try:
            os.replace(path, kept)  # it may not be a cache at all: kept, never written over
        except OSError as e:
            log.warning("cannot move the refused timing cache %s aside (%s)", path, e)
        log.warning(
            "timing cache %s is damaged, does not fit this TensorRT/GPU, or is not a timing cache; starting a "
            "fresh one (saved there after the build; the refused file is kept as %s)",
            path,
            kept.name,
        )
    fresh = _create_timing_cache(config, b"")
    if fresh is None or not config.set_timing_cache(fresh, ignore_mismatch=False):
        log.warning("TensorRT refused a fresh timing cache; building without one")


def _create_timing_cache(config: trt.IBuilderConfig, blob: bytes) -> trt.ITimingCache | None:
    try:
        return config.create_timing_cache(blob)
    except Exception as e:  # a binding that raises on a blob it cannot parse instead of returning None
        log.warning("TensorRT cannot read the timing cache (%s)", e)
        return None


def serialized_timing_cache(config: trt.IBuilderConfig) -> bytes | None:
    """The build's timing cache as bytes; None (with a warning) if there is none or it cannot be serialized."""
    cache = config.get_timing_cache()  # None when no cache is set (set_timing_cache refused it)
    if cache is None:
        log.warning("the build has no timing cache to save")
        return None
    try:
        return bytes(cache.serialize())
    except Exception as e:  # never lose the engine over its cache
        log.warning("cannot serialize the timing cache (%s)", e)
        return None


def save_timing_cache(path: Path, data: bytes | None) -> bool:
    """Write ``data`` to ``path`` atomically (a temporary file in the same folder, then a rename): a reader
    never sees half a cache. Returns False, with a warning, when there is nothing to write or it fails."""
    if data is None:
        return False
    try:
        write_bytes_atomic(path, data)
    except OSError as e:
        log.warning("cannot write the timing cache %s (%s); the engine is written, the cache is not", path, e)
        return False
    return True


def load_plugin_library(registry: trt.IPluginRegistry, plugin_library: Path) -> None:
    """Our plugin creators into the builder's registry, checked (:func:`runtime.plugins.library.register_trt_plugins`)."""
    from runtime.plugins.library import PluginRegistrationError, register_trt_plugins

    try:
        register_trt_plugins(registry, plugin_library)
    except PluginRegistrationError as e:
        raise ExportError(str(e)) from None


def _build(
    onnx_path: Path,
    profile: ProfileShapes,
    plugin_library: Path | None,
    workspace_mib: int,
    timing_cache: Path | None,
    optimization_level: int | None,
    verbose: bool,
) -> tuple[bytes, bytes | None]:
    """The TensorRT part, typed against tensorrt-stubs (only reached once :func:`probe_tensorrt` found it).

    Returns the serialized engine and, when ``timing_cache`` is given, the timing cache to save (or None).
    """
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    if plugin_library is not None:
        load_plugin_library(builder.get_plugin_registry(), plugin_library)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT's ONNX parser rejected {onnx_path}:\n  " + "\n  ".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    if optimization_level is not None:
        config.builder_optimization_level = int(optimization_level)
    opt_profile = builder.create_optimization_profile()
    shapes = {k: profile.input_shapes(k) for k in ("min", "opt", "max")}
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name not in shapes["min"]:
            raise ExportError(f"{onnx_path} has an input {name!r} outside the ONNX contract")
        opt_profile.set_shape(
            name,
            trt.Dims(list(shapes["min"][name])),
            trt.Dims(list(shapes["opt"][name])),
            trt.Dims(list(shapes["max"][name])),
        )
    config.add_optimization_profile(opt_profile)
    attach_timing_cache(config, timing_cache)
    log.info("building the TensorRT engine (strongly typed) from %s ...", onnx_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path}; its log above says why")
    cache_bytes = serialized_timing_cache(config) if timing_cache is not None else None
    return bytes(serialized), cache_bytes
