"""Files: nothing is overwritten that the user did not name as the output, pairs are replaced together, a
resumed run says what it resumed from and refuses what would silently go wrong, outputs get the normal mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.atomic_files import (
    finish_interrupted,
    journal_path,
    normal_mode,
    replace_together,
    temporary_beside,
    write_bytes_atomic,
)
from tests.common import SHAPES_CONFIG, tiny_train_opts


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outputs_get_the_normal_mode(tmp_path: Path) -> None:
    """mkstemp's 0600 used to survive the rename: checkpoints and ONNX files were private to their writer."""
    import torch

    from exporter.surgery import save_onnx_atomic
    from trainer.checkpoint import atomic_torch_save

    old = os.umask(0o022)
    try:
        atomic_torch_save({"w": torch.zeros(1)}, tmp_path / "a.pth")
        import onnx

        save_onnx_atomic(onnx.ModelProto(), tmp_path / "a.onnx")
        write_bytes_atomic(tmp_path / "a.bin", b"x")
        assert normal_mode() == 0o644
        for name in ("a.pth", "a.onnx", "a.bin"):
            assert _mode(tmp_path / name) == 0o644, name
    finally:
        os.umask(old)


def test_a_pair_is_replaced_together_even_across_a_crash(tmp_path: Path) -> None:
    engine, sidecar = tmp_path / "m.engine", tmp_path / "m.engine.json"
    engine.write_bytes(b"old engine")
    sidecar.write_bytes(b"old sidecar")
    # a writer killed before it committed: the old pair stands, its temporaries are never used
    with temporary_beside(engine) as a, temporary_beside(sidecar) as b:
        a.write_bytes(b"new engine")
        b.write_bytes(b"new sidecar")
        # ... killed here: no journal was written
    assert finish_interrupted(engine) is False
    assert (engine.read_bytes(), sidecar.read_bytes()) == (b"old engine", b"old sidecar")
    # a writer killed after it committed (journal written, one rename done): the next reader completes it
    new_engine, new_sidecar = tmp_path / ".new_engine", tmp_path / ".new_sidecar"
    new_engine.write_bytes(b"new engine")
    new_sidecar.write_bytes(b"new sidecar")
    journal = journal_path(engine)
    journal.write_text('{"renames": [[".new_engine", "m.engine"], [".new_sidecar", "m.engine.json"]]}')
    os.replace(new_engine, engine)  # the first rename happened, then the kill
    assert (engine.read_bytes(), sidecar.read_bytes()) == (b"new engine", b"old sidecar")
    from runtime.engine_sidecar import read_sidecar

    with pytest.raises(ValueError):  # not JSON, but the pair is whole again before it is read
        read_sidecar(engine)
    assert (engine.read_bytes(), sidecar.read_bytes()) == (b"new engine", b"new sidecar")
    assert not journal.exists()
    # a journal naming files outside its folder is never followed, and no pair is written across folders
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"keep")
    sub = tmp_path / "sub"
    sub.mkdir()
    journal_path(sub / "m.engine").write_text('{"renames": [["../outside/victim", "m.engine"]]}')
    assert finish_interrupted(sub / "m.engine") is True
    assert (outside / "victim").read_bytes() == b"keep" and not (sub / "m.engine").exists()
    with pytest.raises(ValueError, match="one folder"):
        replace_together([(outside / "victim", sub / "m.engine")])


def test_triton_output_refuses_a_folder_that_is_not_a_repository(
    random_shapes_onnx: Path, tmp_path: Path
) -> None:
    """``--to triton --output .`` wrote README.md over the user's."""
    from exporter.cli import main

    args = ["--to", "triton", "--onnx", str(random_shapes_onnx), "--backend", "python", "--quiet"]
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "README.md").write_text("the user's own")
    assert main([*args, "--output", str(folder)]) == 2  # a README alone is not a repository of ours
    (folder / "train.py").write_text("print()")
    assert main([*args, "--output", str(folder)]) == 2
    assert (folder / "README.md").read_text() == "the user's own"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "train.py"]
    repo = tmp_path / "repo"
    assert main([*args, "--output", str(repo)]) == 0
    assert main([*args, "--output", str(repo)]) == 0  # a repository of ours is written again
    (repo / ".maskrcnn-deploy-repository").unlink()  # as written before the marker: its README says whose
    assert main([*args, "--output", str(repo)]) == 0


def test_webcam_output_never_replaces_the_input(tmp_path: Path, random_shapes_onnx: Path) -> None:
    from runtime.webcam import main

    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.jpg"), np.full((60, 80, 3), 90, np.uint8))
    before = (photos / "a.jpg").read_bytes()
    common = ["--model", str(random_shapes_onnx), "--no-display", "--input", str(photos)]
    assert main([*common, "--output", str(photos)]) == 2
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    assert main([*common, "--output", str(other)]) == 2
    assert (photos / "a.jpg").read_bytes() == before and (other / "keep.txt").read_text() == "x"
    assert main([*common, "--output", str(tmp_path / "new")]) == 0
    assert (tmp_path / "new" / "a.jpg").is_file()


def test_resume_refuses_a_missing_checkpoint_and_a_changed_schedule(tiny_shapes, tmp_path: Path) -> None:
    from trainer.checkpoint import LAST_CHECKPOINT, CheckpointError
    from trainer.config import ConfigError, load_config
    from trainer.engine import train

    out = tmp_path / "run"
    opts = tiny_train_opts(tiny_shapes, out, max_iter=2)
    train(load_config(SHAPES_CONFIG, opts), progress=False)
    # a changed schedule is named, not silently mixed with the saved scheduler state
    changed = load_config(SHAPES_CONFIG, [*opts, "SOLVER.BASE_LR", "0.5"])
    with pytest.raises(ConfigError, match=r"SOLVER.BASE_LR: 0.0.* -> 0.5.*--allow-solver-change"):
        train(changed, progress=False)
    assert train(changed, progress=False, allow_solver_change=True).name == "model_final.pth"
    # a marker naming a file that is gone: an error, not a silent start from nothing
    (out / LAST_CHECKPOINT).write_text("model_0009999.pth")
    with pytest.raises(CheckpointError, match="names model_0009999.pth, which is not in.*--no-resume"):
        train(load_config(SHAPES_CONFIG, opts), progress=False)
    (out / LAST_CHECKPOINT).write_text("../../etc/passwd")
    with pytest.raises(CheckpointError, match="must name a checkpoint file"):
        train(load_config(SHAPES_CONFIG, opts), progress=False)
