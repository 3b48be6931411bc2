"""Check a Triton model repository against Triton's own ``model_config`` schema, and its ensembles' wiring.

Each ``config.pbtxt`` is parsed with ``google.protobuf.text_format`` into ``tritonclient``'s
``model_config_pb2.ModelConfig`` (Triton's own ``model_config.proto``): a misspelt field, a wrong type or an
unknown enum value fails here, at export, not when the server loads the model. On top of the schema, each
ensemble step must name a model of the repository and tensors that model has, with the same data types.

``python -m runtime.triton.config REPOSITORY`` runs the check where ``tritonclient`` is installed (the
exporter calls it in the serving environment when its own lacks tritonclient).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INSTALL_HINT = (
    "pip install tritonclient (in this environment), or create the serving environment with "
    "`bash scripts/setup_serving.sh`"
)


class ConfigError(ValueError):
    """A config.pbtxt that Triton's schema rejects, or an ensemble whose steps don't fit together."""


class SchemaUnavailable(ImportError):
    """tritonclient (which carries Triton's model_config schema) is not installed here."""


def model_config_module() -> Any:
    """tritonclient's ``model_config_pb2``, also where tritonclient is installed without its gRPC extra.

    ``tritonclient.grpc``'s package imports grpc; the schema module itself needs only protobuf, so it is
    loaded from its file when the package import fails.
    """
    name = "tritonclient.grpc.model_config_pb2"
    if name in sys.modules:
        return sys.modules[name]
    try:
        return importlib.import_module(name)
    except ImportError:
        pass
    except RuntimeError:  # tritonclient.grpc raises RuntimeError when grpc is missing
        pass
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise SchemaUnavailable(f"validating config.pbtxt needs tritonclient: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    file_spec = importlib.util.spec_from_file_location(name, path)
    if not path.is_file() or file_spec is None or file_spec.loader is None:
        raise SchemaUnavailable(
            f"tritonclient at {path.parent.parent} has no model_config_pb2.py: {INSTALL_HINT}"
        )
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[name] = module
    try:
        file_spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise SchemaUnavailable(
            f"tritonclient's model_config_pb2 does not load ({e}): {INSTALL_HINT}"
        ) from None
    return module


def parse_config(text: str, source: str = "config.pbtxt") -> Any:
    """A config.pbtxt's text as a ``ModelConfig`` message; :class:`ConfigError` names the file and the line."""
    from google.protobuf import text_format

    pb = model_config_module()
    try:
        return text_format.Parse(text, pb.ModelConfig())
    except text_format.ParseError as e:
        raise ConfigError(f"{source}: not a valid Triton model config: {e}") from None


@dataclass
class RepositoryCheck:
    """What :func:`validate_repository` read: every model's parsed config, by model name."""

    configs: dict[str, Any]

    def summary(self) -> str:
        kinds = [f"{name} ({c.platform or c.backend})" for name, c in sorted(self.configs.items())]
        return f"{len(kinds)} config.pbtxt valid against Triton's model_config schema: {', '.join(kinds)}"


def validate_repository(repository: str | Path, models: Sequence[str] | None = None) -> RepositoryCheck:
    """Parse every model's config.pbtxt (or those of ``models``) and check the ensembles' wiring."""
    root = Path(repository)
    dirs = (
        [root / m for m in models]
        if models
        else sorted(p for p in root.iterdir() if (p / "config.pbtxt").is_file())
    )
    if not dirs:
        raise ConfigError(f"{root}: no model directory with a config.pbtxt")
    configs = {}
    for d in dirs:
        path = d / "config.pbtxt"
        if not path.is_file():
            raise ConfigError(f"{path}: missing")
        config = parse_config(path.read_text(), str(path))
        if config.name and config.name != d.name:
            raise ConfigError(f"{path}: name {config.name!r} differs from its directory {d.name!r}")
        if not (config.backend or config.platform):
            raise ConfigError(f"{path}: names neither a backend nor a platform")
        configs[d.name] = config
    for name, config in configs.items():
        if config.platform == "ensemble":
            _check_ensemble(name, config, configs, root)
    return RepositoryCheck(configs)


def _check_ensemble(name: str, ensemble: Any, configs: dict[str, Any], root: Path) -> None:
    source = root / name / "config.pbtxt"
    known = {t.name: t.data_type for t in ensemble.input}
    for i, step in enumerate(ensemble.ensemble_scheduling.step):
        model = configs.get(step.model_name)
        if model is None:
            if not (root / step.model_name / "config.pbtxt").is_file():
                raise ConfigError(f"{source}: step {i} runs {step.model_name!r}, which is not in {root}")
            model = parse_config((root / step.model_name / "config.pbtxt").read_text())
        inputs = {t.name: t.data_type for t in model.input}
        outputs = {t.name: t.data_type for t in model.output}
        for model_input, tensor in step.input_map.items():
            if model_input not in inputs:
                raise ConfigError(
                    f"{source}: step {i} feeds {step.model_name} an input {model_input!r} it lacks"
                )
            if tensor not in known:
                raise ConfigError(f"{source}: step {i} reads {tensor!r} before any step produces it")
            if known[tensor] != inputs[model_input]:
                raise ConfigError(
                    f"{source}: {tensor!r} is {_type_name(known[tensor])} but {step.model_name}'s input "
                    f"{model_input!r} is {_type_name(inputs[model_input])}"
                )
        missing = [n for n in inputs if n not in step.input_map]
        if missing:
            raise ConfigError(f"{source}: step {i} leaves inputs {missing} of {step.model_name} unfed")
        for model_output, tensor in step.output_map.items():
            if model_output not in outputs:
                raise ConfigError(
                    f"{source}: step {i} maps an output {model_output!r} {step.model_name} lacks"
                )
            known[tensor] = outputs[model_output]
    for out in ensemble.output:
        if out.name not in known:
            raise ConfigError(f"{source}: no step produces the ensemble output {out.name!r}")
        if known[out.name] != out.data_type:
            raise ConfigError(f"{source}: output {out.name!r} is declared {_type_name(out.data_type)} but "
                              f"produced as {_type_name(known[out.name])}")  # fmt: skip


def _type_name(value: int) -> str:
    return str(model_config_module().DataType.Name(value))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.triton.config", description=__doc__.split("\n\n")[0])
    p.add_argument("repository", type=Path)
    p.add_argument("--models", nargs="*", help="only these model directories")
    args = p.parse_args(argv)
    try:
        check = validate_repository(args.repository, args.models)
    except SchemaUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (ConfigError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(check.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
