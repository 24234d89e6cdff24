"""`meshbatch_build_info`: one sample of 1 whose labels name the version, the Python and whether the hot path is the
compiled build."""

from __future__ import annotations

import platform
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from meshbatch import __version__
from meshbatch.telemetry.build import (
    COMPILED,
    PURE,
    build_labels,
    development_checkout,
    installed_build,
    pure_build_warning,
    register_build_info,
)
from meshbatch.telemetry.metrics import Registry


def test_compiled_is_read_from_the_hot_path_module_file() -> None:
    assert build_labels("/x/meshbatch/http/server.cpython-312-x86_64-linux-gnu.so")[2] == "true"
    assert build_labels("C:/x/meshbatch/http/server.cp312-win_amd64.pyd")[2] == "true"
    assert build_labels("/x/meshbatch/http/server.py")[2] == "false"
    assert build_labels(None)[2] == "false"


def test_build_info_is_one_sample_of_one() -> None:
    registry = Registry()
    register_build_info(registry, "/x/server.py")
    text = registry.render().decode()
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "meshbatch_build_info"]
    assert family.type == "gauge"
    (sample,) = family.samples
    assert sample.value == 1.0
    assert sample.labels == {"version": __version__, "python": platform.python_version(), "compiled": "false"}


def _package(root: Path, server: str) -> Path:
    package = root / "meshbatch"
    (package / "http").mkdir(parents=True)
    (package / "http" / server).write_bytes(b"")
    return package


def test_the_installed_build_is_read_from_the_files(tmp_path: Path) -> None:
    """`meshbatch --version` says "compiled" when the HTTP server is an extension module, else "pure Python"."""
    suffix = EXTENSION_SUFFIXES[0]
    assert installed_build(_package(tmp_path / "a", f"server{suffix}")) == COMPILED
    assert installed_build(_package(tmp_path / "b", "server.py")) == PURE
    assert installed_build(_package(tmp_path / "c", "server.txt")) == PURE  # (no other name counts)


def test_an_installed_pure_build_warns_and_the_development_checkout_does_not(tmp_path: Path) -> None:
    installed = _package(tmp_path / "site-packages", "server.py")
    warning = pure_build_warning(installed)
    assert warning is not None and "\n" not in warning and "C compiler" in warning
    assert pure_build_warning(_package(tmp_path / "lib", f"server{EXTENSION_SUFFIXES[0]}")) is None
    checkout = _package(tmp_path / "repo" / "src", "server.py")
    (tmp_path / "repo" / "pyproject.toml").write_text("[project]\n")
    assert development_checkout(checkout) and pure_build_warning(checkout) is None
    assert not development_checkout(installed)
