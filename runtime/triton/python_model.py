"""The ``model.py`` of every Python-backend step of an exported Triton repository (copied there by the exporter).

It only moves tensors between Triton and :mod:`runtime.triton.steps`, which is ``runtime``'s own
pre-processing, ONNX Runtime backend and post-processing; which step a model is comes from its config's
``mrd_step`` parameter. ``runtime`` is imported from the Python the Triton Python backend runs (install
maskrcnn-deploy there: ``bash scripts/setup_serving.sh`` does), else from the checkout the exporter ran
from, whose path the config records (``mrd_runtime_path``). It needs no torch.

A request the step cannot answer (a corrupt image, an image over the size limit, inconsistent sizes) gets
an error response saying why; the other requests of its batch, and the server, carry on.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import triton_python_backend_utils as pb_utils  # provided by the Triton Python backend

#: ``runtime.triton.contract.PARAM_RUNTIME_PATH``, spelled out: it is read before ``runtime`` can be imported
RUNTIME_PATH_PARAMETER = "mrd_runtime_path"


def import_steps(parameters: dict[str, Any]) -> Any:
    """``runtime.triton.steps``, from the installed package or else from the recorded checkout."""
    try:
        from runtime.triton import steps
    except ImportError as first:
        path = (parameters.get(RUNTIME_PATH_PARAMETER) or {}).get("string_value", "")
        if not path or not os.path.isfile(os.path.join(path, "runtime", "triton", "steps.py")):
            raise ImportError(
                f"cannot import runtime ({first}) in {sys.executable}: install maskrcnn-deploy into the Python "
                f"that the Triton Python backend runs (`pip install --no-deps <checkout>` plus numpy, "
                f"opencv-python-headless, onnxruntime), or keep the checkout at {path or '(none recorded)'}"
            ) from None
        sys.path.insert(0, path)
        from runtime.triton import steps
    return steps


def _error(message: str, invalid_argument: bool) -> Any:
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None) if invalid_argument else None
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.steps = import_steps(config.get("parameters", {}))
        self.name = config["name"]
        self.step = self.steps.make_step(config, args["model_repository"], args["model_version"])

    def execute(self, requests: list[Any]) -> list[Any]:
        inputs = []
        for request in requests:
            tensors = {}
            for name in self.step.input_names:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is not None:
                    tensors[name] = tensor.as_numpy()
            inputs.append(tensors)
        try:
            results = self.step.run(inputs)
        except Exception as e:  # a bug or a failing library: answer every request, keep serving
            message = f"{self.name} failed: {type(e).__name__}: {e}"
            return [pb_utils.InferenceResponse(error=_error(message, False)) for _ in requests]
        responses = []
        for result in results:
            if isinstance(result, Exception):  # a bad request is INVALID_ARG; the step's own failure is not
                invalid = isinstance(result, self.steps.StepInputError)
                responses.append(pb_utils.InferenceResponse(error=_error(f"{self.name}: {result}", invalid)))
            else:
                tensors = [pb_utils.Tensor(name, value) for name, value in result.items()]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self) -> None:
        self.step = None
