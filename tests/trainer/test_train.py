"""Training runs, checkpoints atomically, resumes where it stopped, and runs under torchrun."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.common import REPO, SHAPES_CONFIG, tiny_train_opts
from trainer.checkpoint import last_checkpoint, load_checkpoint_file
from trainer.config import load_config
from trainer.engine import train


def _iterations(output_dir: Path) -> dict[int, dict]:
    lines = (output_dir / "metrics.jsonl").read_text().splitlines()
    return {r["iteration"]: r for r in map(json.loads, lines) if "lr" in r}


def test_train_writes_checkpoints_and_resumes_at_same_iteration_and_lr(tiny_shapes, tmp_path: Path) -> None:
    # an uninterrupted reference run
    ref_dir = tmp_path / "ref"
    final = train(load_config(SHAPES_CONFIG, tiny_train_opts(tiny_shapes, ref_dir)), progress=False)
    assert final.name == "model_final.pth"
    ckpt = load_checkpoint_file(final)
    assert ckpt["iteration"] == 4
    assert ckpt["class_names"][1:] == ["circle", "square", "triangle", "star", "cross"]
    assert "R-18-FPN" in ckpt["config"]
    assert (ref_dir / "model_0000002.pth").is_file()
    assert not list(ref_dir.glob(".*.tmp"))  # atomic writes leave no temporaries

    # a run "killed" after its checkpoint at iteration 2, then started again
    run_dir = tmp_path / "run"
    cfg = load_config(SHAPES_CONFIG, tiny_train_opts(tiny_shapes, run_dir))
    train(cfg, progress=False, stop_after=3)
    assert last_checkpoint(run_dir).name == "model_0000002.pth"
    resumed_final = train(cfg, progress=False)
    resumed = load_checkpoint_file(resumed_final)
    assert resumed["iteration"] == 4
    ref_sched, res_sched = ckpt["scheduler"], resumed["scheduler"]
    assert res_sched["last_epoch"] == ref_sched["last_epoch"] == 4
    assert res_sched["_last_lr"] == pytest.approx(ref_sched["_last_lr"])
    # the resumed run picked up the optimizer state too: its momentum buffers exist for every parameter
    assert len(resumed["optimizer"]["state"]) == len(ckpt["optimizer"]["state"])


def test_cli_train_then_eval(tiny_shapes, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    opts = tiny_train_opts(tiny_shapes, out, max_iter=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "trainer", "train", "--config-file", str(SHAPES_CONFIG), *opts],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "bbox" in r.stdout and "AP" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "trainer", "eval", "--config-file", str(SHAPES_CONFIG),
         "--weights", str(out / "model_final.pth"), "--json", str(tmp_path / "m.json"), *opts],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics) == {tiny_shapes["val"]}
    assert "segm/AP" in metrics[tiny_shapes["val"]]
    # a user's mistake is one clear line, not a traceback
    r = subprocess.run(
        [sys.executable, "-m", "trainer", "eval", "--config-file", str(SHAPES_CONFIG),
         "--weights", str(tmp_path / "missing.pth"), *opts],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 2
    assert "weights file not found" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
    reason="torchrun is not installed",
)
def test_torchrun_two_processes_on_cpu(tiny_shapes, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    torchrun = str(Path(sys.executable).parent / "torchrun")
    r = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "trainer", "train", "--skip-test",
         "--config-file", str(SHAPES_CONFIG), *tiny_train_opts(tiny_shapes, out, max_iter=2)],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = load_checkpoint_file(out / "model_final.pth")
    assert ckpt["iteration"] == 2
    assert not any(k.startswith("module.") for k in ckpt["model"])  # saved unwrapped, loadable anywhere
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
