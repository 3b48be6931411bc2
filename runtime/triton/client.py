"""Talking to a Triton server over HTTP or gRPC, one way for the Predictor's backend and ``runtime.triton.serve_bench``.

URLs: ``grpc://HOST:PORT[/MODEL]``, ``http://HOST:PORT[/MODEL]``, or ``HOST:PORT[/MODEL]`` (gRPC, as
Triton's port 8001 speaks). ``tritonclient`` is imported only here and only when a client is made: the main
environment has its HTTP client (``pip install 'maskrcnn-deploy[triton-client]'``), the serving
environment both.
"""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime import onnx_contract as contract
from runtime.structures import Detections
from runtime.triton import contract as tc

PROTOCOLS = ("grpc", "http")
URL_SCHEMES = tuple(f"{p}://" for p in PROTOCOLS)


class TritonClientError(RuntimeError):
    """The server refused a request or cannot be reached; the message is the server's (or the socket's)."""


class TritonClientUnavailable(ImportError):
    """tritonclient (or its extra for the protocol) is not installed here."""


def is_triton_url(text: object) -> bool:
    return isinstance(text, str) and text.lower().startswith(URL_SCHEMES)


@dataclass(frozen=True)
class TritonURL:
    protocol: str  # "grpc" or "http"
    address: str  # host:port
    model: str | None = None

    def __str__(self) -> str:
        return f"{self.protocol}://{self.address}" + (f"/{self.model}" if self.model else "")


def parse_url(url: str, protocol: str | None = None) -> TritonURL:
    """``grpc://host:8001/maskrcnn`` -> TritonURL("grpc", "host:8001", "maskrcnn"); no scheme means gRPC."""
    m = re.fullmatch(r"(?:(?P<scheme>[a-zA-Z]+)://)?(?P<address>[^/]+)(?:/(?P<model>[^/]*))?/?", url.strip())
    if not m:
        raise ValueError(
            f"not a Triton URL: {url!r}; use grpc://HOST:PORT[/MODEL] or http://HOST:PORT[/MODEL]"
        )
    scheme = (m.group("scheme") or protocol or "grpc").lower()
    if protocol is not None and m.group("scheme") and protocol.lower() != scheme:
        raise ValueError(f"{url} is {scheme}, but protocol {protocol} was asked for")
    if scheme not in PROTOCOLS:
        raise ValueError(f"unknown protocol {scheme!r} in {url}; use grpc:// or http://")
    address = m.group("address")
    if ":" not in address:
        address += ":8001" if scheme == "grpc" else ":8000"
    return TritonURL(scheme, address, m.group("model") or None)


def _module(protocol: str) -> Any:
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except (ImportError, RuntimeError) as e:  # tritonclient.grpc raises RuntimeError without grpcio
        extra = "grpc" if protocol == "grpc" else "http"
        hint = (
            " (or use http://HOST:8000: the main environment has the HTTP client)"
            if protocol == "grpc"
            else ""
        )
        raise TritonClientUnavailable(
            f"the Triton {protocol} client is not installed ({e}): pip install 'tritonclient[{extra}]', or run "
            f"in the serving environment (bash scripts/setup_serving.sh){hint}"
        ) from None
    return module


class TritonClient:
    """A client of one server; each thread that uses it gets its own connection (tritonclient's HTTP client
    runs on gevent, whose sockets must stay in the thread that made them)."""

    def __init__(self, url: TritonURL | str, timeout_s: float | None = None) -> None:
        self.url = parse_url(url) if isinstance(url, str) else url
        self.module = _module(self.url.protocol)
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self.client  # noqa: B018 (connect now, so a bad address fails here)

    @property
    def client(self) -> Any:
        """This thread's ``tritonclient`` client."""
        client = getattr(self._local, "client", None)
        if client is None:
            kwargs: dict[str, Any] = {}
            if self.url.protocol == "http" and self.timeout_s is not None:
                kwargs = {"connection_timeout": self.timeout_s, "network_timeout": self.timeout_s}
            try:
                client = self.module.InferenceServerClient(self.url.address, **kwargs)
            except Exception as e:
                raise TritonClientError(f"cannot connect to Triton at {self.url}: {e}") from None
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self.module.InferenceServerException as e:
            raise TritonClientError(f"{what}: {e}") from None
        except (OSError, ConnectionError, http.client.HTTPException) as e:
            # HTTPException: geventhttpclient's "connection closed" when the server went away mid-request
            raise TritonClientError(
                f"{what}: cannot reach Triton at {self.url}: {type(e).__name__}: {e}"
            ) from None

    def model_config(self, model: str) -> dict[str, Any]:
        """A model's config as a plain dict (gRPC's JSON form normalized: dims and sizes as ints)."""
        if self.url.protocol == "grpc":
            config = self._call(f"config of {model!r}", self.client.get_model_config, model, as_json=True)
            return _ints(dict(config.get("config", config)))
        result: dict[str, Any] = self._call(f"config of {model!r}", self.client.get_model_config, model)
        return result

    def models(self) -> list[str]:
        index = self._call("model index", self.client.get_model_repository_index)
        if self.url.protocol == "grpc":
            return [m.name for m in index.models]
        return [str(m["name"]) for m in index]

    def is_ready(self) -> bool:
        try:
            return bool(self.client.is_server_ready())
        except Exception:
            return False

    def infer(
        self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Run ``model`` on named numpy inputs; the named outputs as numpy arrays."""
        feeds = []
        for name, value in inputs.items():
            array = np.asarray(value)
            tensor = self.module.InferInput(name, list(array.shape), tc.wire_datatype(array.dtype))
            tensor.set_data_from_numpy(array)
            feeds.append(tensor)
        wanted = [self.module.InferRequestedOutput(name) for name in outputs]
        kwargs: dict[str, Any] = {}
        if self.timeout_s is not None:
            # the server drops the request once it has queued this long (the repository's queue policy allows
            # the override); the client stops waiting at the same deadline
            kwargs["timeout"] = int(self.timeout_s * 1e6)
            if self.url.protocol == "grpc":
                kwargs["client_timeout"] = self.timeout_s
        result = self._call(
            f"inference of {model!r}", self.client.infer, model, feeds, outputs=wanted, **kwargs
        )
        return {name: result.as_numpy(name) for name in outputs}

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:  # a gevent client closed from another thread than its own
                pass
        self._local = threading.local()


def _ints(config: dict[str, Any]) -> dict[str, Any]:
    """gRPC's JSON config writes int64 fields (dims, max_batch_size) as strings; make them ints again."""
    for key in ("input", "output"):
        for tensor in config.get(key, []):
            tensor["dims"] = [int(d) for d in tensor.get("dims", [])]
    config["max_batch_size"] = int(config.get("max_batch_size", 0))
    return config


def encoded_image_input(data: bytes) -> dict[str, np.ndarray]:
    """The ensemble's input for one image file's bytes: BYTES [1, 1]."""
    return {tc.INPUT_ENCODED_IMAGE: np.array([[bytes(data)]], dtype=object)}


def ensemble_outputs(config: Mapping[str, Any]) -> list[str]:
    return [str(o["name"]) for o in config.get("output", [])]


def detections_from_response(
    response: Mapping[str, np.ndarray], image_size: tuple[int, int], class_names: Sequence[str] = ()
) -> Detections:
    """The ensemble's response for one image as :class:`Detections` (masks 0/1 as float32, [N, H, W]; box
    masks are put back into full ones, exactly)."""
    masks = response.get(contract.OUTPUT_MASKS)
    regions = response.get(tc.OUTPUT_MASK_BOXES)
    if masks is not None and regions is not None:
        masks = tc.unpack_masks(masks[0], regions[0], image_size)[None]
    keypoints = response.get(tc.OUTPUT_KEYPOINTS)
    return Detections(
        boxes=np.asarray(response[contract.OUTPUT_BOXES], np.float32)[0],
        scores=np.asarray(response[contract.OUTPUT_SCORES], np.float32)[0],
        labels=np.asarray(response[contract.OUTPUT_LABELS], np.int64)[0],
        image_size=(int(image_size[0]), int(image_size[1])),
        masks=None if masks is None else np.asarray(masks[0], np.float32),
        keypoints=None if keypoints is None else np.asarray(keypoints[0], np.float32),
        class_names=list(class_names),
    )


def compare_served(
    local: Detections,
    served: Detections,
    box_tol: float = 1e-4,
    score_tol: float = 1e-5,
    mask_threshold: float = tc.DEFAULT_MASK_THRESHOLD,
) -> list[str]:
    """How a served response differs from the local runtime's detections of the same image ([] if equal).

    Both come from the same network and the same pre/post-processing code, in the same order (by score):
    counts and labels must be equal, boxes within ``box_tol`` px, scores within ``score_tol``, and the served
    0/1 masks equal to the local probabilities thresholded at ``mask_threshold``, pixel for pixel.
    """
    problems = []
    if len(local) != len(served):
        return [f"{len(served)} detections served, {len(local)} local"]
    if len(local) == 0:
        return []
    if not np.array_equal(local.labels, served.labels):
        problems.append(f"labels differ: {served.labels.tolist()} vs {local.labels.tolist()}")
    box = float(np.abs(local.boxes - served.boxes).max())
    if box > box_tol:
        problems.append(f"boxes differ by up to {box:.3g} px")
    score = float(np.abs(local.scores - served.scores).max())
    if score > score_tol:
        problems.append(f"scores differ by up to {score:.3g}")
    if (local.masks is None) != (served.masks is None):
        problems.append("masks on one side only")
    elif local.masks is not None and served.masks is not None:
        if local.masks.shape != served.masks.shape:
            problems.append(f"masks of shape {list(served.masks.shape)} vs {list(local.masks.shape)}")
        else:
            differ = int(np.count_nonzero((local.masks > mask_threshold) != (served.masks > 0.5)))
            if differ:
                problems.append(f"{differ} mask pixels differ")
    return problems
