"""`meshbatch_build_info`: which build is running (version, Python, whether the hot path is compiled), as a gauge
of 1 with labels, so dashboards can join on it and a rollout shows its mix of versions."""

from __future__ import annotations

import platform

from meshbatch import __version__
from meshbatch.telemetry.metrics import Gauge, Registry

COMPILED_SUFFIXES = (".so", ".pyd")  # a mypyc-compiled module is an extension module


def is_compiled(module_file: str | None) -> bool:
    """Whether the module at `module_file` is an extension module (the mypyc build) rather than Python source."""
    return module_file is not None and module_file.endswith(COMPILED_SUFFIXES)


def build_labels(hot_path_file: str | None) -> tuple[str, str, str]:
    """(version, python, compiled): `compiled` is "true" when the hot-path module at `hot_path_file` is an
    extension module (the mypyc build), "false" when it is Python source."""
    return __version__, platform.python_version(), "true" if is_compiled(hot_path_file) else "false"


def register_build_info(registry: Registry, hot_path_file: str | None) -> Gauge:
    labels = build_labels(hot_path_file)
    return registry.gauge("meshbatch_build_info", "The running build: version, Python, compiled hot path.",
                          ["version", "python", "compiled"], lambda: [(labels, 1.0)])


__all__ = ["build_labels", "is_compiled", "register_build_info"]
