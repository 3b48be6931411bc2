"""The watchdog of scripts/serve.sh on real processes: a stub is found by its command line, its death is
noticed, and restarts are bounded."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from runtime.triton.server import STUB_NAME, RestartBudget, StubWatchdog, shm_prefix, stub_processes


def _fake_stub(tmp_path: Path, repository: Path, model: str) -> subprocess.Popen[bytes]:
    """A real process whose command line is a stub's (``.../triton_python_backend_stub MODEL_DIR/1/model.py``):
    Python run under that name, on a model.py that sleeps."""
    model_file = repository / model / "1" / "model.py"
    model_file.parent.mkdir(parents=True, exist_ok=True)
    model_file.write_text("import time\ntime.sleep(60)\n")
    return subprocess.Popen([str(tmp_path / STUB_NAME), str(model_file)], executable=sys.executable)


def test_a_dead_stub_is_noticed_by_model(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    stubs = [_fake_stub(tmp_path, repository, m) for m in ("m_pre", "m_net")]
    try:
        deadline = time.monotonic() + 10  # a child shows its own command line only once it has exec'd
        while len(found := stub_processes(repository=repository)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert found == {stubs[0].pid: "m_pre", stubs[1].pid: "m_net"}
        assert stub_processes(repository=tmp_path / "elsewhere") == {}
        watchdog = StubWatchdog(stubs=lambda: stub_processes(repository=repository))
        watchdog.start()
        assert watchdog.dead() == []
        stubs[1].kill()
        stubs[1].wait()
        assert watchdog.dead() == ["m_net"]
    finally:
        for s in stubs:
            s.kill()
            s.wait()


def test_restarts_are_bounded_per_window() -> None:
    budget = RestartBudget(max_restarts=3, window_s=600)
    assert [budget.take(now=t) for t in (0, 10, 20, 30)] == [True, True, True, False]
    assert budget.take(now=605)  # the first restart left the window
    assert not budget.take(now=606)


def test_the_shared_memory_prefix_is_read_from_the_command() -> None:
    cmd = [
        "tritonserver",
        "--model-repository=/r",
        "--backend-config=python,shm-region-prefix-name=mrd_1_ab_",
    ]
    assert shm_prefix(cmd) == "mrd_1_ab_"
    assert shm_prefix(["tritonserver"]) is None
