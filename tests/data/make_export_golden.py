"""Writes ``export_golden.npz``: what the exporter produced for a seeded shapes model before a refactor.

``tests/exporter/test_golden.py`` re-exports the same model with the code of the day and compares:
the multiset of ops, the initializers (dtype, shape, bytes hash; names left out, so a pass may rename),
the inputs/outputs and their shapes, the metadata, and the outputs on two fixed input batches. Run it
again (``python tests/data/make_export_golden.py``) only when an export is meant to change, and say why in
the commit. Made from our own code on weights seeded here (torch.manual_seed(0) random init).
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


def export_variants(out_dir: Path) -> dict[str, Path]:
    """The four exports of the seeded shapes checkpoint (INT8 calibrated on 8 generated images)."""
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
        calib = None
        if precision == "int8":
            calib = Int8Options(calibration_images(images_dir=calib_dir, count=8), "minmax",
                                out_dir / "calib.json")  # fmt: skip
        out = out_dir / f"model_{name}.onnx"
        export_precision(options, out, precision=precision, flavor=flavor, calib=calib)
        paths[name] = out
    return paths


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = export_variants(Path(tmp))
        facts = {name: describe(p) for name, p in paths.items()}
        arrays = {}
        for name, p in paths.items():
            for b, feeds in enumerate(golden_inputs()):
                for key, value in run(p, feeds).items():
                    arrays[f"{name}/{b}/{key}"] = value
    np.savez_compressed(HERE / "export_golden.npz", facts=np.array(json.dumps(facts)), **arrays)
    print(f"wrote {HERE / 'export_golden.npz'}: {', '.join(facts)}")


if __name__ == "__main__":
    main()
