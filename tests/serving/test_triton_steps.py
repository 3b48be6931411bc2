"""The Python-backend steps without Triton: they are runtime's own pre/post-processing and ONNX Runtime backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime import onnx_contract as contract
from runtime.image_io import ImageReadError, decode_image, encoded_image_size, read_image
from runtime.postprocess import postprocess
from runtime.preprocess import preprocess
from runtime.triton import contract as tc
from runtime.triton.steps import ModelStep, PostprocessStep, PreprocessStep, StepInputError, make_step
from tests.common import REPO
from tests.runtime_fixtures import make_image


def _png(seed: int = 0, h: int = 120, w: int = 160) -> bytes:
    return cv2.imencode(".png", make_image(seed, h, w))[1].tobytes()


@pytest.fixture(scope="module")
def model_step(random_shapes_onnx: Path) -> ModelStep:
    return ModelStep(random_shapes_onnx, threads=1)


def test_encoded_image_size_reads_headers_without_decoding() -> None:
    image = make_image(1, 97, 113)[:37, :53]
    for ext in (".png", ".jpg", ".bmp"):
        data = cv2.imencode(ext, image)[1].tobytes()
        assert encoded_image_size(data) == (37, 53), ext
        assert decode_image(data).shape == (37, 53, 3)
    assert encoded_image_size(b"GIF89a\x35\x00\x25\x00") == (37, 53)
    assert encoded_image_size(cv2.imencode(".tif", image)[1].tobytes()) == (37, 53)  # refused before decoding
    with pytest.raises(ImageReadError, match="larger than the limit of 0.001 megapixels"):
        decode_image(cv2.imencode(".tif", image)[1].tobytes(), "x", max_pixels=1000)


def test_preprocess_step_equals_runtime_preprocess(model_step: ModelStep, tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(_png())
    step = PreprocessStep(model_step.info)
    out = step.run_one({tc.INPUT_ENCODED_IMAGE: np.array([[path.read_bytes()]], dtype=object)})
    local = preprocess([read_image(path)], model_step.info.preprocess)
    np.testing.assert_array_equal(out[contract.INPUT_IMAGES], local.images)
    np.testing.assert_array_equal(out[contract.INPUT_IMAGE_SIZES], local.image_sizes)
    np.testing.assert_array_equal(out[tc.ORIGINAL_SIZES], [[120, 160]])


@pytest.mark.parametrize(
    "payload, says",
    [
        (np.array([[b""]], dtype=object), "empty file"),
        (np.array([[b"not an image"]], dtype=object), "corrupt or not a supported image format"),
        (np.array([[b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00N \x00\x00N \x01\x00\x00\x00\x00"]], dtype=object),
         "20000x20000 image (400 megapixels) is larger than the limit of 40 megapixels"),
        (np.array([[b"a"], [b"b"]], dtype=object), "one encoded image per request"),
        (np.array([["text"]], dtype=object), "expected the bytes of an image file, got str"),
    ],
    ids=["empty", "corrupt", "huge", "two", "not-bytes"],
)  # fmt: skip
def test_preprocess_step_names_bad_images(model_step: ModelStep, payload: np.ndarray, says: str) -> None:
    step = PreprocessStep(model_step.info)
    good = np.array([[_png()]], dtype=object)
    results = step.run([{tc.INPUT_ENCODED_IMAGE: payload}, {tc.INPUT_ENCODED_IMAGE: good}])
    assert isinstance(results[0], StepInputError) and says in str(results[0])
    assert isinstance(results[1], dict)  # the other request of the batch is answered


def test_model_step_runs_each_canvas_as_the_local_runtime(model_step: ModelStep) -> None:
    """A dynamic batch of mixed sizes: same-canvas requests run together, each gets what it gets alone."""
    params = model_step.info.preprocess
    batches = [
        preprocess([make_image(s, h, w)], params)
        for s, (h, w) in enumerate([(120, 160), (150, 112), (120, 160)])
    ]
    requests = [{contract.INPUT_IMAGES: b.images, contract.INPUT_IMAGE_SIZES: b.image_sizes} for b in batches]
    bad = {
        contract.INPUT_IMAGES: batches[0].images,
        contract.INPUT_IMAGE_SIZES: np.array([[999, 5]], np.int64),
    }
    # a client's own batch of two sizes on one canvas: each image still runs on its own canvas
    shared = preprocess([make_image(0, 120, 160), make_image(1, 150, 112)], params)
    mixed = {contract.INPUT_IMAGES: shared.images, contract.INPUT_IMAGE_SIZES: shared.image_sizes}
    results = model_step.run([*requests[:2], bad, requests[2], mixed])
    assert isinstance(results[2], StepInputError) and "must lie in" in str(results[2])
    mixed_result = results[4]
    assert isinstance(mixed_result, dict)
    for i in range(2):
        part = {name: value[i : i + 1] for name, value in mixed_result.items()}
        results.append(part)
    for request, result in zip(requests + requests[:2], [results[0], results[1], results[3], *results[5:]]):
        alone = model_step.infer(request[contract.INPUT_IMAGES], request[contract.INPUT_IMAGE_SIZES])
        assert isinstance(result, dict) and set(result) == set(alone)
        for name, value in alone.items():
            np.testing.assert_allclose(result[name], value, atol=1e-5, err_msg=name)


def test_postprocess_step_equals_runtime_postprocess(model_step: ModelStep) -> None:
    batch = preprocess([make_image(0)], model_step.info.preprocess)
    outputs = model_step.infer(batch.images, batch.image_sizes)
    raw = contract.outputs_to_raw(outputs)[0]
    threshold = float(np.median(raw.scores))  # half of the detections pass
    step = PostprocessStep(model_step.info, confidence_threshold=threshold)
    request = {
        **outputs,
        contract.INPUT_IMAGE_SIZES: batch.image_sizes,
        tc.ORIGINAL_SIZES: batch.original_sizes,
    }
    served = step.run_one(request)
    local = postprocess(
        raw, tuple(batch.image_sizes[0]), tuple(batch.original_sizes[0]), score_threshold=threshold
    )
    assert 0 < len(local) < len(raw)
    np.testing.assert_array_equal(served[contract.OUTPUT_BOXES][0], local.boxes)
    np.testing.assert_array_equal(served[contract.OUTPUT_SCORES][0], local.scores)
    np.testing.assert_array_equal(served[contract.OUTPUT_LABELS][0], local.labels)
    assert served[contract.OUTPUT_MASKS].dtype == np.uint8
    np.testing.assert_array_equal(served[contract.OUTPUT_MASKS][0], local.masks > 0.5)
    bad = {**request, contract.OUTPUT_NUM_DETECTIONS: np.array([[99]], np.int64)}
    assert "outside [0, 20]" in str(step.run([bad])[0])


def test_make_step_from_the_config_triton_hands_over(python_repository: Path) -> None:
    """initialize() gets the config as JSON: each step of the exported repository builds from it."""
    pytest.importorskip("tritonclient", reason="config.pbtxt parsing needs tritonclient")
    from google.protobuf import json_format

    from runtime.triton.config import parse_config

    kinds = {}
    for model_dir in sorted(p for p in python_repository.iterdir() if p.is_dir()):
        config = parse_config((model_dir / "config.pbtxt").read_text())
        if config.platform == "ensemble":
            continue
        as_json = json_format.MessageToJson(config, preserving_proto_field_name=True)
        kinds[model_dir.name] = type(make_step(json.loads(as_json), model_dir, "1")).__name__
    assert kinds == {"maskrcnn_model": "ModelStep", "maskrcnn_postprocess": "PostprocessStep",
                     "maskrcnn_preprocess": "PreprocessStep"}  # fmt: skip
    with pytest.raises(ValueError, match="mrd_step is 'nope'"):
        make_step({"name": "x", "parameters": {tc.PARAM_STEP: {"string_value": "nope"}}}, python_repository)


def test_model_py_bootstrap_key_is_the_contracts() -> None:
    text = (REPO / "runtime" / "triton" / "python_model.py").read_text()
    assert f'RUNTIME_PATH_PARAMETER = "{tc.PARAM_RUNTIME_PATH}"' in text


@pytest.mark.parametrize(
    "url, expected",
    [
        ("grpc://host:9001/m", ("grpc", "host:9001", "m")),
        ("http://localhost:8000/maskrcnn/", ("http", "localhost:8000", "maskrcnn")),
        ("localhost:8001", ("grpc", "localhost:8001", None)),
        ("http://server", ("http", "server:8000", None)),
    ],
)
def test_triton_urls(url: str, expected: tuple[str, str, str | None]) -> None:
    from runtime.triton.client import parse_url

    parsed = parse_url(url)
    assert (parsed.protocol, parsed.address, parsed.model) == expected
    with pytest.raises(ValueError, match="unknown protocol"):
        parse_url("ftp://x:1")


def test_serving_modules_import_without_torch_or_tritonclient(tmp_path: Path) -> None:
    """Deployable code: runtime's serving modules import with torch blocked, and tritonclient only when used."""
    from tests.runtime.test_light_import import BLOCKER

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    check = (
        "import sys\n"
        "import runtime.triton.contract, runtime.triton.steps, runtime.triton.client, runtime.triton.config\n"
        "import runtime.triton.server, runtime.triton.serve_bench, runtime.backends.triton_backend, runtime.model_file\n"
        "assert runtime.model_file.backend_for('grpc://h:1/m') == 'triton'\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorrt', 'trainer', 'exporter', 'tritonclient'))\n"
        "assert not bad, bad\n"
        "print('SERVING-LIGHT-OK')\n"
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    proc = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "SERVING-LIGHT-OK" in proc.stdout, proc.stdout + proc.stderr


def test_steps_refuse_inputs_beyond_the_exports_limits(model_step: ModelStep) -> None:
    """A [1,3,3000,3000] canvas ran for seconds on the network step, and a few KB of sizes asking for
    16000x16000 masks took the postprocess step from 0.28 to 2.16 GB; both are now refused by name."""
    from runtime.canvas import largest_canvas

    params = model_step.info.preprocess
    limit = largest_canvas(params, model_step.info.static_input_size)
    assert limit == (192, 192)  # the test model resizes to at most 192 a side (a multiple of 32)
    huge = {contract.INPUT_IMAGES: np.zeros((1, 3, 3008, 3008), np.float32),
            contract.INPUT_IMAGE_SIZES: np.array([[3000, 3000]], np.int64)}  # fmt: skip
    doubles = {contract.INPUT_IMAGES: np.zeros((1, 3, 64, 64), np.float64),
               contract.INPUT_IMAGE_SIZES: np.array([[64, 64]], np.int64)}  # fmt: skip
    out = model_step.run([huge, doubles])
    assert "a 3008x3008 canvas is beyond this model's largest, 192x192" in str(out[0])
    assert "expected float32 images" in str(out[1])

    batch = preprocess([make_image(0)], params)
    outputs = model_step.infer(batch.images, batch.image_sizes)
    step = PostprocessStep(model_step.info)
    good = {**outputs, contract.INPUT_IMAGE_SIZES: batch.image_sizes, tc.ORIGINAL_SIZES: batch.original_sizes}
    bombs = [
        {**good, tc.ORIGINAL_SIZES: np.array([[16000, 16000]], np.int64)},
        {**good, tc.ORIGINAL_SIZES: np.array([[100, 500]], np.int64)},  # not what these sizes come from
    ]
    results = step.run([*bombs, good])
    assert "within the limit of 40000000 pixels" in str(results[0])
    assert "is not what this model resizes a 100x500 image to" in str(results[1])
    assert isinstance(results[2], dict)


def test_one_requests_failure_of_any_kind_fails_only_that_request(
    model_step: ModelStep, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only StepInputError used to be answered per request: any other exception failed the whole batch."""
    from runtime.triton.steps import StepFailure

    params = model_step.info.preprocess
    batches = [preprocess([make_image(s, 120, 160)], params) for s in range(3)]
    requests = [{contract.INPUT_IMAGES: b.images, contract.INPUT_IMAGE_SIZES: b.image_sizes} for b in batches]
    poisoned = batches[1].images[0, 0, 5, 5]
    real_infer = model_step.infer

    def infer(images: np.ndarray, sizes: np.ndarray):  # noqa: ANN202
        if (images[:, 0, 5, 5] == poisoned).any():
            raise MemoryError("simulated")
        return real_infer(images, sizes)

    monkeypatch.setattr(model_step, "infer", infer)
    results = model_step.run(requests)  # one canvas: one batch, then image by image after the failure
    assert isinstance(results[1], StepFailure) and "MemoryError: simulated" in str(results[1])
    for i in (0, 2):
        alone = real_infer(batches[i].images, batches[i].image_sizes)
        assert isinstance(results[i], dict)
        np.testing.assert_array_equal(results[i][contract.OUTPUT_BOXES], alone[contract.OUTPUT_BOXES])

    step = PostprocessStep(model_step.info)
    monkeypatch.setattr(step, "run_one", lambda request: 1 / 0)
    assert isinstance(step.run([{}])[0], StepFailure)


def test_generated_configs_bound_their_queues(python_repository: Path) -> None:
    for name in ("maskrcnn_preprocess", "maskrcnn_model", "maskrcnn_postprocess"):
        text = (python_repository / name / "config.pbtxt").read_text()
        assert "default_queue_policy" in text and "max_queue_size: 64" in text, name
        assert "timeout_action: REJECT" in text and "default_timeout_microseconds: 30000000" in text, name


def test_the_bundled_server_listens_on_loopback_unless_told(python_repository: Path) -> None:
    from runtime.triton.server import LOOPBACK, server_command

    class Fake:
        executable = Path("/bin/true")

    cmd = server_command(Fake(), python_repository, backend_directory="/tmp")  # type: ignore[arg-type]
    assert f"--http-address={LOOPBACK}" in cmd and f"--grpc-address={LOOPBACK}" in cmd
    everywhere = server_command(Fake(), python_repository, backend_directory="/tmp", address="0.0.0.0")  # type: ignore[arg-type]
    assert "--http-address=0.0.0.0" in everywhere


def test_box_masks_give_the_full_masks_back_exactly(model_step: ModelStep) -> None:
    """Full-image masks grow with the image (a 40 MP photo with 100 detections: 4 GB); box masks with the
    objects, and the client puts them back bit for bit."""
    from runtime.triton.client import detections_from_response

    batch = preprocess([make_image(0)], model_step.info.preprocess)
    outputs = model_step.infer(batch.images, batch.image_sizes)
    request = {
        **outputs,
        contract.INPUT_IMAGE_SIZES: batch.image_sizes,
        tc.ORIGINAL_SIZES: batch.original_sizes,
    }
    full = PostprocessStep(model_step.info, mask_format="full").run_one(request)
    box = PostprocessStep(model_step.info, mask_format="box").run_one(request)
    size = tuple(int(v) for v in batch.original_sizes[0])
    assert box[contract.OUTPUT_MASKS].nbytes < full[contract.OUTPUT_MASKS].nbytes / 4
    assert box[tc.OUTPUT_MASK_BOXES].shape == (1, full[contract.OUTPUT_MASKS].shape[1], 4)
    restored = detections_from_response(box, size)
    np.testing.assert_array_equal(restored.masks, full[contract.OUTPUT_MASKS][0].astype(np.float32))
    assert (full[contract.OUTPUT_MASKS][0].sum(axis=(1, 2)) > 0).any()
    masks = np.zeros((3, 7, 9), np.uint8)
    masks[0, 2:4, 3:8] = 1
    masks[2, 6, 0] = 1  # one pixel in a corner; mask 1 empty
    pixels, regions = tc.pack_masks(masks)
    assert regions.tolist() == [[3, 2, 8, 4], [0, 0, 0, 0], [0, 6, 1, 7]] and pixels.size == 11
    np.testing.assert_array_equal(tc.unpack_masks(pixels, regions, (7, 9)), masks)
    with pytest.raises(ValueError, match="outside the 9x7 image"):
        tc.unpack_masks(pixels, regions + 10, (7, 9))
    with pytest.raises(ValueError, match="belong to no region"):
        tc.unpack_masks(np.concatenate([pixels, [1]]), regions, (7, 9))


def test_a_refused_request_leaves_no_reference_to_its_inputs(model_step: ModelStep) -> None:
    """A refusal kept its exception's traceback, whose frames held the request's arrays (shared memory in
    Triton) in a reference cycle: each refused 108 MB canvas grew the served step by 108 MB until a garbage
    collection. With collection off, the inputs must be gone as soon as the answers are."""
    import gc
    import weakref

    canvas = np.zeros((1, 3, 256, 256), np.float32)  # beyond the test model's 192
    image = np.frombuffer(b"\x89PNG but not really", np.uint8).copy()
    refs = [weakref.ref(canvas), weakref.ref(image)]
    gc.disable()
    try:
        answers = model_step.run(
            [{contract.INPUT_IMAGES: canvas, contract.INPUT_IMAGE_SIZES: np.array([[256, 256]])}]
        )
        answers += PreprocessStep(model_step.info).run(
            [{tc.INPUT_ENCODED_IMAGE: np.array([[image.tobytes()]], dtype=object)}]
        )
        assert all(isinstance(a, StepInputError) for a in answers), answers
        del canvas, image, answers
        assert [r() for r in refs] == [None, None]
    finally:
        gc.enable()
