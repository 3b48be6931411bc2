"""The CUDA side proven on a GPU in one call: build, test, memcheck and time the plugin kernels, then time R-50.

    bash scripts/gpu_check.sh [--require-gpu] [--out DIR] [--budget-s 280]      (or python benchmarks/gpu_check.py)

Steps, in order; each appends its result to ``OUT/results.jsonl`` the moment it ends (so a call cut off at its
limit keeps what finished), and the last thing printed is one table of them all:

  wheels       the wheels scripts/prepare_gpu_check.py put in .gpu-check-wheels/: checked to resolve for Python
               3.12 (offline), installed (``pip install --no-index --no-deps --target``) where this Python is 3.12
  env          GPU, driver, torch, CUDA, nvcc, compute-sanitizer
  imports      every module the device should import (tests/plugins, runtime's and trainer's entry modules)
  build        the plugin libraries for the GPU found (sm_90 on Hopper; sm_90 where there is no GPU) with
               scripts/build_plugins.py into build/gpu-check (needs nvcc, else skipped with the reason)
  gpu_tests    tests/plugins/test_gpu.py (MRD_REQUIRE_GPU=1: a skip there is a failure) against torchvision's CUDA
               ops and the CPU reference; junit in OUT/gpu_tests.xml
  sanitizer    test_gpu.py::test_memcheck_smoke under ``compute-sanitizer --tool memcheck``, with torch's caching
               allocator off so every tensor is its own allocation (skipped where the sanitizer is missing or
               refuses the device)
  bench        benchmarks/bench_plugins.py: the kernels against torchvision's CUDA ops at Mask R-CNN sizes
  r50          torchvision's R-50-FPN Mask R-CNN (random weights) end to end at 800 px, FP32 and FP16 autocast

Without a GPU every GPU step is skipped with the reason (``--require-gpu`` makes that a failure: the device call
passes it). Output: results.jsonl, summary.txt, gpu_check.log (every command's output), gpu_tests.xml,
bench_plugins.json under ``--out`` (default ``$OUT``, else output/gpu-check). Exit status 1 when a step failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.prepare_gpu_check import (  # noqa: E402
    DEVICE_PYTHON,
    WHEELS_DIR,
    check_resolves,
    probe,
    probe_modules,
    wheels_in,
)

DEFAULT_BUILD_DIR = "build/gpu-check"
DEFAULT_SITE = "/tmp/mrd-gpu-check-site"
#: the device's GPUs (H100, H200) are Hopper: what to build for where no GPU says otherwise
DEFAULT_ARCH = "90"
SANITIZER_TEST = "tests/plugins/test_gpu.py::test_memcheck_smoke"
#: longest each step may run, in seconds (each also stops at the budget's end)
STEP_CAP_S = {
    "wheels": 90,
    "env": 60,
    "imports": 90,
    "build": 180,
    "gpu_tests": 150,
    "sanitizer": 120,
    "bench": 90,
    "r50": 120,
}


@dataclass
class Step:
    """One step's result: verdict pass | fail | skip | timeout, a one-line note (the key numbers or why)."""

    step: str
    verdict: str
    seconds: float
    note: str
    data: dict = field(default_factory=dict)


def _tail(text: str, n: int = 1500) -> str:
    return text[-n:]


def _head(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


class Check:
    def __init__(self, out: Path, budget_s: float, require_gpu: bool) -> None:
        self.out = out
        self.deadline = time.monotonic() + budget_s
        self.require_gpu = require_gpu
        self.steps: list[Step] = []
        self.env: dict = {}
        self.child_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.child_env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
        )
        self.log_path = out / "gpu_check.log"
        self.results_path = out / "results.jsonl"
        self.results_path.write_text("")
        self.log_path.write_text("")

    # -- bookkeeping

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def record(self, step: Step) -> Step:
        self.steps.append(step)
        with open(self.results_path, "a") as f:
            f.write(json.dumps(asdict(step)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        print(f"[gpu_check] {step.step:<10} {step.verdict:<7} {step.seconds:6.1f} s  {step.note}", flush=True)
        return step

    def log(self, text: str) -> None:
        with open(self.log_path, "a") as f:
            f.write(text)

    def run(self, name: str, cmd: Sequence[str], env: dict | None = None) -> tuple[int | None, str]:
        """Run a command with its output appended to the log; (exit status or None at the time limit, output)."""
        limit = max(1.0, min(STEP_CAP_S[name], self.remaining() - 3))
        self.log(f"\n===== {name}: {' '.join(map(str, cmd))}  (limit {limit:.0f} s)\n")
        start = self.log_path.stat().st_size
        with open(self.log_path, "a") as log:
            proc = subprocess.Popen(
                [str(c) for c in cmd],
                cwd=REPO,
                env=env or self.child_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                rc: int | None = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                rc = None
        with open(self.log_path, errors="replace") as f:
            f.seek(start)
            output = f.read()
        if rc is None:
            self.log(f"\n===== {name}: stopped at its {limit:.0f} s limit\n")
        return rc, output

    @property
    def gpu(self) -> bool:
        return bool(self.env.get("cuda_available")) and self.env.get("device_count", 0) > 0

    def no_gpu(self, name: str, started: float) -> Step:
        reason = self.env.get("no_gpu_reason") or "no CUDA GPU"
        if self.require_gpu:
            return Step(name, "fail", time.monotonic() - started, f"{reason}, and --require-gpu was given")
        return Step(name, "skip", time.monotonic() - started, reason)

    def out_of_time(self, name: str, need: float) -> Step | None:
        if self.remaining() < need:
            left = f"not started: out of the time budget ({self.remaining():.0f} s left, needs ~{need:.0f})"
            return Step(name, "timeout", 0.0, left)
        return None

    # -- steps

    def step_wheels(self, folder: Path, site: Path) -> Step:
        t = time.monotonic()
        if not (folder / "requirements.txt").is_file():
            return Step(
                "wheels",
                "skip",
                time.monotonic() - t,
                f"no wheels carried ({folder} is not prepared: run python scripts/prepare_gpu_check.py)",
            )
        result = check_resolves(folder)
        data = {"resolve": result.message, "wheels": result.wheels, "bytes": result.total_bytes}
        here = f"{sys.version_info.major}.{sys.version_info.minor}"
        if here != DEVICE_PYTHON:
            verdict = "pass" if result.ok else "fail"
            note = (
                f"{_head(result.message, 300)}; not installed: this Python is {here}, the wheels are for 3.12"
            )
            return Step("wheels", verdict, time.monotonic() - t, note, data)
        # the device's Python: installing them is the proof; the resolve check is reported beside it
        wheels = [str(w.path) for w in wheels_in(folder)]
        if wheels:
            cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index"]
            cmd += [
                "--no-deps",
                "--no-compile",
                "--no-cache-dir",
                "--upgrade",
                "--target",
                str(site),
                *wheels,
            ]
            rc, output = self.run("wheels", cmd)
            if rc != 0:
                verdict = "timeout" if rc is None else "fail"
                return Step(
                    "wheels", verdict, time.monotonic() - t, f"pip install: {_tail(output, 300)}", data
                )
            paths = [str(site), *self.child_env["PYTHONPATH"].split(os.pathsep)]
            self.child_env["PYTHONPATH"] = os.pathsep.join(paths)
        installed = ", ".join(w.path.name.split("-")[0] + " " + w.version for w in wheels_in(folder))
        note = f"installed into {site}: {installed or 'none needed'}"
        if not result.ok:
            note += f"; the resolve check failed: {_head(result.message, 200)}"
        return Step("wheels", "pass", time.monotonic() - t, note, data)

    def step_env(self) -> Step:
        t = time.monotonic()
        from scripts.build_plugins import _cuda_compiler

        nvcc = _cuda_compiler()
        info: dict = {"nvcc": nvcc, "python": sys.version.split()[0], "cpus": os.cpu_count()}
        if nvcc:
            out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=30).stdout
            m = re.search(r"release ([\d.]+)", out)
            info["nvcc_version"] = m.group(1) if m else out.strip()[-80:]
        info["compute_sanitizer"] = find_tool("compute-sanitizer", nvcc)
        info["cuobjdump"] = find_tool("cuobjdump", nvcc)
        smi = shutil.which("nvidia-smi")
        if smi:
            q = "name,driver_version,memory.total,compute_cap"
            r = subprocess.run(
                [smi, f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
            )
            info["nvidia_smi"] = (r.stdout or r.stderr).strip()
            fields = info["nvidia_smi"].splitlines()[0].split(", ") if r.returncode == 0 and r.stdout else []
            if len(fields) == 4:
                info["driver"] = fields[1]
        rc, output = self.run("env", [sys.executable, "-c", ENV_SNIPPET])
        lines = [ln for ln in output.splitlines() if ln.startswith("RESULT ")]
        if lines:
            info.update(json.loads(lines[-1][len("RESULT ") :]))
        else:
            info["cuda_available"] = False
            info["no_gpu_reason"] = f"torch could not be asked (exit {rc}): {_tail(output, 200)}"
        self.env = info
        if info.get("cuda_available") and info.get("device_count", 0) > 0:
            note = (
                f"{info['device_name']} sm_{info['capability']}, {info['sm_count']} SMs, "
                f"{info['memory_gib']:.0f} GiB; driver {info.get('driver', '?')}; torch {info['torch']} "
                f"(CUDA {info['torch_cuda']}), torchvision {info['torchvision']}; nvcc {info.get('nvcc_version')}"
            )
        else:
            info.setdefault("no_gpu_reason", "no CUDA GPU")
            note = (
                f"no GPU: {info['no_gpu_reason']}; torch {info.get('torch', '?')}, "
                f"nvcc {info.get('nvcc_version', 'absent')}"
            )
        return Step("env", "pass", time.monotonic() - t, note, info)

    def step_imports(self, folder: Path) -> Step:
        t = time.monotonic()
        # this tree's list (the wheels' modules.txt records what they were prepared for: it goes stale when a
        # module moves, so it only documents)
        modules = probe_modules()
        try:
            found = probe(
                modules, env=self.child_env, timeout=max(5.0, min(STEP_CAP_S["imports"], self.remaining()))
            )
        except subprocess.TimeoutExpired:
            return Step("imports", "timeout", time.monotonic() - t, "importing took too long")
        except RuntimeError as e:
            return Step("imports", "fail", time.monotonic() - t, _tail(str(e), 300))
        ok = len(modules) - len(found["failed"]) - len(found["skipped"])
        note = f"{ok} of {len(modules)} modules import"
        if found["skipped"]:
            note += f"; skipped: {', '.join(found['skipped'])}"
        if found["failed"]:
            note += "; FAILED: " + "; ".join(f"{m} ({e[:80]})" for m, e in found["failed"].items())
        verdict = "fail" if found["failed"] else "pass"
        return Step("imports", verdict, time.monotonic() - t, _head(note, 600), found)

    def step_build(self, build_dir: str) -> Step:
        t = time.monotonic()
        nvcc = self.env.get("nvcc")
        if not nvcc:
            return Step(
                "build",
                "skip",
                0.0,
                "no nvcc (looked on PATH, /usr/local/cuda/bin, /usr/local/bin): no kernels",
            )
        if self.gpu:
            arch = str(self.env["capability"])
            why = f"the GPU's sm_{arch}"
        else:
            arch, why = DEFAULT_ARCH, f"sm_{DEFAULT_ARCH} (no GPU here; the lent H100/H200 are sm_90)"
        code = (
            "import sys; from scripts.build_plugins import build_plugins; "
            f"build_plugins({build_dir!r}, cuda_architectures={arch!r}, jobs={os.cpu_count() or 2}, quiet=False)"
        )
        rc, output = self.run("build", [sys.executable, "-c", code])
        lib = REPO / build_dir / "plugins_cuda" / "libmrd_kernels.so"
        data = {"arch": arch, "build_dir": build_dir, "library": str(lib)}
        if rc is None:
            return Step("build", "timeout", time.monotonic() - t, f"build for {why} ran out of time", data)
        if rc != 0 or not lib.is_file():
            return Step("build", "fail", time.monotonic() - t, f"build for {why}: {_tail(output, 400)}", data)
        self.child_env["MRD_PLUGIN_DIR"] = str(lib.parent)
        note = f"{why}: {lib.relative_to(REPO)} ({lib.stat().st_size / 1e6:.1f} MB)"
        if self.env.get("cuobjdump"):
            r = subprocess.run(
                [self.env["cuobjdump"], "--list-elf", str(lib)], capture_output=True, text=True, timeout=60
            )
            archs = sorted(set(re.findall(r"sm_(\d+a?)", r.stdout)))
            data["elf_archs"] = archs
            note += f"; machine code for sm_{', sm_'.join(archs) or '?'}"
        return Step("build", "pass", time.monotonic() - t, note, data)

    def step_gpu_tests(self, build_ok: bool) -> Step:
        t = time.monotonic()
        if not self.gpu:
            return self.no_gpu("gpu_tests", t)
        if not build_ok:
            return Step("gpu_tests", "fail", 0.0, "the kernel library was not built (see the build step)")
        xml = self.out / "gpu_tests.xml"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rfEsxX",
            "tests/plugins/test_gpu.py",
        ]
        cmd += [f"--junitxml={xml}", "-o", "junit_family=xunit1"]
        rc, output = self.run("gpu_tests", cmd, env={**self.child_env, "MRD_REQUIRE_GPU": "1"})
        if rc is None:
            return Step("gpu_tests", "timeout", time.monotonic() - t, "pytest ran out of time", {})
        counts = junit_counts(xml) if xml.is_file() else {}
        if not counts:
            return Step("gpu_tests", "fail", time.monotonic() - t, f"no junit report: {_tail(output, 300)}")
        ok = counts["failed"] == counts["errors"] == counts["skipped"] == 0 and counts["passed"] > 0
        return Step("gpu_tests", "pass" if ok else "fail", time.monotonic() - t, parity_note(counts), counts)

    def step_sanitizer(self, build_ok: bool) -> Step:
        t = time.monotonic()
        if not self.gpu:
            return self.no_gpu("sanitizer", t)
        tool = self.env.get("compute_sanitizer")
        if not tool:
            return Step("sanitizer", "skip", 0.0, "compute-sanitizer is not installed here")
        if not build_ok:
            return Step("sanitizer", "fail", 0.0, "the kernel library was not built (see the build step)")
        cmd = [tool, "--tool", "memcheck", "--error-exitcode", "86", "--print-limit", "20"]
        cmd += [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", SANITIZER_TEST]
        env = {**self.child_env, "MRD_REQUIRE_GPU": "1", "PYTORCH_NO_CUDA_MEMORY_CACHING": "1"}
        env["CUDA_MODULE_LOADING"] = "LAZY"  # the sanitizer instruments only the kernels that are loaded
        rc, output = self.run("sanitizer", cmd, env=env)
        verdict, note = sanitizer_verdict(rc, output)
        return Step("sanitizer", verdict, time.monotonic() - t, note, {"rc": rc, "test": SANITIZER_TEST})

    def step_bench(self, build_ok: bool) -> Step:
        t = time.monotonic()
        if not self.gpu:
            return self.no_gpu("bench", t)
        if not build_ok:
            return Step("bench", "fail", 0.0, "the kernel library was not built (see the build step)")
        path = self.out / "bench_plugins.json"
        rc, output = self.run("bench", [sys.executable, "benchmarks/bench_plugins.py", "--json", str(path)])
        if rc is None:
            return Step("bench", "timeout", time.monotonic() - t, "bench_plugins ran out of time")
        if rc != 0 or not path.is_file():
            return Step(
                "bench", "fail", time.monotonic() - t, f"bench_plugins exit {rc}: {_tail(output, 300)}"
            )
        data = json.loads(path.read_text())
        return Step("bench", "pass", time.monotonic() - t, bench_note(data), data)

    def step_r50(self, iters: int) -> Step:
        t = time.monotonic()
        if not self.gpu:
            return self.no_gpu("r50", t)
        rc, output = self.run("r50", [sys.executable, __file__, "--r50-worker", "--iters", str(iters)])
        lines = [ln for ln in output.splitlines() if ln.startswith("RESULT ")]
        if rc is None:
            return Step("r50", "timeout", time.monotonic() - t, "R-50 timing ran out of time")
        if rc != 0 or not lines:
            return Step("r50", "fail", time.monotonic() - t, f"exit {rc}: {_tail(output, 300)}")
        data = json.loads(lines[-1][len("RESULT ") :])
        f32, f16 = data["fp32"], data["fp16"]
        note = (
            f"FP32 {f32['median_ms']:.1f} ms (p90 {f32['p90_ms']:.1f}), FP16 autocast {f16['median_ms']:.1f} ms "
            f"(p90 {f16['p90_ms']:.1f}): x{f32['median_ms'] / f16['median_ms']:.2f}; {data['image']} px, "
            f"{f32['detections']} detections, TF32 convs {data['tf32_conv']}, {data['iters']} runs"
        )
        return Step("r50", "pass", time.monotonic() - t, note, data)


ENV_SNIPPET = r"""
import json
info = {}
try:
    import torch, torchvision
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, torchvision=torchvision.__version__)
    info["cuda_available"] = torch.cuda.is_available()
    info["device_count"] = torch.cuda.device_count() if info["cuda_available"] else 0
    if info["device_count"]:
        p = torch.cuda.get_device_properties(0)
        info.update(device_name=p.name, capability=f"{p.major}{p.minor}", sm_count=p.multi_processor_count,
                    memory_gib=p.total_memory / 2**30, cudnn=torch.backends.cudnn.version())
    else:
        info["no_gpu_reason"] = "no CUDA GPU (torch.cuda.is_available() is False)"
except Exception as e:
    info.update(cuda_available=False, no_gpu_reason=f"torch does not import: {type(e).__name__}: {e}")
print("RESULT " + json.dumps(info))
"""


def find_tool(name: str, nvcc: str | None) -> str | None:
    """A CUDA tool on PATH or beside nvcc (compute-sanitizer has its own folder in the toolkit)."""
    found = shutil.which(name)
    if found:
        return found
    roots = [Path("/usr/local/cuda")]
    if nvcc:
        roots.insert(0, Path(nvcc).resolve().parent.parent)
    for root in roots:
        for candidate in (root / "bin" / name, root / name / name):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def junit_counts(path: Path) -> dict:
    """Counts and recorded properties (the parity numbers test_gpu.py records) of a pytest junit report."""
    root = ET.parse(path).getroot()
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "xfailed": 0, "xpassed": 0}
    failures: list[str] = []
    props: dict[str, list[float]] = {}
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        kinds = {child.tag: child for child in case}
        if "failure" in kinds:
            counts["failed"] += 1
            failures.append(name)
        elif "error" in kinds:
            counts["errors"] += 1
            failures.append(name)
        elif "skipped" in kinds:
            if kinds["skipped"].get("type") == "pytest.xfail":
                counts["xfailed"] += 1
            else:
                counts["skipped"] += 1
        else:
            counts["passed"] += 1
        for prop in case.iter("property"):
            try:
                props.setdefault(prop.get("name", ""), []).append(float(prop.get("value", "nan")))
            except ValueError:
                continue
    counts["failures"] = failures[:20]
    counts["properties"] = {k: {"max": max(v), "sum": sum(v), "n": len(v)} for k, v in props.items()}
    return counts


def parity_note(c: dict) -> str:
    note = f"{c['passed']} passed, {c['failed']} failed, {c['errors']} errors, {c['skipped']} skipped"
    if c["xfailed"] or c["xpassed"]:
        note += f", {c['xfailed']} xfailed"
    p = c.get("properties", {})

    def mx(key: str) -> str:
        return f"{p[key]['max']:.1e}" if key in p else "-"

    note += (
        f"; roi_align max|d| vs torchvision fp32 {mx('roi_align_max_abs_diff_torchvision_fp32')}"
        f" fp16 {mx('roi_align_max_abs_diff_torchvision_fp16')}, vs CPU reference fp32"
        f" {mx('roi_align_max_abs_diff_reference_fp32')} fp16 {mx('roi_align_max_abs_diff_reference_fp16')}"
    )
    if "nms_compared_torchvision" in p:
        note += (
            f"; nms: {int(p['nms_mismatches_torchvision']['sum'])} of {int(p['nms_compared_torchvision']['sum'])}"
            " survivors differ from torchvision's CUDA nms (the CPU reference: equal, or a test failed)"
        )
    if c.get("failures"):
        note += "; FAILED: " + ", ".join(c["failures"])
    return note


def sanitizer_verdict(rc: int | None, output: str) -> tuple[str, str]:
    """(verdict, note) of a compute-sanitizer memcheck run from its exit status and output."""
    refused = re.search(r".*(Device not supported|not supported on this (device|platform)).*", output)
    summary = re.search(r"ERROR SUMMARY: (\d+) error", output)
    if refused and not (summary and int(summary.group(1)) > 0):
        return "skip", f"compute-sanitizer refuses this device: {refused.group(0).strip()[:200]}"
    if rc is None:
        return "timeout", "memcheck ran out of time"
    if summary and int(summary.group(1)) > 0:
        first = [ln.strip() for ln in output.splitlines() if "=========" in ln and "Invalid" in ln][:3]
        return "fail", f"memcheck: {summary.group(1)} errors: {' | '.join(first)}"
    if rc == 0 and summary:
        return "pass", f"memcheck: 0 errors in {SANITIZER_TEST.split('::')[-1]} (both precisions, every path)"
    return "fail", f"exit {rc} under memcheck: {_tail(output, 300)}"


def bench_note(data: dict) -> str:
    """Speed-ups (torchvision's time over ours) per case, FP32/FP16 side by side."""

    def pairs(rows: list, key) -> str:
        cases: dict = {}
        for r in rows:
            cases.setdefault(key(r), {})[r["dtype"]] = r["speedup"]
        return ", ".join(
            f"{case} x{v.get('fp32', float('nan')):.2f}/x{v.get('fp16', float('nan')):.2f}"
            for case, v in cases.items()
        )

    roi = pairs(data.get("roi_align", []), lambda r: f"{r['rois']} rois {r['size']}x{r['size']}")
    nms = pairs(data.get("nms", []), lambda r: f"{r['candidates']} cand.")
    return f"speed-up over torchvision (its time / ours), fp32/fp16: roi_align {roi}; nms {nms}"


def summary_table(steps: Sequence[Step]) -> str:
    width = max(len(s.step) for s in steps)
    lines = [f"{'step':<{width}}  verdict  {'s':>6}  key numbers", "-" * 110]
    for s in steps:
        lines.append(f"{s.step:<{width}}  {s.verdict:<7}  {s.seconds:6.1f}  {s.note}")
    return "\n".join(lines)


# -- R-50 worker (runs in its own process, so a hang or crash costs only this step)


def r50_worker(iters: int, warmup: int) -> dict:
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval().cuda()
    # random weights score every class near 1/91: keep the 100 best boxes so the mask head does its usual work
    model.roi_heads.score_thresh = 0.0
    image = torch.rand(3, 800, 1216, device="cuda")  # 800 px short side: the model's transform keeps the size
    result: dict = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "image": [800, 1216],
        "iters": iters,
        "warmup": warmup,
        "tf32_conv": torch.backends.cudnn.allow_tf32,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    for name, dtype in (("fp32", None), ("fp16", torch.float16)):
        times = []
        with (
            torch.inference_mode(),
            torch.autocast("cuda", dtype=dtype or torch.float16, enabled=dtype is not None),
        ):
            for _ in range(warmup):
                out = model([image])
            torch.cuda.synchronize()
            for _ in range(iters):
                start = time.perf_counter()
                out = model([image])
                torch.cuda.synchronize()
                times.append((time.perf_counter() - start) * 1e3)
        times.sort()
        result[name] = {
            "median_ms": statistics.median(times),
            "p90_ms": times[min(len(times) - 1, int(0.9 * len(times)))],
            "min_ms": times[0],
            "detections": int(out[0]["boxes"].shape[0]),
            "masks": list(out[0]["masks"].shape),
        }
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default $OUT, else output/gpu-check)"
    )
    parser.add_argument(
        "--budget-s", type=float, default=280.0, help="stop starting work after this many seconds"
    )
    parser.add_argument("--require-gpu", action="store_true", help="no GPU is a failure, not a skip")
    parser.add_argument("--wheels", type=Path, default=WHEELS_DIR)
    parser.add_argument(
        "--site", type=Path, default=Path(DEFAULT_SITE), help="where the wheels are installed"
    )
    parser.add_argument("--build-dir", default=DEFAULT_BUILD_DIR, help="relative to the repository root")
    parser.add_argument("--r50-iters", type=int, default=30)
    parser.add_argument("--r50-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--iters", type=int, default=30, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.r50_worker:
        print("RESULT " + json.dumps(r50_worker(args.iters, warmup=5)), flush=True)
        return 0

    out = args.out or Path(os.environ.get("OUT") or REPO / "output" / "gpu-check")
    out.mkdir(parents=True, exist_ok=True)
    check = Check(out, args.budget_s, args.require_gpu)
    wheels = args.wheels if args.wheels.is_absolute() else REPO / args.wheels
    print(f"[gpu_check] results under {out}; budget {args.budget_s:.0f} s", flush=True)

    check.record(check.step_wheels(wheels, args.site))
    check.record(check.step_env())
    check.record(check.step_imports(wheels))
    build = check.record(check.out_of_time("build", 30) or check.step_build(args.build_dir))
    build_ok = build.verdict == "pass"
    check.record(check.out_of_time("gpu_tests", 20) or check.step_gpu_tests(build_ok))
    check.record(check.out_of_time("sanitizer", 20) or check.step_sanitizer(build_ok))
    check.record(check.out_of_time("bench", 15) or check.step_bench(build_ok))
    check.record(check.out_of_time("r50", 20) or check.step_r50(args.r50_iters))

    table = summary_table(check.steps)
    (out / "summary.txt").write_text(table + "\n")
    print("\n" + table, flush=True)
    return 1 if any(s.verdict in ("fail", "timeout") for s in check.steps) else 0


if __name__ == "__main__":
    raise SystemExit(main())
