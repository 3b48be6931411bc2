"""What the CPU can do, as the inference libraries' kernels see it: which INT8 path runs, and its name.

An INT8 model's detections depend on the CPU when its arithmetic is not exact there. On x86, ONNX Runtime's
MLAS and OpenVINO's oneDNN multiply UINT8 activations by INT8 weights with VNNI's ``vpdpbusd`` (exact
int32 sums) where the CPU has it, and otherwise (AVX2; AVX-512 without VNNI) with ``vpmaddubsw``, which
adds two u8 x s8 products into an int16 and saturates: 255 * 127 * 2 = 64770 does not fit in 32767, but
with weights in [-64, 64] (7-bit, ONNX Runtime's ``reduce_range``) 255 * 64 * 2 = 32640 does. So a model
with 7-bit weights computes the same integers on every x86 CPU, and one with 8-bit weights only on those
with VNNI (measured: ``tests/cross_cpu``, and the note of issue 23).

The features come from CPUID as numpy reads it (``numpy``'s dispatcher), not from ``/proc/cpuinfo``: an
emulator (``qemu-x86_64 -cpu Haswell``) or a container may show the host's flags there, while the
libraries dispatch on CPUID.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

#: the features named in reports, CPUID names as numpy spells them -> how people write them
_REPORTED = (
    ("AVX2", "AVX2"),
    ("AVX512F", "AVX-512"),
    ("AVX512VNNI", "AVX512-VNNI"),
    ("AVX512BF16", "AVX512-BF16"),
)


@dataclass(frozen=True)
class CpuFeatures:
    name: str
    x86: bool
    features: tuple[str, ...]  # the reported ones present, e.g. ("AVX2", "AVX-512", "AVX512-VNNI")
    vnni: bool  # an exact u8 x s8 dot product (AVX512-VNNI or AVX-VNNI)

    @property
    def int8_saturates(self) -> bool:
        """Whether u8 x s8 products with 8-bit weights saturate here (x86 without VNNI)."""
        return self.x86 and not self.vnni

    def describe(self) -> str:
        """``AMD EPYC (AVX2, AVX-512, AVX512-VNNI)``: the CPU a number was measured on."""
        return f"{self.name} ({', '.join(self.features) or 'no SIMD features reported'})"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "features": list(self.features), "vnni": self.vnni}


@lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    machine = platform.machine().lower()
    x86 = machine in ("x86_64", "amd64", "i386", "i686")
    cpuid = _numpy_cpu_features()
    proc_flags = _proc_flags()
    features = [label for key, label in _REPORTED if cpuid.get(key)]
    # AVX-VNNI (the VEX form, on AVX2-only cores of Alder Lake and later) has no numpy key: take /proc's word
    # for it only where /proc agrees with CPUID on AVX-512 (under an emulator it shows the host's flags)
    proc_trusted = bool(proc_flags) and (("avx512f" in proc_flags) == bool(cpuid.get("AVX512F")))
    avx_vnni = proc_trusted and "avx_vnni" in proc_flags
    if avx_vnni:
        features.append("AVX-VNNI")
    vnni = bool(cpuid.get("AVX512VNNI")) or avx_vnni
    return CpuFeatures(cpu_name(), x86, tuple(features), vnni)


def cpu_name() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def int8_weight_warning(
    precision: str, weight_bits: str | None, features: CpuFeatures | None = None
) -> str | None:
    """Why an INT8 model's results are not to be trusted on this CPU, or None when they are.

    ``weight_bits`` is the model's ``int8_weight_bits`` metadata ("7" or "8"; absent before issue 23, when
    every export used 8-bit weights).
    """
    cpu = features or cpu_features()
    if precision != "int8" or not cpu.int8_saturates or weight_bits == "7":
        return None
    return (
        f"this INT8 model has 8-bit weights, whose u8 x s8 products saturate on this CPU ({cpu.describe()}: no "
        "VNNI), so its detections differ from those on CPUs with VNNI; re-export it with this version's "
        "--int8 (7-bit weights, exact on every x86 CPU)"
    )


def _numpy_cpu_features() -> dict[str, bool]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        try:
            from numpy.core._multiarray_umath import __cpu_features__  # type: ignore[no-redef]
        except ImportError:
            return {}
    return dict(__cpu_features__)


def _proc_flags() -> set[str]:
    return set((_cpuinfo_field("flags") or "").split())


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, ...]:
    """The lines of /proc/cpuinfo, read once (empty where there is none)."""
    try:
        return tuple(Path("/proc/cpuinfo").read_text().splitlines())
    except OSError:
        return ()


def _cpuinfo_field(name: str) -> str | None:
    """The first CPU's value of ``name`` in /proc/cpuinfo."""
    for line in _cpuinfo():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return None
