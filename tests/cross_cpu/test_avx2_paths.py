"""The same answers on CPUs without AVX-512 or VNNI: INT8 models computed on AVX2 kernel paths.

With 8-bit weights the golden INT8 model's boxes moved by up to 236 px under AVX2 paths (u8 x s8 pair sums
saturate there); with the 7-bit weights the exporter now writes, its outputs are those of the golden made on
an AVX512-VNNI CPU within the FP32 tolerances (``tests/data/make_export_golden.py`` derives them).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.cpu_features import CpuFeatures, int8_weight_warning
from tests.common import REPO
from tests.cross_cpu.avx2 import model_path_literal, run_under_avx2, skip_reason
from tests.data import make_export_golden as golden

needs_qemu = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


@needs_qemu
@pytest.mark.slow
def test_int8_golden_is_the_same_under_avx2_paths(tmp_path: Path) -> None:
    path = golden.export_variants(tmp_path, names=("int8",))["int8"]
    seen = run_under_avx2(
        "import json\n"
        "from runtime.cpu_features import cpu_features\n"
        "from tests.data import make_export_golden as g\n"
        f"changed = g.differences('int8', __import__('pathlib').Path({model_path_literal(path)}), *g.load())\n"
        "print(json.dumps({'cpu': cpu_features().to_dict(), 'changed': changed}))\n"
    )
    assert isinstance(seen, dict)
    # the emulation really hides AVX-512 and VNNI from the libraries' dispatchers
    assert "AVX2" in seen["cpu"]["features"] and "AVX-512" not in seen["cpu"]["features"]
    assert not seen["cpu"]["vnni"]
    assert seen["changed"] == [], "\n".join(seen["changed"])


def test_int8_weight_warning_names_the_cpu_and_the_fix() -> None:
    avx2 = CpuFeatures("AMD EPYC 7B12", True, ("AVX2",), vnni=False)
    vnni = CpuFeatures("AMD EPYC 9B14", True, ("AVX2", "AVX-512", "AVX512-VNNI"), vnni=True)
    arm = CpuFeatures("Neoverse-N1", False, (), vnni=False)
    message = int8_weight_warning("int8", None, avx2)  # an export from before 7-bit weights
    assert message is not None and "AMD EPYC 7B12 (AVX2)" in message and "re-export" in message
    assert int8_weight_warning("int8", "8", avx2) is not None
    assert int8_weight_warning("int8", "7", avx2) is None
    assert int8_weight_warning("int8", "8", vnni) is None
    assert int8_weight_warning("int8", "8", arm) is None
    assert int8_weight_warning("fp32", None, avx2) is None


#: the heavier checks (minutes under emulation): scripts/check_avx2.sh runs them
full = pytest.mark.skipif(
    skip_reason() is not None or os.environ.get("MRD_AVX2_FULL") != "1",
    reason=skip_reason() or "minutes under emulation: run scripts/check_avx2.sh (MRD_AVX2_FULL=1)",
)


@full
def test_openvino_int8_ir_agrees_with_onnxruntime_under_avx2_paths(tmp_path: Path) -> None:
    """tests/openvino's INT8 check (agreement AP >= 0.8 between the IR and its Q/DQ ONNX), under AVX2 paths,
    and each backend's detections the same as natively."""
    pytest.importorskip("openvino")
    from exporter.cli import main
    from tests.exporter_helpers import save_shapes_checkpoint
    from tests.precision_models import write_images

    write_images(tmp_path / "calib", 8)
    weights = save_shapes_checkpoint(tmp_path / "shapes.pth")
    xml = tmp_path / "model_int8.xml"
    args = ["--to", "openvino", "--int8", "--weights", weights, "--output", xml, "--quiet"]
    assert main([str(a) for a in [*args, "--calib-images", tmp_path / "calib", "--calib-count", "8"]]) == 0
    native = json.loads(
        subprocess.run(
            [sys.executable, "-c", _run_both(xml, "native.pkl")], capture_output=True, text=True, check=True,
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        ).stdout.strip().splitlines()[-1]
    )  # fmt: skip
    emulated = run_under_avx2(_run_both(xml, "avx2.pkl"), 900)
    assert isinstance(emulated, dict)
    assert emulated["agreement"] >= 0.8
    from runtime.compare import Tolerances, compare_detections

    same = Tolerances(box=1e-3, score=1e-4, mask=1e-3)
    for there, here in zip(
        pickle.loads(Path(emulated["raw"]).read_bytes()), pickle.loads(Path(native["raw"]).read_bytes())
    ):
        assert compare_detections(here, there).check(same) == []


def _run_both(xml: Path, out_name: str) -> str:
    """Code that runs the Q/DQ ONNX (ONNX Runtime) and the IR (OpenVINO) on two images and saves both."""
    return (
        "import json, pickle\n"
        "from pathlib import Path\n"
        "from runtime.compare import compare_detections\n"
        "from runtime.predictor import Predictor\n"
        "from tests.runtime_fixtures import make_image\n"
        f"xml = Path({model_path_literal(xml)})\n"
        "a = Predictor(xml.with_suffix('.onnx'), threads=1, confidence_threshold=0.0)\n"
        "b = Predictor(xml, threads=1, confidence_threshold=0.0)\n"
        "batch = a.preprocess([make_image(1, 150, 230), make_image(2, 200, 120)])\n"
        "ra, rb = a.infer_raw(batch), b.infer_raw(batch)\n"
        f"out = xml.with_name({out_name!r})\n"
        "out.write_bytes(pickle.dumps((ra, rb)))\n"
        "print(json.dumps({'agreement': compare_detections(ra, rb).agreement_ap, 'raw': str(out)}))\n"
    )


@full
def test_foreign_checkpoint_matches_its_source_under_avx2_paths() -> None:
    """The maskrcnn-benchmark checkpoint whose tied RPN objectness swapped one 0.059 detection on AVX2."""
    seen = run_under_avx2(
        "import json, torch\n"
        "torch.set_num_threads(1)\n"
        "from runtime.predictor import Predictor\n"
        "from tests.foreign_reference import compare, config_of, label_offset, load_reference, model_dir, "
        "near_tie_failures, read_images\n"
        "name = 'mrb_mask_rcnn_R_50_FPN_1x'\n"
        "p = Predictor(str(model_dir(name) / 'model_final.pth'), confidence_threshold=0.0, "
        "config_file=str(config_of(name)))\n"
        "ref = load_reference(name)\n"
        "ms = [compare(ref['images'][k], p.predict(v), label_offset(ref), k) for k, v in read_images().items()]\n"
        "print(json.dumps({'failures': [f for m in ms for f in m.failures()] + near_tie_failures(ms), "
        "'unmatched': [m.unmatched_reference + m.unmatched_ours for m in ms]}))\n",
        1200,
    )
    assert isinstance(seen, dict)
    assert seen["failures"] == [], seen
