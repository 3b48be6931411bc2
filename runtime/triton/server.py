"""Run the ``tritonserver`` that the ``nvidia-pytriton`` wheel bundles on an exported model repository.

``bash scripts/serve.sh MODEL_REPOSITORY`` is ``python -m runtime.triton.server MODEL_REPOSITORY`` in the
serving environment (``.venv-serving``, made by ``scripts/setup_serving.sh``); the tests start the same
server through :class:`TritonProcess`. What the bundled server needs, found here once:

- the Python backend's stub for this Python's version (``python_backend_stubs/3.X``) copied into a backend
  directory as ``python/triton_python_backend_stub``, beside ``libtriton_python.so`` (pytriton does the
  same: the wheel does not ship it there);
- ``LD_LIBRARY_PATH`` with this Python's own ``lib/`` first (the stub links ``libpython3.X.so``: the
  system's one would mix two interpreters and fail in ``multiprocessing``), then the wheel's bundled
  libraries (``nvidia_pytriton.libs``, which the copied stub no longer finds through its RPATH);
- the serving environment's ``bin/`` first on ``PATH``, so the stub runs that environment's interpreter
  (numpy < 2, onnxruntime, opencv, ``runtime``).

The server runs as this process's child, under a watchdog. Since Triton 24.06 the Python backend no longer
restarts a stub process that died (a segfaulting library, the OOM killer), and ``/v2/health/ready`` stays
200 while every request to that step fails ("Stub process ... is not healthy"). Reloading the model does
not help: Triton 2.51 never finishes unloading an instance whose stub died after a request reached it, so
its shutdown then waits out ``--exit-timeout-secs`` (measured). So the watchdog restarts the whole server
(SIGTERM, SIGKILL after a few seconds, the stubs and their shared memory removed, started again on the
same ports); a step that keeps dying (3 restarts in 10 minutes) stops it with exit status 3, so that
whatever supervises it (Docker, Kubernetes, systemd) sees it down instead of a server that looks ready
and answers nothing. SIGTERM and SIGINT go to the server, which stops as Triton does: no new requests,
in-flight ones finished (up to ``--exit-timeout-secs``), models unloaded, stub processes ended.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVING_VENV = REPO_ROOT / ".venv-serving"
ENV_SERVING_PYTHON = "MRD_SERVING_PYTHON"
SETUP_HINT = "bash scripts/setup_serving.sh"
#: backends the bundled tritonserver has (an ensemble is no backend)
BUNDLED_BACKENDS = ("python",)

_PROBE = r"""
import json, pathlib, sys, sysconfig
import pytriton
root = pathlib.Path(pytriton.__file__).resolve().parent
print(json.dumps({
    "tritonserver_dir": str(root / "tritonserver"),
    "libs_dir": str(root.parent / "nvidia_pytriton.libs"),
    "python_version": f"{sys.version_info[0]}.{sys.version_info[1]}",
    "python_libdir": sysconfig.get_config_var("LIBDIR") or "",
    "libpython": sysconfig.get_config_var("INSTSONAME") or "",
    "bin_dir": str(pathlib.Path(sys.executable).parent),
    "prefix": sys.prefix,
}))
"""


class ServerUnavailable(RuntimeError):
    """The bundled tritonserver cannot be run here (no serving environment, a missing stub, a backend it lacks)."""


#: where the bundled server listens unless told otherwise: this machine only
LOOPBACK = "127.0.0.1"


def default_serving_python() -> Path | None:
    """``$MRD_SERVING_PYTHON``, else the checkout's ``.venv-serving/bin/python``; None where neither exists."""
    given = os.environ.get(ENV_SERVING_PYTHON)
    candidate = Path(given) if given else SERVING_VENV / "bin" / "python"
    return candidate if candidate.exists() else None


@dataclass(frozen=True)
class BundledTriton:
    """Where the wheel's server and the serving Python's pieces are."""

    python: Path
    tritonserver_dir: Path
    libs_dir: Path
    python_version: str
    python_libdir: Path | None
    bin_dir: Path
    prefix: Path

    @property
    def executable(self) -> Path:
        return self.tritonserver_dir / "bin" / "tritonserver"

    @property
    def stub(self) -> Path:
        return (
            self.tritonserver_dir
            / "python_backend_stubs"
            / self.python_version
            / "triton_python_backend_stub"
        )

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The server's environment: this Python's lib/ first, the wheel's libraries, this venv's bin/ on PATH."""
        env = dict(os.environ if base is None else base)
        libs = [str(p) for p in (self.python_libdir, self.libs_dir) if p is not None]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        env["PATH"] = os.pathsep.join([str(self.bin_dir), env.get("PATH", "")])
        return env


def locate(python: str | os.PathLike[str] | None = None) -> BundledTriton:
    """The bundled server of the serving Python (default: :func:`default_serving_python`)."""
    py = Path(python) if python is not None else default_serving_python()
    if py is None:
        raise ServerUnavailable(
            f"no serving environment ({SERVING_VENV} or ${ENV_SERVING_PYTHON}): run `{SETUP_HINT}`"
        )
    try:
        proc = subprocess.run([str(py), "-c", _PROBE], capture_output=True, text=True, timeout=120)
    except OSError as e:
        raise ServerUnavailable(f"cannot run {py}: {e}; run `{SETUP_HINT}`") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise ServerUnavailable(f"{py} has no nvidia-pytriton ({last}); run `{SETUP_HINT}`")
    facts = json.loads(proc.stdout)
    libdir = Path(facts["python_libdir"]) if facts["python_libdir"] else None
    if libdir is not None and not (libdir / facts["libpython"]).is_file():
        libdir = None  # a static Python: the stub then takes the system's libpython, which must match
    triton = BundledTriton(py, Path(facts["tritonserver_dir"]), Path(facts["libs_dir"]), facts["python_version"],
                           libdir, Path(facts["bin_dir"]), Path(facts["prefix"]))  # fmt: skip
    if not triton.executable.is_file():
        raise ServerUnavailable(f"{triton.executable} is missing: reinstall nvidia-pytriton ({SETUP_HINT})")
    if not triton.stub.is_file():
        raise ServerUnavailable(
            f"the bundled Python backend has no stub for Python {triton.python_version} ({triton.stub}); "
            f"create the serving environment with another Python (PYTHON=python3.X {SETUP_HINT})"
        )
    return triton


def prepare_backends(triton: BundledTriton, dest: str | os.PathLike[str] | None = None) -> Path:
    """A backend directory whose ``python/`` holds the wheel's Python backend and this Python's stub."""
    root = Path(dest) if dest is not None else triton.prefix / "triton-backends"
    target = root / "python"
    target.mkdir(parents=True, exist_ok=True)
    sources = [*sorted((triton.tritonserver_dir / "backends" / "python").glob("*")), triton.stub]
    for src in sources:
        if src.is_file():
            dst = target / src.name
            if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
                tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
                shutil.copy2(src, tmp)
                os.replace(tmp, dst)
    return root


def repository_backends(repository: str | os.PathLike[str]) -> dict[str, str]:
    """model name -> backend (or platform) of every model of a repository, read from its config.pbtxt."""
    found = {}
    for config in sorted(Path(repository).glob("*/config.pbtxt")):
        text = config.read_text()
        m = re.search(r'^\s*(?:backend|platform)\s*:\s*"([^"]+)"', text, re.MULTILINE)
        found[config.parent.name] = m.group(1) if m else "?"
    return found


def check_repository(repository: str | os.PathLike[str]) -> None:
    """:class:`ServerUnavailable` for a missing repository or one needing backends the bundled server lacks."""
    root = Path(repository)
    if not root.is_dir():
        raise ServerUnavailable(
            f"{root}: no such model repository (export one with `python -m exporter --to triton`)"
        )
    backends = repository_backends(root)
    if not backends:
        raise ServerUnavailable(f"{root}: no model directory with a config.pbtxt")
    foreign = {m: b for m, b in backends.items() if b not in (*BUNDLED_BACKENDS, "ensemble")}
    if foreign:
        listed = ", ".join(f"{m} ({b})" for m, b in foreign.items())
        raise ServerUnavailable(
            f"the bundled tritonserver has only the Python backend, but {listed} need(s) another: serve "
            f"{root} with NVIDIA's Triton container (its README.md has the command), or export it with "
            f"--backend python"
        )


def server_command(
    triton: BundledTriton,
    repository: str | os.PathLike[str],
    http_port: int = 8000,
    grpc_port: int = 8001,
    metrics_port: int = 8002,
    address: str | None = LOOPBACK,
    backend_directory: str | os.PathLike[str] | None = None,
    exit_timeout_s: int = 30,
    extra: Sequence[str] = (),
) -> list[str]:
    """The tritonserver command line for a repository: ports, and the interface (loopback unless ``address``
    says otherwise; None leaves tritonserver's default, every interface)."""
    check_repository(repository)
    backends = Path(backend_directory) if backend_directory is not None else prepare_backends(triton)
    cmd = [
        str(triton.executable),
        f"--model-repository={Path(repository).resolve()}",
        f"--backend-directory={backends}",
        f"--http-port={http_port}",
        f"--grpc-port={grpc_port}",
        f"--metrics-port={metrics_port}",
        f"--exit-timeout-secs={exit_timeout_s}",
    ]
    if address is not None:
        cmd += [f"--http-address={address}", f"--grpc-address={address}", f"--metrics-address={address}"]
    if not any("shm-region-prefix-name" in arg for arg in extra):
        # the Python backend's shared-memory regions must not collide with another server's on this machine
        cmd.append(f"--backend-config=python,shm-region-prefix-name=mrd_{os.getpid()}_{os.urandom(4).hex()}_")
    return [*cmd, *extra]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


#: the Python backend's stub executable (``/proc/PID/comm`` holds its first 15 characters)
STUB_NAME = "triton_python_backend_stub"


def stub_processes(
    parent: int | None = None, repository: str | os.PathLike[str] | None = None
) -> dict[int, str]:
    """pid -> model name of the running Python-backend stubs (of the server ``parent``, of the models of
    ``repository``, where given).

    A stub's command line is ``triton_python_backend_stub REPOSITORY/MODEL/VERSION/model.py ...``; a zombie
    (a stub that died and was not reaped yet) is not running.
    """
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if len(argv) < 2 or not argv[0].endswith(STUB_NAME.encode()):
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state == "Z" or (parent is not None and int(ppid) != parent):
            continue
        model_file = Path(os.fsdecode(argv[1]))
        if repository is not None and model_file.parents[2] != Path(repository).resolve():
            continue
        found[int(entry.name)] = model_file.parents[1].name
    return found


@dataclass
class StubWatchdog:
    """Notices a Python-backend stub of the server that is gone.

    ``stubs`` lists pid -> model of the server's stubs now; :meth:`start` remembers them once the server is
    ready, :meth:`dead` names the models whose remembered stub is no longer running.
    """

    stubs: Callable[[], dict[int, str]]
    known: dict[int, str] = field(default_factory=dict)

    def start(self) -> None:
        self.known = self.stubs()

    def dead(self) -> list[str]:
        running = self.stubs()
        return sorted({model for pid, model in self.known.items() if pid not in running})


@dataclass
class RestartBudget:
    """At most ``max_restarts`` restarts per ``window_s`` seconds: a step that dies on every request would
    otherwise restart forever, and a server that is down is better than one that looks ready."""

    max_restarts: int = 3
    window_s: float = 600.0
    times: list[float] = field(default_factory=list)

    def take(self, now: float | None = None) -> bool:
        """Whether one more restart is allowed now (and count it)."""
        now = time.monotonic() if now is None else now
        self.times = [t for t in self.times if now - t < self.window_s]
        if len(self.times) >= self.max_restarts:
            return False
        self.times.append(now)
        return True


def is_ready(http_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{http_url}/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


#: exit status of a server stopped because a step kept dying
EXIT_STEP_DEAD = 3
#: seconds a server with a dead step gets to stop on SIGTERM before it is killed
RESTART_GRACE_S = 5.0


def shm_prefix(cmd: Sequence[str]) -> str | None:
    """The Python backend's shared-memory prefix a command line sets (see :func:`server_command`)."""
    for arg in cmd:
        m = re.search(r"shm-region-prefix-name=([\w.-]+)", arg)
        if m:
            return m.group(1)
    return None


def kill_server(
    server: subprocess.Popen[bytes], cmd: Sequence[str], grace_s: float = RESTART_GRACE_S
) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``: Triton cannot unload an instance whose stub died after a
    request reached it, so its own shutdown would wait out ``--exit-timeout-secs``. The stubs it leaves
    and their shared-memory regions go too."""
    stubs = stub_processes(server.pid)
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(grace_s)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    for pid in stubs:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    prefix = shm_prefix(cmd)
    if prefix:
        for region in Path("/dev/shm").glob(f"{prefix}*"):
            region.unlink(missing_ok=True)


def supervise(cmd: Sequence[str], env: dict[str, str], http_url: str, interval_s: float = 1.0,
              budget: RestartBudget | None = None, log: Callable[[str], None] | None = None) -> int:  # fmt: skip
    """Run tritonserver, forward SIGTERM/SIGINT to it, and restart it when one of its Python stubs dies.

    Its exit status; :data:`EXIT_STEP_DEAD` when a step died more often than ``budget`` allows.
    """
    say = log or (lambda message: print(message, file=sys.stderr, flush=True))
    budget = budget or RestartBudget()
    stopping = threading.Event()
    server: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: object) -> None:
        stopping.set()
        if server is not None and server.poll() is None:
            server.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    while True:
        server = subprocess.Popen(list(cmd), env=env)
        watchdog = StubWatchdog(stubs=lambda s=server: stub_processes(s.pid))
        watching = False
        dead: list[str] = []
        while not dead:
            try:
                return server.wait(interval_s)
            except subprocess.TimeoutExpired:
                pass
            if stopping.is_set():
                continue
            if not watching:
                if is_ready(http_url):
                    watchdog.start()
                    watching = True
                continue
            dead = watchdog.dead()
        if stopping.is_set():
            return server.wait()
        if not budget.take():
            say(
                f"error: the Python stub of {', '.join(dead)} died again ({budget.max_restarts} restarts within "
                f"{budget.window_s:.0f} s already); stopping the server (exit status {EXIT_STEP_DEAD})"
            )
            kill_server(server, cmd)
            return EXIT_STEP_DEAD
        say(f"watchdog: the Python stub of {', '.join(dead)} died; restarting the server")
        kill_server(server, cmd)
        if stopping.is_set():
            return 0


class TritonProcess:
    """The bundled tritonserver as a child process (its own session), for tests and scripts.

    ``stop`` sends SIGTERM (what ``serve.sh`` gets), waits, and only then kills what is left of the
    process group it created.
    """

    def __init__(
        self,
        repository: str | os.PathLike[str],
        triton: BundledTriton | None = None,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        address: str = "127.0.0.1",
        log_path: str | os.PathLike[str] | None = None,
        command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.address = address
        self.http_port = http_port or free_port(address)
        self.grpc_port = grpc_port or free_port(address)
        self.metrics_port = metrics_port or free_port(address)
        self.log_path = Path(log_path) if log_path is not None else None
        if command is None:
            triton = triton or locate()
            command = server_command(triton, repository, self.http_port, self.grpc_port, self.metrics_port,
                                     address, exit_timeout_s=10)  # fmt: skip
            env = triton.environment(env)
        log = open(self.log_path, "wb") if self.log_path is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)  # fmt: skip
        finally:
            if self.log_path is not None:
                log.close()  # type: ignore[union-attr]

    @classmethod
    def serve_sh(
        cls,
        repository: str | os.PathLike[str],
        serving_python: str | os.PathLike[str],
        log_path: str | os.PathLike[str] | None = None,
        address: str = LOOPBACK,
    ) -> TritonProcess:
        """``bash scripts/serve.sh REPOSITORY`` (what a user runs, watchdog included) on free ports of
        ``address``, in the serving environment of ``serving_python``: for tests and benchmarks."""
        ports = {name: free_port(address) for name in ("HTTP_PORT", "GRPC_PORT", "METRICS_PORT")}
        env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "TRITON_ADDRESS": address,
               ENV_SERVING_PYTHON: str(serving_python)}  # fmt: skip
        return cls(repository, http_port=ports["HTTP_PORT"], grpc_port=ports["GRPC_PORT"],
                   metrics_port=ports["METRICS_PORT"], address=address, log_path=log_path, env=env,
                   command=["bash", str(REPO_ROOT / "scripts" / "serve.sh"), str(repository)])  # fmt: skip

    @property
    def http_url(self) -> str:
        return f"http://{self.address}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.address}:{self.grpc_port}"

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until every model is loaded (``/v2/health/ready``); ServerUnavailable with the log if it dies."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerUnavailable(
                    f"tritonserver exited with status {self.process.returncode}:\n{self.log_tail()}"
                )
            if is_ready(self.http_url):
                return
            time.sleep(0.25)
        self.stop()
        raise ServerUnavailable(f"tritonserver not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, wait for a clean exit, then kill what is left of its process group; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        pgid = self.process.pid  # start_new_session: the group this process leads
        try:
            os.killpg(pgid, signal.SIGKILL)  # stubs that outlived the server, if any
        except (ProcessLookupError, PermissionError):
            pass
        return self.process.wait()

    def __enter__(self) -> TritonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port(env: str, default: int) -> int:
    value = os.environ.get(env)
    return int(value) if value else default


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bash scripts/serve.sh",
        description="Serve an exported model repository with the tritonserver of the nvidia-pytriton wheel "
        "(Python backend: the --backend python export). SIGTERM stops it cleanly.",
        epilog="Arguments after -- go to tritonserver unchanged.",
    )
    p.add_argument(
        "repository", type=Path, help="a model repository written by `python -m exporter --to triton`"
    )
    p.add_argument(
        "--http-port", type=int, default=_port("HTTP_PORT", 8000), help="default $HTTP_PORT or 8000"
    )
    p.add_argument(
        "--grpc-port", type=int, default=_port("GRPC_PORT", 8001), help="default $GRPC_PORT or 8001"
    )
    p.add_argument("--metrics-port", type=int, default=_port("METRICS_PORT", 8002),
                   help="default $METRICS_PORT or 8002")  # fmt: skip
    p.add_argument("--address", default=os.environ.get("TRITON_ADDRESS") or LOOPBACK,
                   help="interface to listen on (default $TRITON_ADDRESS, else 127.0.0.1: loopback only; "
                        "0.0.0.0 for every interface)")  # fmt: skip
    p.add_argument(
        "--print-command", action="store_true", help="print the command and environment, don't run"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    args = build_parser().parse_args(argv)
    try:
        triton = locate(sys.executable)
        cmd = server_command(triton, args.repository, args.http_port, args.grpc_port, args.metrics_port,
                             args.address, extra=extra)  # fmt: skip
    except ServerUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    env = triton.environment()
    if args.print_command:
        print(f"LD_LIBRARY_PATH={env['LD_LIBRARY_PATH']} PATH={triton.bin_dir}:... {' '.join(cmd)}")
        return 0
    print(f"serving {args.repository}: HTTP {args.http_port}, gRPC {args.grpc_port}, metrics {args.metrics_port}",
          flush=True)  # fmt: skip
    host = LOOPBACK if args.address in ("0.0.0.0", "::", "") else args.address
    return supervise(cmd, env, f"http://{host}:{args.http_port}")


if __name__ == "__main__":
    sys.exit(main())
