"""The CPU variant of an exported repository on the real bundled tritonserver (started by scripts/serve.sh).

Detections over HTTP (here) and gRPC (``runtime.triton.serve_bench`` in the serving environment) equal the local
runtime's; the Predictor, ``runtime.webcam`` and ``runtime.evaluate`` take the server's URL; bad requests
get errors naming the problem and the server keeps answering, also after a client hangs up mid-request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from runtime import onnx_contract as contract
from runtime.image_io import read_image
from runtime.predictor import Predictor
from runtime.triton import contract as tc
from tests.common import REPO

pytest.importorskip(
    "tritonclient.http", reason="the HTTP client: pip install 'maskrcnn-deploy[triton-client]'"
)

from runtime.triton.client import (  # noqa: E402
    TritonClient,
    TritonClientError,
    compare_served,
    detections_from_response,
    encoded_image_input,
)

OUTPUTS = [
    contract.OUTPUT_BOXES,
    contract.OUTPUT_SCORES,
    contract.OUTPUT_LABELS,
    contract.OUTPUT_MASKS,
    tc.OUTPUT_MASK_BOXES,
]  # box masks (the default), put back into full ones by detections_from_response


def _local(random_shapes_onnx: Path, path: Path):
    """The local runtime's detections of an image file, masks thresholded as the server sends them."""
    with Predictor(random_shapes_onnx, confidence_threshold=0.0, threads=1) as pred:
        det = pred.predict(read_image(path))
    det.masks = (det.masks > tc.DEFAULT_MASK_THRESHOLD).astype(np.float32)
    return det


def _served(client: TritonClient, path: Path):
    response = client.infer(tc.DEFAULT_MODEL_NAME, encoded_image_input(path.read_bytes()), OUTPUTS)
    return detections_from_response(response, read_image(path).shape[:2])


def test_http_ensemble_equals_local_runtime(
    triton_server, serving_images: Path, random_shapes_onnx: Path
) -> None:
    client = TritonClient(triton_server.http_url)
    for path in sorted(serving_images.glob("*.png")):
        local, served = _local(random_shapes_onnx, path), _served(client, path)
        assert len(local) > 0
        assert compare_served(local, served) == [], path.name
        assert served.masks is not None and served.masks.shape == (len(local), *read_image(path).shape[:2])


def test_predictor_with_a_triton_url(triton_server, serving_images: Path, random_shapes_onnx: Path) -> None:
    """The Triton backend: the network on the server, pre/post-processing here; same raw outputs."""
    images = [read_image(p) for p in sorted(serving_images.glob("*.png"))]
    with (
        Predictor(random_shapes_onnx, confidence_threshold=0.0, threads=1) as local,
        Predictor(f"{triton_server.http_url}/{tc.DEFAULT_MODEL_NAME}", confidence_threshold=0.0) as remote,
    ):
        assert remote.backend.name == "triton" and remote.info.class_names == local.info.class_names
        assert remote.info.max_batch == 4
        for batch in ([images[0]], images[:2], [images[2]]):  # one image, a batch of two, another canvas
            a, b = local.run(batch), remote.run(batch)
            for ra, rb in zip(a.raw, b.raw):
                assert len(ra) == len(rb) > 0
                np.testing.assert_allclose(rb.boxes, ra.boxes, atol=1e-4)
                np.testing.assert_allclose(rb.scores, ra.scores, atol=1e-6)
                np.testing.assert_array_equal(rb.labels, ra.labels)
                np.testing.assert_allclose(rb.masks, ra.masks, atol=1e-6)


def test_grpc_serve_bench_in_the_serving_environment(
    triton_server, serving_python: Path, serving_images: Path, random_shapes_onnx: Path, tmp_path: Path
) -> None:
    """runtime.triton.serve_bench over gRPC at concurrency 1 and 3: every response checked against the local runtime."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [str(serving_python), "-m", "runtime.triton.serve_bench", "--url", triton_server.grpc_url, "--images",
         str(serving_images), "--concurrency", "1,3", "--requests", "6", "--warmup", "1", "--reference",
         str(random_shapes_onnx), "--threads", "1", "--json", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["checked"] and not any(report["checked"].values())
    assert [lv["concurrency"] for lv in report["levels"]] == [1, 3]
    for level in report["levels"]:
        assert level["errors"] == [] and level["mismatches"] == [] and len(level["latencies"]) == 6
        assert level["summary"]["images_per_s"] > 0
    assert "check: 3/3 images answered exactly as the local runtime" in proc.stdout


GRPC_BAD_INPUTS = r"""
import json, sys
import numpy as np
import tritonclient.grpc as g
client = g.InferenceServerClient(sys.argv[1])
def ask(model, name, array, dtype):
    i = g.InferInput(name, list(array.shape), dtype)
    i.set_data_from_numpy(array)
    try:
        r = client.infer(model, [i])
        return "ok %d" % r.as_numpy("scores").shape[1]
    except g.InferenceServerException as e:
        return str(e)
out = {
    "corrupt": ask("maskrcnn", "image", np.array([[b"not an image"]], dtype=object), "BYTES"),
    "dtype": ask("maskrcnn", "image", np.zeros((1, 1), np.float32), "FP32"),
    "unknown": ask("nope", "image", np.array([[b"x"]], dtype=object), "BYTES"),
    "valid": ask("maskrcnn", "image", np.array([[open(sys.argv[2], "rb").read()]], dtype=object), "BYTES"),
}
print(json.dumps(out))
"""


def test_concurrent_requests_get_their_one_image_answers(
    triton_server, serving_images: Path, random_shapes_onnx: Path
) -> None:
    """Requests that the dynamic batcher puts into one batch, of one canvas and of different canvases, get
    each image's answer alone in the local runtime (``runtime.canvas``); the server's statistics show that
    batches of several requests did run."""
    paths = sorted(serving_images.glob("*.png"))
    local = {p: _local(random_shapes_onnx, p) for p in paths}
    failures: list[str] = []

    def send(k: int) -> None:
        client = TritonClient(
            triton_server.http_url, timeout_s=60
        )  # its own connection, closed by its thread
        try:
            for i in range(4):  # bounded: 6 threads x 4 requests
                path = paths[(k + i) % len(paths)]
                try:
                    failures.extend(
                        f"{path.name}: {d}" for d in compare_served(local[path], _served(client, path))
                    )
                except Exception as e:  # noqa: BLE001 (reported below, not lost in a thread)
                    failures.append(f"{path.name}: {e}")
        finally:
            client.close()

    threads = [threading.Thread(target=send, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    client = TritonClient(triton_server.http_url, timeout_s=60)
    try:
        stats = client.client.get_inference_statistics(model_name=f"{tc.DEFAULT_MODEL_NAME}_{tc.STEP_MODEL}")
    finally:
        client.close()
    sizes = {int(b["batch_size"]) for m in stats["model_stats"] for b in m.get("batch_stats", [])}
    assert max(sizes) > 1, f"the requests were never batched (batch sizes {sorted(sizes)})"


def test_bad_requests_get_errors_and_the_server_keeps_answering(
    triton_server, serving_python: Path, serving_images: Path, random_shapes_onnx: Path
) -> None:
    from tests.runtime_fixtures import png_header_only

    client = TritonClient(triton_server.http_url)
    good = sorted(serving_images.glob("*.png"))[0]
    expected = _local(random_shapes_onnx, good)
    encoded = tc.INPUT_ENCODED_IMAGE
    cases = {
        "corrupt": (tc.DEFAULT_MODEL_NAME, encoded_image_input(b"\x89PNG but not really"), "corrupt or not a supported image"),
        "empty": (tc.DEFAULT_MODEL_NAME, encoded_image_input(b""), "empty file"),
        "huge": (tc.DEFAULT_MODEL_NAME, encoded_image_input(png_header_only(20000, 20000)),
                 "20000x20000 image (400 megapixels) is larger than the limit"),
        "dtype": (tc.DEFAULT_MODEL_NAME, {encoded: np.zeros((1, 1), np.float32)}, "data-type is 'FP32'"),
        "shape": (tc.DEFAULT_MODEL_NAME, {encoded: np.array([[b"a", b"b"]], dtype=object)}, "unexpected shape"),
        "two images": (tc.DEFAULT_MODEL_NAME, {encoded: np.array([[b"a"], [b"b"]], dtype=object)},
                       "one encoded image per request"),
        "unknown model": ("no_such_model", encoded_image_input(good.read_bytes()), "unknown model"),
        "network shapes": (f"{tc.DEFAULT_MODEL_NAME}_{tc.STEP_MODEL}",
                           {contract.INPUT_IMAGES: np.zeros((1, 3, 64, 64), np.float32),
                            contract.INPUT_IMAGE_SIZES: np.array([[80, 64]], np.int64)}, "must lie in [1, 64]"),
    }  # fmt: skip
    for name, (model, inputs, says) in cases.items():
        with pytest.raises(TritonClientError) as err:
            client.infer(
                model, inputs, OUTPUTS if model == tc.DEFAULT_MODEL_NAME else [contract.OUTPUT_BOXES]
            )
        assert says in str(err.value), f"{name}: {err.value}"
        assert compare_served(expected, _served(client, good)) == [], f"after {name}"

    proc = subprocess.run([str(serving_python), "-c", GRPC_BAD_INPUTS, triton_server.grpc_url.removeprefix("grpc://"),
                           str(good)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    grpc = json.loads(proc.stdout)
    assert "corrupt or not a supported image" in grpc["corrupt"] and "INVALID_ARGUMENT" in grpc["corrupt"]
    assert "data-type is 'FP32'" in grpc["dtype"]
    assert "NOT_FOUND" in grpc["unknown"] and "unknown model" in grpc["unknown"]
    assert grpc["valid"] == f"ok {len(expected)}"


def test_a_client_hanging_up_mid_request_costs_the_others_nothing(
    triton_server, serving_images: Path, random_shapes_onnx: Path
) -> None:
    """One client gives up after 1 ms (its connection closes mid-request) while another's request runs."""
    import tritonclient.http as http

    paths = sorted(serving_images.glob("*.png"))
    expected = [_local(random_shapes_onnx, p) for p in paths[:2]]
    results: list[object] = []

    def patient() -> None:
        client = TritonClient(triton_server.http_url)
        try:
            results.append([compare_served(e, _served(client, p)) for e, p in zip(expected, paths)])
        finally:
            client.close()  # an open keep-alive connection holds the server's shutdown for 30 s

    impatient = http.InferenceServerClient(
        triton_server.http_url.removeprefix("http://"), network_timeout=0.001
    )
    tensor = http.InferInput(tc.INPUT_ENCODED_IMAGE, [1, 1], "BYTES")
    tensor.set_data_from_numpy(encoded_image_input(paths[0].read_bytes())[tc.INPUT_ENCODED_IMAGE])
    worker = threading.Thread(target=patient)
    worker.start()
    hung_up = 0
    for _ in range(3):
        try:
            impatient.infer(tc.DEFAULT_MODEL_NAME, [tensor])
        except Exception:  # the client's timeout: it closes the connection before the answer
            hung_up += 1
    impatient.close()
    worker.join(120)
    assert hung_up >= 1
    assert results == [[[], []]]
    after = TritonClient(triton_server.http_url)
    try:
        assert compare_served(expected[1], _served(after, paths[1])) == []
    finally:
        after.close()


def test_webcam_and_evaluate_take_the_url(
    triton_server,
    serving_images: Path,
    random_shapes_checkpoint: Path,
    tiny_shapes: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from runtime.evaluate import main as evaluate
    from runtime.webcam import main as webcam

    url = f"{triton_server.http_url}/{tc.DEFAULT_MODEL_NAME}"
    out = tmp_path / "frames"
    assert webcam(["--model", url, "--input", str(serving_images), "--no-display", "--output", str(out),
                   "--confidence-threshold", "0.2"]) == 0  # fmt: skip
    assert len(list(out.glob("*.jpg"))) == len(list(serving_images.glob("*.png")))
    ann, _, images = tiny_shapes["val"].partition(".json:")
    rc = evaluate(["--model", url, "--reference", str(random_shapes_checkpoint), "--annotations", ann + ".json",
                   "--images", images, "--max-images", "2", "--threads", "1", "--no-progress"])  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "(triton)" in printed


def test_a_hostile_client_costs_the_good_ones_nothing(
    triton_server, serving_images: Path, random_shapes_onnx: Path
) -> None:
    """Good clients at concurrency 2 while a hostile client sends every class of the issue, one request in
    flight at a time: no good request is lost (refused, timed out or answered wrongly), every hostile one is
    refused by name, the legitimate thin strip is answered, and the server stays ready."""
    from runtime.canvas import largest_canvas
    from runtime.model_file import read_model_info
    from runtime.triton.serve_bench import run_serve_bench
    from tests.serving.hostile_clients import HostileClient, hostile_requests

    info = read_model_info(random_shapes_onnx)
    largest = max(largest_canvas(info.preprocess, info.static_input_size))
    client = TritonClient(triton_server.http_url, timeout_s=60)
    try:
        requests = hostile_requests(client, largest)
    finally:
        client.close()
    with HostileClient(triton_server.http_url, requests, max_requests=400) as hostile:
        report = run_serve_bench(triton_server.http_url, serving_images, concurrency=(2,), requests=30,
                                 warmup=0, reference=str(random_shapes_onnx), timeout_s=60, threads=1,
                                 progress=False)  # fmt: skip
        # every class at least once while the good clients ran
        deadline = time.monotonic() + 60
        while len(hostile.sent) < len(requests) and time.monotonic() < deadline:
            time.sleep(0.1)
    level = report.levels[0]
    assert report.ok, (report.checked, level.errors[:3], level.mismatches[:3])
    assert len(level.latencies) == 30
    assert set(hostile.sent) == {r.name for r in requests}, hostile.sent
    assert hostile.wrong == []
    after = TritonClient(triton_server.http_url)
    try:
        assert after.is_ready()
    finally:
        after.close()


def test_a_dead_step_is_restarted_by_the_watchdog(
    triton_server, python_repository: Path, serving_images: Path, random_shapes_onnx: Path
) -> None:
    """Since Triton 24.06 a killed Python stub stays dead while /v2/health/ready says 200 and every request
    to its step fails; serve.sh's watchdog restarts the server, which answers again (and still stops
    cleanly on SIGTERM: the fixture checks)."""
    from runtime.triton.server import stub_processes

    stubs = stub_processes(repository=python_repository)
    network = [pid for pid, model in stubs.items() if model == f"{tc.DEFAULT_MODEL_NAME}_{tc.STEP_MODEL}"]
    assert len(network) == 1, stubs
    path = sorted(serving_images.glob("*.png"))[0]
    expected = _local(random_shapes_onnx, path)
    os.kill(network[0], signal.SIGKILL)
    client = TritonClient(triton_server.http_url, timeout_s=30)
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                served = _served(client, path)
                break
            except TritonClientError:
                assert time.monotonic() < deadline, f"not answering 60 s after:\n{triton_server.log_tail()}"
                time.sleep(0.5)
        assert compare_served(expected, served) == []
    finally:
        client.close()
    says = f"the Python stub of {tc.DEFAULT_MODEL_NAME}_{tc.STEP_MODEL} died; restarting the server"
    assert says in triton_server.log_tail(400)
    assert network[0] not in stub_processes(repository=python_repository)
