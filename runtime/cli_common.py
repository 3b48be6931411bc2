"""What the runtime commands (``runtime.bench``, ``runtime.evaluate``, ``runtime.webcam``) share on the command line.

One place for the backend options, so ``--device cuda:0 --threads 4`` means the same to every command, and
one place for the project's exit-code convention: a user mistake (missing file, bad option value, a model
file no backend can load) ends as a single ``error: ...`` line on stderr and exit status 2; a traceback
means a bug. Only the code a command runs under :func:`user_errors` is treated so, so a bug in its
reporting still shows its traceback.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from runtime.backends.base import BackendError
from runtime.model_file import ENV_ALLOW_UNVERIFIED, UnknownModelType

#: what a user's mistake raises in the runtime (EvaluationError and UnknownModelType are ValueErrors)
USER_ERRORS: tuple[type[Exception], ...] = (BackendError, UnknownModelType, FileNotFoundError, ValueError)
#: the exit status of a user mistake (argparse's own, so every usage error reads the same to a script)
USER_ERROR_EXIT = 2

_Main = TypeVar("_Main", bound=Callable[..., int])


class CommandExit(SystemExit):
    """Raised by :func:`user_errors`; :func:`cli_main` turns it into main's return value.

    A SystemExit, so that a command run without the decorator still exits with the status, not a traceback.
    """


def add_backend_arguments(
    parser: argparse.ArgumentParser,
    backend_help: str = "backend override (torch, onnxruntime, openvino, tensorrt, triton)",
    repeatable_backend: bool = False,
) -> None:
    """``--backend``, ``--device`` and ``--threads``: how every command picks and sizes its backend.

    ``repeatable_backend``: ``--backend`` may be given several times (a list; None when absent), for
    commands that take several models.
    """
    parser.add_argument("--backend", action="append" if repeatable_backend else "store", help=backend_help)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch, ONNX Runtime and OpenVINO")
    parser.add_argument(
        "--allow-unverified",
        action=_AllowUnverified,
        nargs=0,
        help="also load models that failed --verify when exported (named NAME.unverified.EXT), to inspect them",
    )


class _AllowUnverified(argparse.Action):
    """Sets ``MRD_ALLOW_UNVERIFIED=1`` for this process, so every model the command opens may be one."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        os.environ[ENV_ALLOW_UNVERIFIED] = "1"
        setattr(namespace, self.dest, True)


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: progress bars off, for logs and CI where they are only noise."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


@contextmanager
def user_errors(*extra: type[Exception]) -> Iterator[None]:
    """Report a user mistake raised inside as ``error: ...`` and exit 2 (``extra``: more types that are)."""
    try:
        yield
    except (*USER_ERRORS, *extra) as e:
        print(f"error: {e}", file=sys.stderr)
        raise CommandExit(USER_ERROR_EXIT) from None


def cli_main(main: _Main) -> _Main:
    """Decorator of a command's ``main(argv)``: logging set up, :class:`CommandExit` returned as the status.

    Returning (rather than exiting) keeps ``main`` callable from tests and other code.
    """

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> int:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        try:
            return main(*args, **kwargs)
        except CommandExit as e:
            return int(e.code or 0)

    return wrapper  # type: ignore[return-value]
