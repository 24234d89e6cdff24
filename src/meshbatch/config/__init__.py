"""Configuration: frozen typed model, loader with path-qualified errors, and cross-object checks (validation), and
the plain objects a running proxy reads (meshbatch.config.plain).

The names below are imported on first use: a serving process imports `meshbatch.config.plain`,
`meshbatch.config.problems` and `meshbatch.config.redact` from this package, never the models, the loader or
PyYAML (meshbatch.runtime.validate_child validates a file in a process of its own).
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshbatch.config.load import ConfigError, Problem, load, parse
    from meshbatch.config.model import Config

__all__ = ["Config", "ConfigError", "Problem", "load", "parse"]


def __getattr__(name: str) -> Any:
    if name in ("ConfigError", "Problem"):
        from meshbatch.config import problems

        return getattr(problems, name)
    if name == "parse":
        from meshbatch.config import checks  # noqa: F401  (registers the config's own checks: names, references)
        from meshbatch.config.load import parse

        return parse
    if name == "Config":
        from meshbatch.config.model import Config

        return Config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """`meshbatch.config.load` is the loader's function, as it always was, not its module (which the import
    system would set here once imported)."""

    @property
    def load(self) -> Any:
        from meshbatch.config import checks  # noqa: F401  (registers the config's own checks: names, references)
        from meshbatch.config.load import load

        return load

    @load.setter
    def load(self, value: Any) -> None:
        pass  # the module stays reachable as sys.modules["meshbatch.config.load"]


sys.modules[__name__].__class__ = _Package
