"""Prepare what the GPU check carries to a lent device machine, and print the `run` call that spends the lease on it.

    python scripts/prepare_gpu_check.py [--wheels DIR] [--check-only]

The lent machine (README, "### Plugins") has Python 3.12 with torch, torchvision, numpy, onnx, onnxruntime,
OpenCV and pytest, and no package registry, so what it lacks travels as wheels. This script:

1. imports, in a child of this Python, what the device will import: every module of ``tests/plugins``, the entry
   modules of ``runtime`` and ``trainer`` (``IMPORTED_ON_DEVICE``) and ``faster_coco_eval`` (which
   ``runtime.coco_eval`` imports lazily), and lists the distributions that loaded;
2. downloads those the device lacks (``DEVICE_PACKAGES``: the device image's list in the device notes, KINDS.md,
   read 2026-11-17), pinned to the versions installed here, and whatever they require that the device lacks, as
   wheels for CPython 3.12 on manylinux x86-64 (``pip download --only-binary=:all: --python-version 3.12
   --platform ...``), into ``.gpu-check-wheels/`` (git-ignored), with ``requirements.txt`` (one ``name==version``
   per wheel) and ``modules.txt`` (what the check's ``imports`` step imports there);
3. checks offline that they resolve for Python 3.12 (``pip install --dry-run --target TMP --python-version 3.12
   --only-binary=:all: --no-index --no-deps --find-links DIR``), that the folder holds one version of each, and that
   every requirement of every wheel is on the device or in the folder (``check_resolves``; ``--no-deps`` because
   the device's own numpy, PyYAML, ... are not in the folder);
4. prints the exact ``run`` call: command, carry list, timeout_s.

``--check-only`` does step 3 alone (no network). ``benchmarks/gpu_check.py`` runs the same check in its ``wheels``
step and installs the wheels where the running Python is 3.12; ``tests/plugins/test_gpu_check_dry_run.py`` runs it
in the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WHEELS_DIR = REPO_ROOT / ".gpu-check-wheels"
REQUIREMENTS_FILE = "requirements.txt"
MODULES_FILE = "modules.txt"

DEVICE_PYTHON = "3.12"
DEVICE_PYTHON_FULL = "3.12.3"
#: manylinux tags the device's glibc runs (its Python is Ubuntu 24.04's 3.12.3); pip matches each N exactly
DEVICE_PLATFORMS = tuple(f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35, 39)) + (
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
#: environment markers of the device, for the Requires-Dist lines of the wheels
DEVICE_MARKERS = {
    "python_version": DEVICE_PYTHON,
    "python_full_version": DEVICE_PYTHON_FULL,
    "implementation_name": "cpython",
    "implementation_version": DEVICE_PYTHON_FULL,
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "extra": "",
}

#: the device image's Python packages, as the device notes (KINDS.md, "Python packages already there") listed them
#: on 2026-11-17; carry one only for another version
DEVICE_PACKAGES_TEXT = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile
tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel
wrapt xarray xxhash yarl zipp
"""
#: versions the device notes give (a session's pip list there, 2026-11); a requirement on these is checked
DEVICE_VERSIONS = {
    "numpy": "2.5.2",
    "torch": "2.11.0",
    "torchvision": "0.26.0",
    "onnx": "1.23.1",
    "onnxruntime": "1.30.0",
    "onnx-ir": "1.0.0",
    "onnxscript": "0.7.2",
    "safetensors": "0.8.0",
    "triton": "3.6.0",
}

#: entry modules of runtime and trainer that a GPU session may use, besides every module of tests/plugins
IMPORTED_ON_DEVICE = (
    "runtime.plugins.cuda",
    "runtime.plugins.ort_reference",
    "runtime.predictor",
    "runtime.coco_eval",
    "runtime.evaluate",
    "runtime.bench",
    "trainer.torch_backend",
    "trainer.model",
    "trainer.engine",
    "trainer.cli",
    "trainer.evaluation",
    "trainer.datasets",
    "faster_coco_eval",  # runtime.coco_eval's second backend, imported only when chosen
)
#: this project's own distribution: the checkout travels, not a wheel of it
OWN_DISTRIBUTION = "maskrcnn-deploy"

#: pip's words for a package index it cannot reach; an index that answers nothing at all ("from versions: none")
#: reads the same, since pip cannot tell it from one that has no wheel of that name for Python 3.12
NETWORK_ERROR = re.compile(
    r"NewConnectionError|Max retries exceeded|Temporary failure in name resolution|Network is unreachable|"
    r"Failed to establish a new connection|ConnectTimeout|ReadTimeout|ProxyError|No route to host|"
    r"Could not fetch URL|connection broken|from versions: none",
    re.IGNORECASE,
)


class PrepareError(RuntimeError):
    """The wheels could not be prepared; ``network``: the package index was out of reach or offered no version."""

    def __init__(self, message: str, network: bool = False) -> None:
        super().__init__(message)
        self.network = network


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them (``PyYAML`` -> ``pyyaml``, ``typing_extensions`` -> ...)."""
    return re.sub(r"[-_.]+", "-", name).lower()


DEVICE_PACKAGES = frozenset(normalize(n) for n in DEVICE_PACKAGES_TEXT.split())


def probe_modules(repo: Path = REPO_ROOT) -> list[str]:
    """What the device imports: every module of tests/plugins, then ``IMPORTED_ON_DEVICE``."""
    tests = sorted(
        f"tests.plugins.{p.stem}" for p in (repo / "tests" / "plugins").glob("*.py") if p.stem != "__init__"
    )
    return [*tests, *IMPORTED_ON_DEVICE]


def _probe_main(modules: Sequence[str]) -> int:
    """``--probe``: import ``modules`` and print, as JSON, the distributions loaded and what failed or skipped."""
    import importlib
    import importlib.metadata as md

    sys.path.insert(0, str(REPO_ROOT))
    failed: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as e:  # an import error of any kind is the finding
            failed[name] = f"{type(e).__name__}: {e}"
        except BaseException as e:  # pytest.importorskip raises Skipped, a BaseException
            if type(e).__name__ != "Skipped":
                raise
            skipped[name] = str(e)
    top_to_dists = md.packages_distributions()
    dists: dict[str, str] = {}
    for top in sorted({m.split(".")[0] for m in list(sys.modules)}):
        for dist in top_to_dists.get(top, ()):
            try:
                dists[dist] = md.version(dist)
            except md.PackageNotFoundError:
                continue
    print(json.dumps({"distributions": dists, "failed": failed, "skipped": skipped}))
    return 0


def probe(
    modules: Sequence[str],
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> dict:
    """Import ``modules`` in a child ``python`` (the repository on its path): {distributions, failed, skipped}."""
    result = subprocess.run(
        [python, str(Path(__file__).resolve()), "--probe", *modules],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"import probe failed (exit {result.returncode}): {(result.stderr or '')[-2000:]}")
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------------------------------
# wheels


@dataclass(frozen=True)
class Wheel:
    path: Path
    name: str  # normalized
    version: str


def wheel_of(path: Path) -> Wheel:
    """Distribution name (normalized) and version from a wheel's file name."""
    parts = path.name[: -len(".whl")].split("-")
    if len(parts) < 5:
        raise ValueError(f"not a wheel file name: {path.name}")
    return Wheel(path, normalize(parts[0]), parts[1])


def wheels_in(folder: Path) -> list[Wheel]:
    return sorted((wheel_of(p) for p in folder.glob("*.whl")), key=lambda w: w.name)


def _packaging():
    try:
        from packaging.markers import Marker
        from packaging.requirements import Requirement
        from packaging.version import Version
    except ImportError:  # pip vendors it
        from pip._vendor.packaging.markers import Marker  # type: ignore[no-redef]
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
        from pip._vendor.packaging.version import Version  # type: ignore[no-redef]
    return Marker, Requirement, Version


def wheel_requirements(path: Path) -> list:
    """The wheel's Requires-Dist that apply on the device (markers evaluated there, no extras)."""
    _, requirement, _ = _packaging()
    with zipfile.ZipFile(path) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode("utf-8", errors="replace")
    reqs = []
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:"):
            if not line.strip():
                break  # the headers end at the first blank line
            continue
        req = requirement(line.split(":", 1)[1].strip())
        if req.marker is None or req.marker.evaluate(DEVICE_MARKERS):
            reqs.append(req)
    return reqs


def check_requirements(wheels: Iterable[Wheel]) -> tuple[list[str], list[str]]:
    """The wheels' requirements that are not met: (conflicts, absent). A conflict names a version that the folder
    (or the device, where its version is known) has but the requirement excludes; absent ones are neither on the
    device (DEVICE_PACKAGES) nor in the folder, as requirement strings."""
    _, _, version = _packaging()
    wheels = list(wheels)
    have = {w.name: w.version for w in wheels}
    conflicts: list[str] = []
    absent: list[str] = []
    for w in wheels:
        for req in wheel_requirements(w.path):
            name = normalize(req.name)
            if name in have:
                if not req.specifier.contains(version(have[name]), prereleases=True):
                    conflicts.append(f"{w.name} {w.version} needs {req}, the folder has {name} {have[name]}")
            elif name in DEVICE_PACKAGES:
                known = DEVICE_VERSIONS.get(name)
                if known and not req.specifier.contains(version(known), prereleases=True):
                    conflicts.append(f"{w.name} {w.version} needs {req}, the device has {name} {known}")
            else:
                absent.append(str(req))
    return conflicts, absent


@contextlib.contextmanager
def _locked(folder: Path, exclusive: bool):
    """A lock beside the folder: a check never reads a folder that prepare() is swapping."""
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


def _pip_platform_args() -> list[str]:
    args = ["--python-version", DEVICE_PYTHON, "--implementation", "cp", "--only-binary=:all:"]
    for platform in DEVICE_PLATFORMS:
        args += ["--platform", platform]
    return args


def download(requirements: Sequence[str], folder: Path, timeout: float = 300) -> None:
    """``pip download --no-deps`` of ``name==version`` requirements as CPython 3.12 manylinux x86-64 wheels."""
    if not requirements:
        return
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input", "--no-deps"]
    cmd += [*_pip_platform_args(), "-d", str(folder), *requirements]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PrepareError(
            f"pip download of {' '.join(requirements)} took over {timeout:.0f} s", True
        ) from None
    if result.returncode != 0:
        log = (result.stdout + result.stderr)[-3000:]
        raise PrepareError(
            f"pip download of {' '.join(requirements)} failed:\n{log}", bool(NETWORK_ERROR.search(log))
        )


@dataclass
class ResolveResult:
    ok: bool
    message: str
    wheels: dict[str, str] = field(default_factory=dict)  # name -> version, as pip would install them
    total_bytes: int = 0


def check_resolves(folder: Path = WHEELS_DIR, timeout: float = 120) -> ResolveResult:
    """Offline: do the folder's wheels resolve for the device's Python 3.12, one version each, all needs met?"""
    folder = Path(folder)
    with _locked(folder, exclusive=False):
        return _check_resolves(folder, timeout)


def _check_resolves(folder: Path, timeout: float) -> ResolveResult:
    req_file = folder / REQUIREMENTS_FILE
    if not req_file.is_file():
        return ResolveResult(
            False, f"{folder} is not prepared (no {REQUIREMENTS_FILE}): run {_prepare_hint()}"
        )
    reqs = [ln.strip() for ln in req_file.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    wheels = wheels_in(folder)
    size = sum(w.path.stat().st_size for w in wheels)
    names = [w.name for w in wheels]
    doubles = sorted({n for n in names if names.count(n) > 1})
    if doubles:
        return ResolveResult(
            False, f"more than one version of {', '.join(doubles)} in {folder}", total_bytes=size
        )
    if not reqs:
        return ResolveResult(True, "nothing to carry: the device has every package needed", total_bytes=size)
    conflicts, absent = check_requirements(wheels)
    if conflicts or absent:
        unmet = conflicts + [f"{a}: neither on the device nor in the folder" for a in absent]
        return ResolveResult(False, "; ".join(unmet), total_bytes=size)
    with tempfile.TemporaryDirectory(prefix="mrd-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--dry-run",
        ]
        cmd += ["--quiet", "--report", str(report), "--target", str(Path(tmp) / "site")]
        cmd += [*_pip_platform_args(), "--no-index", "--no-deps", "--find-links", str(folder), *reqs]
        env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull}
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if result.returncode != 0:
            return ResolveResult(
                False,
                f"pip cannot install {' '.join(reqs)} for Python {DEVICE_PYTHON} from {folder}: "
                f"{(result.stdout + result.stderr)[-2000:]}",
                total_bytes=size,
            )
        installs = json.loads(report.read_text()).get("install", [])
    resolved = {normalize(i["metadata"]["name"]): i["metadata"]["version"] for i in installs}
    wanted = {normalize(r.split("==")[0]): r.split("==")[1] if "==" in r else "" for r in reqs}
    wrong = [f"{n}=={v}" for n, v in wanted.items() if n not in resolved or (v and resolved[n] != v)]
    if wrong:
        return ResolveResult(False, f"pip resolved {resolved}, not {', '.join(wrong)}", resolved, size)
    listed = ", ".join(f"{n} {v}" for n, v in sorted(resolved.items()))
    return ResolveResult(
        True, f"{len(resolved)} wheels resolve for Python {DEVICE_PYTHON}: {listed}", resolved, size
    )


def _prepare_hint() -> str:
    return "python scripts/prepare_gpu_check.py"


def prepare(folder: Path = WHEELS_DIR, modules: Sequence[str] | None = None, log=print) -> ResolveResult:
    """Steps 1 to 3 of the module docstring. The wheels are gathered in a staging folder beside ``folder`` and
    swapped in whole, under the lock that check_resolves() takes, so no check sees a half-written folder."""
    folder = Path(folder)
    modules = list(modules) if modules is not None else probe_modules()
    found = probe(modules)
    if found["failed"]:
        raise PrepareError(
            f"these modules do not import here, so what they need is unknown: {found['failed']}"
        )
    needed = {
        normalize(d): v
        for d, v in found["distributions"].items()
        if normalize(d) not in DEVICE_PACKAGES and normalize(d) != OWN_DISTRIBUTION
    }
    log(
        f"imported {len(modules)} modules here; the device lacks {', '.join(sorted(needed)) or 'none of theirs'}"
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".staging-", dir=folder.parent))
    try:
        kept = set()
        if folder.is_dir():  # wheels of the wanted versions are reused, not downloaded again
            for w in wheels_in(folder):
                if needed.get(w.name) == w.version:
                    shutil.copy2(w.path, staging / w.path.name)
                    kept.add(w.name)
        download([f"{n}=={v}" for n, v in sorted(needed.items()) if n not in kept], staging)
        # what those wheels need that the device lacks: the version installed here where it fits, else the newest
        for _ in range(10):
            _, absent = check_requirements(wheels_in(staging))
            if not absent:
                break
            download(sorted({_pinned_here(r) for r in absent}), staging)
        wheels = wheels_in(staging)
        (staging / REQUIREMENTS_FILE).write_text(
            "# the wheels the GPU check carries (scripts/prepare_gpu_check.py)\n"
            + "".join(f"{w.name}=={w.version}\n" for w in wheels)
        )
        (staging / MODULES_FILE).write_text("".join(f"{m}\n" for m in modules))
        result = _check_resolves(staging, timeout=120)
        if not result.ok:
            raise PrepareError(result.message)
        old = folder.with_name(folder.name + ".old")
        with _locked(folder, exclusive=True):
            shutil.rmtree(old, ignore_errors=True)
            if folder.exists():
                folder.rename(old)
            staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return check_resolves(folder)


def _pinned_here(requirement: str) -> str:
    """``name==version`` of the version installed here when it satisfies ``requirement``, else the requirement."""
    import importlib.metadata as md

    _, requirement_cls, version = _packaging()
    req = requirement_cls(requirement)
    try:
        here = md.version(req.name)
    except md.PackageNotFoundError:
        return str(req)
    return f"{req.name}=={here}" if req.specifier.contains(version(here), prereleases=True) else str(req)


# ---------------------------------------------------------------------------------------------------------------
# the call


GPU_CHECK_COMMAND = "bash scripts/gpu_check.sh --require-gpu"
GPU_CHECK_TIMEOUT_S = 300


def travelling_bytes(repo: Path = REPO_ROOT) -> int:
    """Bytes of the working tree that travels: tracked and untracked-not-ignored files (git's view)."""
    result = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        timeout=60,
    )
    if result.returncode != 0:
        return -1
    total = 0
    for name in result.stdout.decode(errors="replace").split("\0"):
        path = repo / name
        if name and path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def run_call(folder: Path = WHEELS_DIR) -> dict:
    """The `run` call of the device tool that runs the check: command, carry, timeout_s."""
    carry = [os.path.relpath(folder, REPO_ROOT)] if (Path(folder) / REQUIREMENTS_FILE).is_file() else []
    return {"command": GPU_CHECK_COMMAND, "carry": carry, "timeout_s": GPU_CHECK_TIMEOUT_S}


def print_run_call(folder: Path, result: ResolveResult) -> None:
    call = run_call(folder)
    tree = travelling_bytes()
    mib = 1 << 20
    print()
    print(
        "The device call (one `run` of the device tool; 5 minutes of a 15-minute lease, plus the machine's start):"
    )
    print(f"  command:   {call['command']}")
    print(f"  carry:     {json.dumps(call['carry'])}")
    print(f"  timeout_s: {call['timeout_s']}")
    print(f"  as JSON:   {json.dumps(call)}")
    if tree >= 0:
        print(
            f"What travels: the working tree {tree / mib:.1f} MiB + wheels {result.total_bytes / mib:.1f} MiB "
            f"of the 64 MiB limit."
        )
    print(
        "The table comes last in output_tail; results.jsonl (one line per step, written as each ends), summary.txt,\n"
        "gpu_check.log, gpu_tests.xml and bench_plugins.json come back from $OUT. Call give_back unless you rerun."
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--probe"]:
        return _probe_main(args[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--wheels", type=Path, default=WHEELS_DIR, help="the folder that travels (git-ignored)"
    )
    parser.add_argument(
        "--check-only", action="store_true", help="only check, offline, that the folder resolves"
    )
    opts = parser.parse_args(args)
    folder = opts.wheels if opts.wheels.is_absolute() else Path.cwd() / opts.wheels
    if opts.check_only:
        result = check_resolves(folder)
    else:
        try:
            result = prepare(folder)
        except PrepareError as e:
            print(f"could not prepare {folder}: {e}", file=sys.stderr)
            return 3 if e.network else 1
    print(("ok: " if result.ok else "NOT OK: ") + result.message)
    if not result.ok:
        return 1
    print_run_call(folder, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
