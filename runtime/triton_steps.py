"""Where the steps lived before ``runtime/triton/``: the ``model.py`` of a repository exported before the move
imports ``runtime.triton_steps``, and such a repository keeps serving with this checkout."""

from runtime.triton.steps import *  # noqa: F403
from runtime.triton.steps import StepInputError, make_step  # noqa: F401
