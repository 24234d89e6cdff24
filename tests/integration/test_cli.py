"""The command line: `meshbatch check FILE` and `meshbatch run --config FILE` failing fast on bad input."""

from __future__ import annotations

import socket
from pathlib import Path

from meshbatch import __version__
from testbed.cli import BAD, BAD_ERRORS, GOOD, meshbatch, write


def test_check_good_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    out = meshbatch("check", str(path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0] == (f"{path}: ok: 1 listener(s), 2 route(s) (1 batching), 1 cluster(s), 2 endpoint(s)")


def test_check_bad_file_lists_every_error_with_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    out = meshbatch("check", str(path))
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert lines[0] == f"{path}: 3 error(s)"
    assert [line.strip() for line in lines[1:]] == BAD_ERRORS
    assert out.stdout == ""


def test_check_yaml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "listeners:\n  - name: [x\n    listen: 1\n")
    out = meshbatch("check", str(path))
    assert out.returncode == 1
    assert "1 error(s)" in out.stderr
    assert "line 3, column" in out.stderr


def test_check_missing_file(tmp_path: Path) -> None:
    out = meshbatch("check", str(tmp_path / "nope.yaml"))
    assert out.returncode == 1
    assert "cannot read" in out.stderr


def test_run_with_a_bad_config_exits_1_with_every_error(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    out = meshbatch("run", "--config", str(path))
    assert out.returncode == 1
    for error in BAD_ERRORS:
        assert error in out.stderr


def test_run_on_an_address_in_use_exits_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        path = write(tmp_path, f"admin: null\nlisteners: [{{name: l, listen: '127.0.0.1:{port}'}}]\n")
        out = meshbatch("run", "--config", str(path))
    assert out.returncode == 1
    assert "cannot start" in out.stderr


def test_version() -> None:
    """The version and which build runs: the development install is pure Python, `make test-compiled` runs this
    again against the compiled build (setup.py compiles wherever a C compiler is present)."""
    out = meshbatch("--version")
    assert out.returncode == 0
    assert out.stdout.strip() in (f"meshbatch {__version__} (compiled)", f"meshbatch {__version__} (pure Python)")


def test_usage_error() -> None:
    out = meshbatch("frobnicate")
    assert out.returncode == 2
    assert "usage:" in out.stderr
