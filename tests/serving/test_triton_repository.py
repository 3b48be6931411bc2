"""``python -m exporter --to triton``: complete repositories, typed from the ONNX, valid against Triton's schema.

The onnxruntime and tensorrt variants cannot run here (their Triton backends are in NVIDIA's containers);
their configs are validated for real with tritonclient's ``model_config_pb2``, in this environment when it
has tritonclient, and in the serving environment too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from exporter.cli import main
from runtime import onnx_contract as contract
from runtime.triton import contract as tc
from tests.common import REPO

NAMES = tc.StepNames.of()


def _export(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["--to", "triton", *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _config(repo: Path, model: str) -> str:
    return (repo / model / "config.pbtxt").read_text()


def _validate_in(python: Path, repo: Path) -> str:
    proc = subprocess.run([str(python), "-m", "runtime.triton.config", str(repo)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_python_repository_is_complete(python_repository: Path) -> None:
    files = sorted(str(p.relative_to(python_repository)) for p in python_repository.rglob("*") if p.is_file())
    assert files == [
        ".maskrcnn-deploy-repository", "README.md", "maskrcnn/config.pbtxt", "maskrcnn_model/1/model.onnx", "maskrcnn_model/1/model.py",
        "maskrcnn_model/config.pbtxt", "maskrcnn_postprocess/1/model.py", "maskrcnn_postprocess/config.pbtxt",
        "maskrcnn_preprocess/1/model.py", "maskrcnn_preprocess/config.pbtxt",
    ]  # fmt: skip
    source = (REPO / "runtime" / "triton" / "python_model.py").read_bytes()
    assert all((python_repository / m / "1" / "model.py").read_bytes() == source
               for m in (NAMES.preprocess, NAMES.model, NAMES.postprocess))  # fmt: skip
    model = _config(python_repository, NAMES.model)
    # typed from the ONNX graph: dynamic H, W; K = 20 detections; [B] outputs reshaped; ragged batches
    for line in ('name: "images"', "dims: [ 3, -1, -1 ]", "allow_ragged_batch: true", "dims: [ 20, 28, 28 ]",
                 "max_batch_size: 4", "max_queue_delay_microseconds: 20000", "kind: KIND_CPU",
                 'key: "mrd_step"', f'string_value: "{REPO}"'):  # fmt: skip
        assert line in model, line
    assert (
        'name: "num_detections"\n  data_type: TYPE_INT64\n  dims: [ 1 ]\n  reshape {\n    shape: [ ]' in model
    )
    ensemble = _config(python_repository, NAMES.ensemble)
    assert 'platform: "ensemble"' in ensemble and "data_type: TYPE_STRING" in ensemble
    # box masks (the default): the regions' pixels and the regions
    assert 'name: "masks"\n  data_type: TYPE_UINT8\n  dims: [ -1 ]' in ensemble
    assert 'name: "mask_boxes"\n  data_type: TYPE_INT32\n  dims: [ -1, 4 ]' in ensemble
    readme = (python_repository / "README.md").read_text()
    assert "bash scripts/serve.sh" in readme and "Requests" in readme


def test_onnxruntime_and_tensorrt_repositories_validate(
    random_shapes_onnx: Path,
    random_shapes_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ort_repo, trt_repo = tmp_path / "ort_repository", tmp_path / "trt_repository"
    rc, out, err = _export(["--onnx", str(random_shapes_onnx), "--output", str(ort_repo), "--backend", "onnxruntime",
                            "--instances", "2", "--threads", "2", "--no-dynamic-batching"], capsys)  # fmt: skip
    assert rc == 0, err
    assert "4 config.pbtxt valid against Triton's model_config schema" in out
    model = _config(ort_repo, NAMES.model)
    assert 'backend: "onnxruntime"' in model and "kind: KIND_AUTO" in model and "count: 2" in model
    assert "dynamic_batching" not in model and "allow_ragged_batch" not in model
    assert 'key: "intra_op_thread_count"' in model
    assert (ort_repo / NAMES.model / "1" / "model.onnx").is_file()
    assert not (ort_repo / NAMES.model / "1" / "model.py").exists()

    # from weights: the trt flavor is exported, the engine cannot be built here (no TensorRT, no GPU)
    rc, out, err = _export(["--weights", str(random_shapes_checkpoint), "--output", str(trt_repo), "--backend",
                            "tensorrt", "--max-batch-size", "2", "--quiet"], capsys)  # fmt: skip
    assert rc == 0, err
    model = _config(trt_repo, NAMES.model)
    assert 'backend: "tensorrt"' in model and "kind: KIND_GPU" in model and "max_batch_size: 2" in model
    assert contract.read_metadata(trt_repo / NAMES.model / "model.onnx").flavor == "trt"
    readme = (trt_repo / "README.md").read_text()
    assert '--backend-config=tensorrt,plugins="/models/plugins/libmrd_trt_plugins_selfregister.so"' in readme
    if not (trt_repo / NAMES.model / "1" / "model.plan").exists():
        assert "model.plan is not built here" in readme and "trtexec --onnx=" in readme
        assert "maxShapes=images:2x3x" in readme  # the engine's profile covers the max batch size

    from runtime.triton.config import validate_repository

    pytest.importorskip("tritonclient", reason="validation in this environment needs tritonclient")
    for repo in (ort_repo, trt_repo):
        assert len(validate_repository(repo).configs) == 4


def test_validation_also_runs_in_the_serving_environment(
    serving_python: Path, python_repository: Path, tmp_path: Path, random_shapes_onnx: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Where this environment lacks tritonclient, the exporter validates with the serving environment's."""
    assert "4 config.pbtxt valid" in _validate_in(serving_python, python_repository)
    import runtime.triton.config as triton_config
    from runtime.triton.server import ENV_SERVING_PYTHON

    def no_schema() -> None:
        raise triton_config.SchemaUnavailable("no tritonclient here (simulated)")

    monkeypatch.setattr(triton_config, "model_config_module", no_schema)
    monkeypatch.setenv(ENV_SERVING_PYTHON, str(serving_python))
    repo = tmp_path / "repo"
    rc, out, err = _export(["--onnx", str(random_shapes_onnx), "--output", str(repo)], capsys)
    assert rc == 0, err
    assert f"(checked by {serving_python})" in out
    monkeypatch.setenv(ENV_SERVING_PYTHON, str(tmp_path / "no-python"))
    rc, out, err = _export(["--onnx", str(random_shapes_onnx), "--output", str(repo)], capsys)
    assert rc == 2 and "is written but not validated" in err and "pip install tritonclient" in err


def test_the_schema_and_the_wiring_catch_mistakes(python_repository: Path, tmp_path: Path) -> None:
    pytest.importorskip("tritonclient", reason="validation in this environment needs tritonclient")
    import shutil

    from runtime.triton.config import ConfigError, validate_repository

    repo = tmp_path / "repo"
    shutil.copytree(python_repository, repo, ignore=shutil.ignore_patterns("*.onnx"))
    model = repo / NAMES.model / "config.pbtxt"
    good = model.read_text()
    model.write_text(good.replace("max_batch_size: 4", "max_batch: 4"))
    with pytest.raises(ConfigError, match='maskrcnn_model/config.pbtxt: .*no field named "max_batch"'):
        validate_repository(repo)
    model.write_text(good.replace("data_type: TYPE_FP32", "data_type: TYPE_FLOAT32", 1))
    with pytest.raises(ConfigError, match="TYPE_FLOAT32"):
        validate_repository(repo)
    model.write_text(
        good.replace('name: "boxes"\n  data_type: TYPE_FP32', 'name: "boxes"\n  data_type: TYPE_FP16')
    )
    with pytest.raises(
        ConfigError, match="'network_boxes' is TYPE_FP16 but maskrcnn_postprocess's input 'boxes'"
    ):
        validate_repository(repo)
    model.write_text(good)
    ensemble = repo / NAMES.ensemble / "config.pbtxt"
    ensemble.write_text(
        ensemble.read_text().replace('model_name: "maskrcnn_postprocess"', 'model_name: "gone"')
    )
    with pytest.raises(ConfigError, match="runs 'gone', which is not in"):
        validate_repository(repo)


def test_names_with_quotes_and_unicode_survive_the_config(tmp_path: Path) -> None:
    pytest.importorskip("tritonclient", reason="validation in this environment needs tritonclient")
    from exporter.triton_repository import _parameters, to_pbtxt
    from runtime.triton.config import parse_config

    value = 'a "quoted" name, a back\\slash,\na new line and ünïcödé'
    text = to_pbtxt({"name": "x", "backend": "python", "parameters": _parameters({"class_names": value})})
    assert parse_config(text).parameters["class_names"].string_value == value


@pytest.mark.parametrize(
    "args, says",
    [
        (["--to", "onnx", "--weights", "w.pth", "--backend", "python"], "--backend: only with --to triton"),
        (
            ["--to", "onnx", "--weights", "w.pth", "--no-dynamic-batching"],
            "--no-dynamic-batching: only with --to",
        ),
        (["--to", "triton", "--onnx", "m.onnx", "--batch", "2"], "Triton batches requests itself"),
        (
            ["--to", "triton", "--onnx", "m.onnx", "--workspace", "64"],
            "only with --to tensorrt (or --to triton --backend tensorrt)",
        ),
        (["--to", "triton"], "--to triton needs --weights W.pth or --onnx M.onnx"),
    ],
)
def test_option_mistakes(
    args: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        main([*args, "--output", str(tmp_path / "out")])
    assert e.value.code == 2 and says in capsys.readouterr().err


def test_model_mistakes(random_shapes_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _export(
        ["--onnx", str(random_shapes_onnx), "--output", str(tmp_path / "r"), "--flavor", "trt"], capsys
    )
    assert (
        rc == 2
        and "is the ort flavor; --backend python needs trt" not in err
        and "runs the ort flavor" in err
    )
    rc, _, err = _export(["--onnx", str(random_shapes_onnx), "--output", str(tmp_path / "r"), "--max-batch-size", "0"],
                         capsys)  # fmt: skip
    assert rc == 2 and "--max-batch-size must be at least 1" in err
    rc, _, err = _export(["--onnx", str(tmp_path / "missing.onnx"), "--output", str(tmp_path / "r")], capsys)
    assert rc == 2 and "ONNX model not found" in err


def test_serve_sh_refuses_what_the_bundled_server_cannot_run(
    serving_python: Path, random_shapes_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    from runtime.triton.server import ENV_SERVING_PYTHON

    repo = tmp_path / "ort"
    assert _export(["--onnx", str(random_shapes_onnx), "--output", str(repo), "--backend", "onnxruntime",
                    "--quiet"], capsys)[0] == 0  # fmt: skip
    env = {**os.environ, ENV_SERVING_PYTHON: str(serving_python)}
    serve = ["bash", str(REPO / "scripts" / "serve.sh")]
    proc = subprocess.run([*serve, str(repo)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert "has only the Python backend, but maskrcnn_model (onnxruntime)" in proc.stderr
    assert "NVIDIA's Triton container" in proc.stderr
    proc = subprocess.run(serve, capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 2 and "usage: bash scripts/serve.sh MODEL_REPOSITORY" in proc.stderr
    proc = subprocess.run(
        [*serve, str(tmp_path / "nothing")], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 2 and "no such model repository" in proc.stderr
