"""A Triton Inference Server as a backend: the network runs on the server, everything else here.

``Predictor("grpc://HOST:8001/maskrcnn")`` (or ``http://HOST:8000/...``; ``--model URL`` in
``runtime.webcam`` and ``runtime.evaluate``) sends the ONNX contract's inputs, pre-processed by the local
``runtime.preprocess``, to the network step of a repository written by ``python -m exporter --to triton``
and gets the contract's outputs back, which the local ``runtime.postprocess`` finishes: the same
pre/post-processing as every other backend, so results compare detection by detection. The model's
:class:`ModelInfo` comes from the step's config parameters; its ``max_batch_size`` bounds each call.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from runtime import onnx_contract as contract
from runtime.backends.base import Backend, BackendError, BackendUnavailable, check_batch
from runtime.onnx_contract import ModelInfo
from runtime.preprocess import PreprocessedBatch
from runtime.structures import RawDetections
from runtime.triton import contract as tc
from runtime.triton.client import TritonClient, TritonClientError, TritonClientUnavailable, parse_url

#: seconds a request may take, queue included, before the client gives up (``timeout=None``: no deadline)
DEFAULT_TIMEOUT_S = 60.0


class TritonBackend(Backend):
    """The network step of an exported Triton repository, by URL; the model may be its ensemble's name."""

    name = "triton"
    OPTIONS = ("model_name", "protocol", "timeout")

    def __init__(
        self,
        model_path: str,
        device: str = "cpu",
        model_name: str | None = None,
        protocol: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        try:
            self.url = parse_url(str(model_path), protocol)
        except ValueError as e:
            raise BackendError(str(e)) from None
        super().__init__(str(self.url), device)
        try:
            self.client = TritonClient(self.url, timeout)
        except TritonClientUnavailable as e:
            raise BackendUnavailable(str(e)) from None
        except TritonClientError as e:
            raise BackendError(str(e)) from None
        requested = model_name or self.url.model or tc.DEFAULT_MODEL_NAME
        self.model_name, config = self._network_step(requested)
        params = tc.config_parameters(config)
        try:
            info = tc.info_from_parameters(params, int(config.get("max_batch_size", 0)),
                                           f"{self.url.address}/{self.model_name}")  # fmt: skip
        except contract.ContractError as e:
            raise BackendError(
                f"{e} (is {self.model_name} a model exported by `python -m exporter --to triton`?)"
            ) from None
        static = self._static_size(config)
        self._info: ModelInfo = replace(info, static_input_size=info.static_input_size or static)
        self._outputs = [str(o["name"]) for o in config.get("output", [])]

    def _network_step(self, name: str) -> tuple[str, dict[str, Any]]:
        """``name``'s config, or for an ensemble, its step that takes the ONNX contract's inputs."""
        try:
            config = self.client.model_config(name)
            if config.get("platform") != "ensemble":
                return name, config
            for step in config.get("ensemble_scheduling", {}).get("step", []):
                step_config = self.client.model_config(step["model_name"])
                if {t["name"] for t in step_config.get("input", [])} == set(contract.INPUT_NAMES):
                    return str(step["model_name"]), step_config
        except TritonClientError as e:
            try:
                known = ", ".join(self.client.models()) or "none"
            except TritonClientError:
                raise BackendError(str(e)) from None
            raise BackendError(f"{e} (models on {self.url.address}: {known})") from None
        raise BackendError(
            f"ensemble {name} on {self.url.address} has no step taking {list(contract.INPUT_NAMES)}"
        )

    @staticmethod
    def _static_size(config: dict[str, Any]) -> tuple[int, int] | None:
        for tensor in config.get("input", []):
            if (
                tensor["name"] == contract.INPUT_IMAGES
                and len(tensor["dims"]) == 3
                and min(tensor["dims"][1:]) > 0
            ):
                return int(tensor["dims"][1]), int(tensor["dims"][2])
        return None

    @property
    def info(self) -> ModelInfo:
        return self._info

    def infer(self, batch: PreprocessedBatch) -> list[RawDetections]:
        check_batch(batch, self._info, self.model_path)
        feeds = {contract.INPUT_IMAGES: batch.images, contract.INPUT_IMAGE_SIZES: batch.image_sizes}
        try:
            outputs = self.client.infer(self.model_name, feeds, self._outputs)
        except TritonClientError as e:
            raise BackendError(str(e)) from None
        return contract.outputs_to_raw(outputs, self.info.output_convention)

    def close(self) -> None:
        self.client.close()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"url": str(self.url), "model": self.model_name, "protocol": self.url.protocol})
        return d
