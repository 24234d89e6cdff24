"""The command line's forms: `FILE` or `--config FILE` in `run` and `check`, `--log-level` after the subcommand,
`check --json`, the pid in `run`'s ready line, and `completion bash|zsh`."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from meshbatch import __version__
from testbed.cli import BAD, BAD_ERRORS, GOOD, MESHBATCH, meshbatch, write

SUMMARY = {"listeners": 1, "routes": 2, "batching": 1, "clusters": 1, "endpoints": 2}
OK_LINE = "ok: 1 listener(s), 2 route(s) (1 batching), 1 cluster(s), 2 endpoint(s)"


@pytest.mark.parametrize("form", [["{f}"], ["-c", "{f}"], ["--config", "{f}"], ["{f}", "--config", "{f}"]])
def test_check_accepts_file_and_config_forms(tmp_path: Path, form: list[str]) -> None:
    path = write(tmp_path, GOOD)
    out = meshbatch("check", *[word.format(f=path) for word in form])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{path}: {OK_LINE}"


@pytest.mark.parametrize("form", [["{f}"], ["-c", "{f}"], ["--config", "{f}"]])
def test_run_accepts_file_and_config_forms(tmp_path: Path, form: list[str]) -> None:
    path = write(tmp_path, BAD)  # fails after parsing: the form was accepted and the file read
    out = meshbatch("run", *[word.format(f=path) for word in form])
    assert out.returncode == 1
    for error in BAD_ERRORS:
        assert error in out.stderr


@pytest.mark.parametrize("command", ["run", "check"])
def test_two_different_config_files_is_a_usage_error(tmp_path: Path, command: str) -> None:
    a, b = write(tmp_path, GOOD, "a.yaml"), write(tmp_path, GOOD, "b.yaml")
    out = meshbatch(command, str(a), "--config", str(b))
    assert out.returncode == 2
    assert "two different config files" in out.stderr
    assert str(a) in out.stderr and str(b) in out.stderr


@pytest.mark.parametrize("command", ["run", "check"])
def test_no_config_file_is_a_usage_error(command: str) -> None:
    out = meshbatch(command)
    assert out.returncode == 2
    assert "a config file is required" in out.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_log_level_before_or_after_the_subcommand(tmp_path: Path, where: str) -> None:
    path = write(tmp_path, GOOD)
    args = ["--log-level", "debug", "check", str(path)] if where == "before" else \
        ["check", "-c", str(path), "--log-level", "debug"]
    out = meshbatch(*args)
    assert out.returncode == 0, out.stderr
    assert " DEBUG meshbatch.cli: " in out.stderr
    assert " DEBUG " not in meshbatch("check", str(path)).stderr  # info by default
    shown = meshbatch("ca", "show", str(tmp_path / "none.crt"), "--log-level", "debug")  # a nested subcommand
    assert "unrecognized arguments" not in shown.stderr
    bad = meshbatch("check", str(path), "--log-level", "loud")
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr


def test_log_level_after_run_takes_effect(tmp_path: Path) -> None:
    """`run -c f --log-level debug`: debug lines appear (a default `info` run has none)."""
    path = write(tmp_path, "admin: null\nlisteners: [{name: l, listen: '127.0.0.1:0'}]\n")
    proc = subprocess.Popen([MESHBATCH, "run", "-c", str(path), "--log-level", "debug"],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "meshbatch: ready" in line:
                break
        ready = lines[-1]
        assert re.search(rf"config=\S+ version=\S+ pid={proc.pid}\b", ready), ready
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=20)[1]
    assert proc.returncode == 0
    assert f" DEBUG meshbatch.cli: meshbatch {__version__} run, pid {proc.pid}" in "".join(lines) + rest


def test_check_json_valid(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("127.0.0.1:0\nlisteners", "0.0.0.0:9901\nlisteners", 1))
    out = meshbatch("check", "--json", str(path))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is True
    assert report["file"] == str(path)
    assert report["summary"] == SUMMARY
    assert report["errors"] == []
    assert len(report["notes"]) == 1 and "token" in report["notes"][0]  # the admin exposure warning


def test_check_json_errors(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    out = meshbatch("check", str(path), "--json")
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert report["ok"] is False
    assert report["summary"] is None
    assert [f"{e['path']}: {e['message']}" for e in report["errors"]] == BAD_ERRORS
    assert all(set(e) == {"path", "message"} for e in report["errors"])


def test_check_json_missing_file(tmp_path: Path) -> None:
    out = meshbatch("check", "--json", str(tmp_path / "nope.yaml"))
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert report["ok"] is False
    assert "cannot read" in report["errors"][0]["message"]


def _complete(script: Path, *words: str) -> list[str]:
    """What bash completes after `words` (the last one being completed) with the generated script loaded."""
    program = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _meshbatch; '
               'printf "%s\\n" "${COMPREPLY[@]}"')
    out = subprocess.run(["bash", "-c", program, "bash", str(script), *words], capture_output=True, text=True,
                         timeout=10, check=True)
    return out.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completion(tmp_path: Path) -> None:
    out = meshbatch("completion", "bash")
    assert out.returncode == 0, out.stderr
    script = tmp_path / "meshbatch.bash"
    script.write_text(out.stdout)
    assert "complete -o default -F _meshbatch meshbatch" in out.stdout
    assert sorted(_complete(script, "meshbatch", "ch")) == ["chaos", "check"]
    assert _complete(script, "meshbatch", "ca", "") == ["init", "issue", "show"]
    assert _complete(script, "meshbatch", "run", "--log-level", "") == ["debug", "info", "warning", "error"]
    assert _complete(script, "meshbatch", "check", "--j") == ["--json"]
    assert _complete(script, "meshbatch", "completion", "") == ["bash", "zsh"]
    assert "--print-modules" not in _complete(script, "meshbatch", "run", "--")  # hidden options stay hidden
    (tmp_path / "conf.yaml").touch()
    assert _complete(script, "meshbatch", "run", str(tmp_path / "co")) == [str(tmp_path / "conf.yaml")]


def test_zsh_completion() -> None:
    out = meshbatch("completion", "zsh")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("#compdef meshbatch\n")
    assert "compdef _meshbatch meshbatch" in out.stdout
    assert "_zsh_meshbatch_words[check]='-h --help --config -c --json --log-level'" in out.stdout
    if shutil.which("zsh"):
        syntax = subprocess.run(["zsh", "-n"], input=out.stdout, capture_output=True, text=True, timeout=10)
        assert syntax.returncode == 0, syntax.stderr


def test_completion_needs_a_known_shell() -> None:
    out = meshbatch("completion", "fish")
    assert out.returncode == 2
    assert "invalid choice" in out.stderr


def test_run_help_mentions_the_pid() -> None:
    out = meshbatch("run", "--help")
    assert "pid=N" in out.stdout
