"""The GPU check (scripts/gpu_check.sh) where there is no GPU: its dry run, and what it carries.

Here every GPU step skips with its reason, the build runs where nvcc exists (for sm_90, what the lent H100/H200
need) and skips with the reason where it does not, and the wheels that travel to the device are checked, offline,
to resolve for its Python 3.12 (scripts/prepare_gpu_check.py prepares them; where they are not prepared yet and
cannot be downloaded, that test skips with the reason). The verdict logic that only a GPU machine reaches (junit
counts, the sanitizer's outputs, --require-gpu) is checked on recorded outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_check import Check, bench_note, junit_counts, parity_note, sanitizer_verdict
from scripts.build_plugins import _cuda_compiler
from scripts.prepare_gpu_check import (
    GPU_CHECK_TIMEOUT_S,
    REQUIREMENTS_FILE,
    WHEELS_DIR,
    PrepareError,
    check_resolves,
    prepare,
    run_call,
)
from tests.common import REPO

STEPS = ["wheels", "env", "imports", "build", "gpu_tests", "sanitizer", "bench", "r50"]
GPU_STEPS = ["gpu_tests", "sanitizer", "bench", "r50"]


def test_carried_wheels_resolve_for_python_312() -> None:
    """The folder that travels resolves for Python 3.12 with no index, and the printed call carries it."""
    if not (WHEELS_DIR / REQUIREMENTS_FILE).is_file():
        try:
            prepare(WHEELS_DIR, log=lambda *_: None)
        except PrepareError as e:
            if e.network:
                why = " / ".join(ln for ln in str(e).splitlines() if ln.startswith("ERROR"))[-300:]
                pytest.skip(
                    f"{WHEELS_DIR.name} is not prepared and its wheels cannot be downloaded here: {why}"
                )
            raise
    result = check_resolves(WHEELS_DIR)
    assert result.ok, result.message
    assert {"pycocotools", "yacs"} <= set(result.wheels), "runtime's and trainer's needs the device lacks"
    call = run_call(WHEELS_DIR)
    assert call["carry"] == [WHEELS_DIR.name]
    assert call["timeout_s"] == GPU_CHECK_TIMEOUT_S <= 300 and len(call["command"]) <= 2000
    assert result.total_bytes < 32 << 20, "the wheels leave room for the working tree in the 64 MiB"


def test_dry_run_skips_every_gpu_step_with_its_reason(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: run `bash scripts/gpu_check.sh` for the real check")
    result = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--out", str(tmp_path), "--budget-s", "200"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=260,
        env={**os.environ, "PYTHON": sys.executable},
    )
    output = result.stdout + result.stderr
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    steps = {s["step"]: s for s in map(json.loads, lines)}
    assert list(steps) == STEPS, output
    assert result.returncode == 0, output
    for name in GPU_STEPS:
        assert steps[name]["verdict"] == "skip", steps[name]
        assert "no CUDA GPU" in steps[name]["note"], steps[name]
    assert steps["env"]["verdict"] == "pass" and steps["env"]["data"]["cuda_available"] is False
    assert steps["imports"]["verdict"] == "pass", steps["imports"]["note"]
    assert steps["wheels"]["verdict"] in ("pass", "skip"), steps["wheels"]  # skip: not prepared here
    if _cuda_compiler():
        assert steps["build"]["verdict"] == "pass", steps["build"]
        assert steps["build"]["data"]["arch"] == "90"
        assert Path(steps["build"]["data"]["library"]).is_file()
    else:
        assert steps["build"]["verdict"] == "skip" and "no nvcc" in steps["build"]["note"], steps["build"]
    # one table last: a row per step
    table = result.stdout.rstrip().splitlines()[-len(STEPS) - 2 :]
    assert table[0].split()[:2] == ["step", "verdict"], result.stdout
    assert [row.split()[0] for row in table[2:]] == STEPS
    assert (tmp_path / "summary.txt").read_text().splitlines()[2:] == table[2:]


def test_require_gpu_turns_the_skips_into_failures(tmp_path: Path) -> None:
    check = Check(tmp_path, budget_s=60, require_gpu=True)
    check.env = {"cuda_available": False, "no_gpu_reason": "no CUDA GPU (torch.cuda.is_available() is False)"}
    for step in (
        check.step_gpu_tests(True),
        check.step_sanitizer(True),
        check.step_bench(True),
        check.step_r50(3),
    ):
        assert step.verdict == "fail" and "--require-gpu" in step.note


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="5">
<testcase classname="t" name="test_a"><properties>
<property name="roi_align_max_abs_diff_torchvision_fp32" value="2e-07"/>
<property name="nms_mismatches_torchvision" value="1"/><property name="nms_compared_torchvision" value="400"/>
</properties></testcase>
<testcase classname="t" name="test_b"><properties>
<property name="roi_align_max_abs_diff_torchvision_fp32" value="3e-07"/>
<property name="nms_mismatches_torchvision" value="0"/><property name="nms_compared_torchvision" value="300"/>
</properties></testcase>
<testcase classname="t" name="test_c"><failure message="boom"/></testcase>
<testcase classname="t" name="test_d"><skipped type="pytest.xfail" message="issue 25"/></testcase>
<testcase classname="t" name="test_e"><skipped type="pytest.skip" message="no GPU"/></testcase>
</testsuite></testsuites>"""


def test_junit_counts_and_parity_note(tmp_path: Path) -> None:
    path = tmp_path / "j.xml"
    path.write_text(JUNIT)
    c = junit_counts(path)
    assert (c["passed"], c["failed"], c["xfailed"], c["skipped"]) == (2, 1, 1, 1)
    assert c["properties"]["roi_align_max_abs_diff_torchvision_fp32"]["max"] == pytest.approx(3e-7)
    note = parity_note(c)
    assert "fp32 3.0e-07" in note and "1 of 700 survivors differ" in note and "FAILED: test_c" in note


@pytest.mark.parametrize(
    ("rc", "output", "verdict"),
    [
        (0, "1 passed in 9s\n========= ERROR SUMMARY: 0 errors\n", "pass"),
        (
            86,
            "========= Invalid __global__ read of size 4 bytes\n========= ERROR SUMMARY: 3 errors\n",
            "fail",
        ),
        (
            1,
            "========= Device not supported\n========= Error: process didn't terminate successfully\n",
            "skip",
        ),
        (None, "", "timeout"),
        (1, "ImportError: no torch\n", "fail"),
    ],
)
def test_sanitizer_verdicts(rc, output: str, verdict: str) -> None:
    got, note = sanitizer_verdict(rc, output)
    assert got == verdict, note
    if verdict == "skip":
        assert "refuses this device: ========= Device not supported" in note


def test_build_skips_with_the_reason_without_nvcc(tmp_path: Path) -> None:
    """What CI without nvcc sees (here nvcc exists, so the dry run above builds)."""
    check = Check(tmp_path, budget_s=60, require_gpu=False)
    check.env = {"nvcc": None, "cuda_available": False}
    step = check.step_build("build/never-built")
    assert step.verdict == "skip" and "no nvcc" in step.note
    assert not (REPO / "build" / "never-built").exists()


def test_bench_note_pairs_the_precisions() -> None:
    data = {
        "roi_align": [
            {"rois": 1000, "size": 7, "dtype": "fp32", "speedup": 1.5},
            {"rois": 1000, "size": 7, "dtype": "fp16", "speedup": 2.25},
        ],
        "nms": [{"candidates": 20000, "dtype": "fp32", "speedup": 3.0}],
    }
    note = bench_note(data)
    assert "roi_align 1000 rois 7x7 x1.50/x2.25" in note and "nms 20000 cand. x3.00/xnan" in note
