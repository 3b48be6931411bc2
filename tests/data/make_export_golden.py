"""Writes ``export_golden.npz``: what the exporter produced for a seeded shapes model before a refactor.

``tests/exporter/test_golden.py`` re-exports the same model with the code of the day and compares:
the multiset of ops, the initializers (dtype, shape, bytes hash; names left out, so a pass may rename),
the inputs/outputs and their shapes, the metadata, and the outputs on two fixed input batches. Run it
again (``python tests/data/make_export_golden.py [VARIANT ...]``) only when an export is meant to change,
and say why in the commit. Regenerated: ``int8`` in issue 23 (7-bit weights under UINT8 activations, so
that its outputs are the same on CPUs without VNNI, and the stem convolution kept FP32). Made from our own code on weights seeded here (torch.manual_seed(0) random init).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

#: the variants the golden covers: (name, flavor, precision)
VARIANTS = (("ort", "ort", "fp32"), ("trt", "trt", "fp32"), ("fp16", "ort", "fp16"), ("int8", "ort", "int8"))
#: metadata keys that name the producer's versions (not the export's content)
VOLATILE_KEYS = ("producer",)


def golden_inputs() -> list[dict[str, np.ndarray]]:
    """Two contract input batches: one image, and two of different sizes padded into one batch."""
    rng = np.random.default_rng(7)
    one = rng.standard_normal((1, 3, 192, 256)).astype(np.float32)
    two = rng.standard_normal((2, 3, 224, 320)).astype(np.float32)
    two[1, :, 192:, :] = 0
    return [
        {"images": one, "image_sizes": np.array([[192, 256]], np.int64)},
        {"images": two, "image_sizes": np.array([[224, 320], [192, 288]], np.int64)},
    ]


def describe(path: Path) -> dict:
    """Name-free facts of an ONNX file: op counts, initializer digests, I/O, metadata."""
    model = onnx.load(str(path))
    inits = sorted(
        f"{t.data_type}|{list(t.dims)}|{hashlib.sha256(numpy_helper.to_array(t).tobytes()).hexdigest()[:16]}"
        for t in model.graph.initializer
    )

    def io(values):
        return [[v.name, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]] for v in values]

    return {
        "ops": dict(sorted(Counter(f"{n.domain}:{n.op_type}" for n in model.graph.node).items())),
        "initializers": inits,
        "inputs": io(model.graph.input),
        "outputs": io(model.graph.output),
        # the temporary folder the export ran in (calibration images) is not part of the export
        "metadata": {
            p.key: p.value.replace(str(path.parent), "<export dir>")
            for p in model.metadata_props
            if p.key not in VOLATILE_KEYS
        },
        "opset": sorted([o.domain, o.version] for o in model.opset_import),
    }


def run(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw contract outputs of one batch (the trt flavor through the plugins' CPU reference)."""
    from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(path, threads=1)
    names = [o.name for o in backend.session.get_outputs()]
    return dict(zip(names, backend.session.run(names, feeds)))


#: FP32 outputs: float32 rounding only. The same graph on another x86 kernel path (AVX2 against AVX-512)
#: sums in another order: a relative error of a few K * 2^-24 per output (K up to ~10^4 terms) stays
#: well under 1e-4, and a box of a few hundred px under 1e-4 + 1e-4 * 300 = 0.03 px.
#: INT8 outputs: the same bound, because the integer arithmetic is exact on every x86 CPU since the
#: weights are 7-bit (``exporter.quantize_int8.weight_bits``: no u8 x s8 pair sum saturates without VNNI),
#: so only the FP32 ops between the Q/DQ pairs round differently. Measured: the INT8 golden's outputs are
#: the same to the bit under ``qemu-x86_64 -cpu Haswell`` and on AVX512-VNNI (``tests/cross_cpu``); with
#: 8-bit weights its boxes were 236 px apart there.
RTOL = ATOL = 1e-4


def differences(name: str, path: Path, facts: dict, arrays: dict[str, np.ndarray]) -> list[str]:
    """What changed in the export ``path`` of variant ``name`` against the golden's facts and outputs."""
    import yaml

    now, before = describe(path), facts[name]
    changed = [f"{name}: {key} changed" for key in ("ops", "initializers", "inputs", "outputs", "opset")
               if now[key] != before[key]]  # fmt: skip
    # the config the metadata records may gain keys (with their defaults) as the config grows; the rest is equal
    meta_now, meta_before = dict(now["metadata"]), dict(before["metadata"])
    config_now, config_before = (
        yaml.safe_load(meta_now.pop("config")),
        yaml.safe_load(meta_before.pop("config")),
    )
    if meta_now != meta_before:
        changed.append(
            f"{name}: metadata changed: {sorted(set(meta_now.items()) ^ set(meta_before.items()))}"
        )
    if _common_keys(config_now, config_before) != config_before:
        changed.append(f"{name}: recorded config changed")
    for b, feeds in enumerate(golden_inputs()):
        outputs = run(path, feeds)
        stored = sorted(k.split("/")[2] for k in arrays if k.startswith(f"{name}/{b}/"))
        if sorted(outputs) != stored:
            changed.append(f"{name}/{b}: outputs {sorted(outputs)} != {stored}")
            continue
        for key, value in outputs.items():
            expected = arrays[f"{name}/{b}/{key}"]
            if value.dtype != expected.dtype or value.shape != expected.shape:
                changed.append(
                    f"{name}/{b}/{key}: {value.dtype}{value.shape} != {expected.dtype}{expected.shape}"
                )
                continue
            far = ~np.isclose(value, expected, rtol=RTOL, atol=ATOL)
            if far.any():
                worst = float(np.abs(value.astype(np.float64) - expected)[far].max())
                changed.append(
                    f"{name}/{b}/{key}: {int(far.sum())} of {far.size} elements differ (max {worst:.4g})"
                )
    return changed


def _common_keys(now: dict, before: dict) -> dict:
    """``now`` restricted to the keys ``before`` has, recursively (keys added since the golden are dropped)."""
    return {
        k: _common_keys(now[k], v) if isinstance(v, dict) and isinstance(now.get(k), dict) else now.get(k)
        for k, v in before.items()
    }


def load() -> tuple[dict, dict[str, np.ndarray]]:
    data = np.load(HERE / "export_golden.npz")
    return json.loads(str(data["facts"])), {k: data[k] for k in data.files if k != "facts"}


def export_variants(out_dir: Path, names: tuple[str, ...] | None = None) -> dict[str, Path]:
    """The exports of the seeded shapes checkpoint (INT8 calibrated on 8 generated images): the four
    variants, or only those named in ``names``."""
    import cv2

    from calibration.image_source import calibration_images
    from exporter.pipeline import ExportOptions, Int8Options, export_precision
    from tests.exporter_helpers import save_shapes_checkpoint

    ckpt = save_shapes_checkpoint(out_dir / "shapes.pth")
    calib_dir = out_dir / "calib"
    calib_dir.mkdir()
    rng = np.random.default_rng(11)
    for i in range(8):
        cv2.imwrite(str(calib_dir / f"{i}.png"), rng.integers(0, 256, (180 + 8 * i, 240, 3), dtype=np.uint8))
    options = ExportOptions(weights=ckpt, simplify=True, progress=False)
    paths = {}
    for name, flavor, precision in VARIANTS:
        if names is not None and name not in names:
            continue
        calib = None
        if precision == "int8":
            calib = Int8Options(calibration_images(images_dir=calib_dir, count=8), "minmax",
                                out_dir / "calib.json")  # fmt: skip
        out = out_dir / f"model_{name}.onnx"
        export_precision(options, out, precision=precision, flavor=flavor, calib=calib)
        paths[name] = out
    return paths


def main(names: list[str]) -> None:
    """Rewrite the golden of the variants ``names`` (all when empty), keeping the others as they were."""
    facts, arrays = load() if names else ({}, {})
    with tempfile.TemporaryDirectory() as tmp:
        for name, p in export_variants(Path(tmp), tuple(names) or None).items():
            facts[name] = describe(p)
            arrays = {k: v for k, v in arrays.items() if not k.startswith(f"{name}/")}
            for b, feeds in enumerate(golden_inputs()):
                for key, value in run(p, feeds).items():
                    arrays[f"{name}/{b}/{key}"] = value
    np.savez_compressed(HERE / "export_golden.npz", facts=np.array(json.dumps(facts)), **arrays)
    print(f"wrote {HERE / 'export_golden.npz'}: {', '.join(facts)}")


if __name__ == "__main__":
    main(sys.argv[1:])
