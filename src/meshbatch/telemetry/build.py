"""`meshbatch_build_info`: which build is running (version, Python, whether the hot path is compiled), as a gauge
of 1 with labels, so dashboards can join on it and a rollout shows its mix of versions."""

from __future__ import annotations

import platform
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from meshbatch import __version__
from meshbatch.telemetry.metrics import Gauge, Registry

COMPILED_SUFFIXES = (".so", ".pyd")  # a mypyc-compiled module is an extension module
PACKAGE = Path(__file__).resolve().parent.parent
COMPILED, PURE = "compiled", "pure Python"


def is_compiled(module_file: str | None) -> bool:
    """Whether the module at `module_file` is an extension module (the mypyc build) rather than Python source."""
    return module_file is not None and module_file.endswith(COMPILED_SUFFIXES)


def installed_build(package: Path = PACKAGE) -> str:
    """"compiled" when the hot path of the installed package is the mypyc build (its HTTP server an extension
    module), else "pure Python"; read from the files, importing nothing."""
    found = any((package / "http" / f"server{suffix}").is_file() for suffix in EXTENSION_SUFFIXES)
    return COMPILED if found else PURE


def development_checkout(package: Path = PACKAGE) -> bool:
    """Whether the package runs from a source checkout (the editable development install: pure Python by design)."""
    return package.parent.name == "src" and (package.parent.parent / "pyproject.toml").is_file()


def pure_build_warning(package: Path = PACKAGE) -> str | None:
    """The one line `meshbatch run` logs when an installed (not development) build is pure Python."""
    if installed_build(package) == COMPILED or development_checkout(package):
        return None
    return ("pure-Python build (no C compiler when meshbatch was installed, or MESHBATCH_COMPILE=0): each request "
            "costs about 1.4x the CPU of the compiled build; with gcc and Python's headers (python3-dev) present, "
            "reinstall meshbatch to get it")


def build_labels(hot_path_file: str | None) -> tuple[str, str, str]:
    """(version, python, compiled): `compiled` is "true" when the hot-path module at `hot_path_file` is an
    extension module (the mypyc build), "false" when it is Python source."""
    return __version__, platform.python_version(), "true" if is_compiled(hot_path_file) else "false"


def register_build_info(registry: Registry, hot_path_file: str | None) -> Gauge:
    labels = build_labels(hot_path_file)
    return registry.gauge("meshbatch_build_info", "The running build: version, Python, compiled hot path.",
                          ["version", "python", "compiled"], lambda: [(labels, 1.0)])


__all__ = ["COMPILED", "PURE", "build_labels", "development_checkout", "installed_build", "is_compiled",
           "pure_build_warning", "register_build_info"]
