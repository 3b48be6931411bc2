"""A hostile client of a served repository: every class of request the hostile-server issue found, one in
flight at a time, each expected to be refused by name (or, for the legitimate thin strip, answered).

Used by the serving test (against the bundled server, while good clients run) and by
``benchmarks/hostile_server.py`` (which times the good clients with and without it).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from runtime import onnx_contract as contract
from runtime.triton import contract as tc
from runtime.triton.client import TritonClient, TritonClientError, encoded_image_input
from tests.runtime.test_image_io import HOSTILE


@dataclass(frozen=True)
class HostileRequest:
    """One request: the model it goes to, its inputs, the outputs it asks for, and the words its refusal
    must contain (None: a legitimate request that must be answered)."""

    name: str
    model: str
    inputs: dict[str, np.ndarray]
    outputs: tuple[str, ...]
    says: str | None


def hostile_requests(
    client: TritonClient, largest: int, base: str = tc.DEFAULT_MODEL_NAME, canvas_side: int | None = None
) -> list[HostileRequest]:
    """The classes of the issue against the repository ``client`` serves (its ensemble ``base``), whose
    network accepts canvases up to ``largest`` a side.

    The canvas sent is ``canvas_side`` a side (default twice the largest); the postprocess request carries a real network answer with sizes
    asking for 16000x16000 masks.
    """
    model_step = f"{base}_{tc.STEP_MODEL}"
    post_step = f"{base}_{tc.STEP_POSTPROCESS}"
    config = client.model_config(model_step)
    side = canvas_side or 2 * largest
    canvas = {
        contract.INPUT_IMAGES: np.zeros((1, 3, side, side), np.float32),
        contract.INPUT_IMAGE_SIZES: np.array([[side, side]], np.int64),
    }
    small = {
        contract.INPUT_IMAGES: np.zeros((1, 3, 64, 64), np.float32),
        contract.INPUT_IMAGE_SIZES: np.array([[64, 64]], np.int64),
    }
    network_outputs = tuple(str(o["name"]) for o in config["output"])
    raw = client.infer(model_step, small, network_outputs)
    post_config = client.model_config(post_step)
    post_inputs = [str(i["name"]) for i in post_config["input"]]
    post_outputs = tuple(str(o["name"]) for o in post_config["output"])
    bomb = {k: v for k, v in raw.items() if k in post_inputs}
    bomb[contract.INPUT_IMAGE_SIZES] = small[contract.INPUT_IMAGE_SIZES]
    bomb[tc.ORIGINAL_SIZES] = np.array([[16000, 16000]], np.int64)
    ensemble_outputs = tuple(str(o["name"]) for o in client.model_config(base)["output"])
    strip = cv2.imencode(".png", np.full((2, 4000, 3), 128, np.uint8))[1].tobytes()

    def image(key: str, says: str) -> HostileRequest:
        return HostileRequest(key, base, encoded_image_input(HOSTILE[key][0]), ensemble_outputs, says)

    return [
        image("ppm 40000x40000", "40000x40000 image (1600 megapixels) is larger than the limit"),
        image("jpeg fill byte 12000x12000", "12000x12000 image (144 megapixels)"),
        image("tiff 8000x8000", "8000x8000 image (64 megapixels)"),
        HostileRequest(
            "corrupt bytes",
            base,
            encoded_image_input(b"\x89PNG but not really"),
            ensemble_outputs,
            "corrupt or not a supported image",
        ),  # fmt: skip
        HostileRequest(
            f"{side}x{side} canvas to the network step",
            model_step,
            canvas,
            network_outputs,
            "beyond this model's largest",
        ),  # fmt: skip
        HostileRequest(
            "float16 canvas to the network step",
            model_step,
            {**small, contract.INPUT_IMAGES: small[contract.INPUT_IMAGES].astype(np.float16)},
            network_outputs,
            "FP16",
        ),  # fmt: skip
        HostileRequest(
            "16000x16000 original_sizes to the postprocess step",
            post_step,
            bomb,
            post_outputs,
            "not an image size within the limit",
        ),  # fmt: skip
        HostileRequest("legitimate 2x4000 strip", base, encoded_image_input(strip), ensemble_outputs, None),
    ]


@dataclass
class HostileClient:
    """Sends the requests in turn, one in flight at a time, until stopped or ``max_requests`` were sent."""

    url: str
    requests: list[HostileRequest]
    max_requests: int = 10_000
    timeout_s: float = 60.0
    sent: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)  # a refusal that did not say why, or a bomb answered
    seconds: dict[str, float] = field(default_factory=dict)  # the slowest answer per class
    cpu_s: float = 0.0  # CPU time the hostile client itself used (on one machine, the server's to lose)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def run(self) -> None:
        client = TritonClient(self.url, timeout_s=self.timeout_s)
        started_cpu = time.thread_time()
        try:
            for i in range(self.max_requests):
                if self._stop.is_set():
                    break
                request = self.requests[i % len(self.requests)]
                self.sent[request.name] += 1
                started = time.monotonic()
                outcome = self._send(client, request)
                elapsed = time.monotonic() - started
                self.seconds[request.name] = max(self.seconds.get(request.name, 0.0), elapsed)
                if outcome is not None and len(self.wrong) < 50:
                    self.wrong.append(f"{request.name}: {outcome}")
        finally:
            self.cpu_s = time.thread_time() - started_cpu
            client.close()

    @staticmethod
    def _send(client: TritonClient, request: HostileRequest) -> str | None:
        """None when the server did what it must, else what it did."""
        try:
            client.infer(request.model, request.inputs, request.outputs)
        except TritonClientError as e:
            if request.says is None:
                return f"a legitimate request was refused: {e}"
            return None if request.says in str(e) else f"refused without saying {request.says!r}: {e}"
        except Exception as e:  # the client library itself failed: the attack is not what it claims
            return f"not sent: {type(e).__name__}: {e}"
        return None if request.says is None else "answered instead of refused"

    def start(self) -> HostileClient:
        self._thread = threading.Thread(target=self.run, name="hostile-client", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 120.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def __enter__(self) -> HostileClient:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
