"""Reading a foreign config key by key, so that every key of the file is accounted for.

A translator asks for each key it understands (``get``), states the values it supports (``expect``) and
names the keys that do not concern the model it builds (``ignore``: training-only knobs, heads the model
does not have). Whatever is left over is a key the translator does not know, typically a typo or a newer
version of the source: the import stops and names it, instead of silently building another model.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError


@dataclass
class KeyReader:
    source: str  # "maskrcnn-benchmark" or "detectron2", for messages
    path: str
    flat: Mapping[str, Any]  # the file's keys (bases merged)
    defaults: Mapping[str, Any]  # the source's defaults of the keys the translator reads
    _used: set[str] = field(default_factory=set)
    _ignored_prefixes: list[str] = field(default_factory=list)

    def get(self, key: str) -> Any:
        self._used.add(key)
        if key in self.flat:
            return self.flat[key]
        if key not in self.defaults:
            raise KeyError(f"translator bug: no {self.source} default for {key}")
        return self.defaults[key]

    def expect(self, key: str, supported: Iterable[Any], what: str) -> Any:
        """The value of ``key``, which must be one of ``supported``; otherwise refused by name."""
        value = self.get(key)
        supported = list(supported)
        if _normalized(value) not in [_normalized(s) for s in supported]:
            raise self.unsupported(key, value, what, supported)
        return value

    def unsupported(self, key: str, value: Any, what: str, supported: Iterable[Any] = ()) -> ConfigError:
        allowed = ", ".join(repr(_normalized(s)) for s in supported)
        hint = f" (supported: {allowed})" if allowed else ""
        return ConfigError(
            f"{self.path}: {self.source} config key {key} = {_normalized(value)!r} is not supported: {what}{hint}"
        )

    def ignore(self, *keys: str) -> None:
        """Keys (or whole sections, written with a trailing '.') that do not change the imported model."""
        for k in keys:
            if k.endswith("."):
                self._ignored_prefixes.append(k)
            else:
                self._used.add(k)

    def finish(self) -> None:
        left = sorted(
            k
            for k in self.flat
            if k not in self._used and not any(k.startswith(p) for p in self._ignored_prefixes)
        )
        if left:
            known = sorted(self._used | set(self.defaults))
            close = difflib.get_close_matches(left[0], known, n=2, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"{self.path}: unknown {self.source} config key(s) {', '.join(left[:5])}"
                f"{' ...' if len(left) > 5 else ''}{hint}"
            )


def _normalized(value: Any) -> Any:
    """Lists and tuples compare (and print) alike: YAML gives lists, yacs strings give tuples."""
    if isinstance(value, (list, tuple)):
        return tuple(_normalized(v) for v in value)
    return value
