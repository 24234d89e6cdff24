"""A config for the serving process, validated in a short-lived child process (runtime/validate_child.py).

`meshbatch run` validates its file in a child, at start (`validate`) and on each SIGHUP (`validate_async`, off
the event loop: the old snapshot serves until the child answers). The child loads and checks the file as
`meshbatch check` does and answers with the problems, raised here as the ConfigError the loader raises (every
message the same, with its path), or with the validated config as JSON, decoded here into the plain run-time
classes (meshbatch.config.plain) in one call; its notes are logged as the loader logs them. So the serving
process never imports pydantic, the config models or PyYAML, and a config that hangs or crashes the validation
cannot stall the serving loop: a child that does not answer within `timeout()` seconds is killed, and one that
dies or answers anything but its one JSON document is reported, each as a problem of the config
(`ValidatorFailed`, a ConfigError).

Each validation costs a child's start: an interpreter, pydantic, the models and the checks (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import msgspec

from meshbatch.config import plain
from meshbatch.config.problems import ConfigError, Problem

log = logging.getLogger("meshbatch.config")
TIMEOUT_ENV = "MESHBATCH_VALIDATE_TIMEOUT_S"
DEFAULT_TIMEOUT = 60.0  # seconds: a config of the largest size allowed validates in a few
CHILD = "meshbatch.runtime.validate_child"


class ValidatorFailed(ConfigError):
    """The validating process crashed, hung or answered something else than its answer: the config is not used."""

    def __init__(self, reason: str, source: str) -> None:
        super().__init__([Problem("", f"the config could not be validated: {reason}")], source)
        self.reason = reason


def timeout() -> float:
    """How long a validation may take (`MESHBATCH_VALIDATE_TIMEOUT_S`, default 60 s)."""
    try:
        value = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT


def command(path: str | Path) -> list[str]:
    return [sys.executable, "-m", CHILD, os.fspath(path)]


class ChildAnswer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the child writes: the problems, or the validated config and its notes."""

    ok: bool
    problems: list[Problem] = []
    notes: list[str] = []
    config: plain.Config | None = None


def read_answer(out: bytes, status: int, path: str | Path, log_notes: bool = True) -> plain.Config:
    """The plain config from the child's answer `out` (exit status `status`), or ConfigError with its problems,
    or ValidatorFailed."""
    source = str(path)
    if status != 0:
        what = f"killed by signal {-status}" if status < 0 else f"exited with status {status}"
        raise ValidatorFailed(f"the validating process {what} (its lines above say why)", source)
    try:
        answer = msgspec.json.decode(out, type=ChildAnswer)
    except msgspec.ValidationError as exc:  # JSON of another shape: a config that does not fit the plain classes
        raise ValidatorFailed(f"the validating process answered JSON of another shape: {exc}", source) from None
    except msgspec.DecodeError:
        raise ValidatorFailed(f"the validating process answered no config ({_quote(out)})", source) from None
    if not answer.ok:
        raise ConfigError(answer.problems, source)
    if answer.config is None:
        raise ValidatorFailed("the validating process answered no config", source)
    if log_notes:
        for note in answer.notes:
            log.info("%s: note: %s", path, note)
    return answer.config


def _quote(out: bytes) -> str:
    text = out[:200].decode("utf-8", "replace").strip()
    return repr(text) + ("..." if len(out) > 200 else "") if text else "nothing"


def validate(path: str | Path, log_notes: bool = True) -> plain.Config:
    """The config in `path`, validated in a child process (blocking: for the start, before the loop serves)."""
    try:
        done = subprocess.run(command(path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, timeout=timeout(),
                              check=False)
    except subprocess.TimeoutExpired:
        raise ValidatorFailed(f"the validating process took longer than {timeout():g} s and was killed "
                              f"({TIMEOUT_ENV})", str(path)) from None
    except OSError as exc:
        raise ValidatorFailed(f"the validating process could not be started: {exc}", str(path)) from None
    return read_answer(done.stdout, done.returncode, path, log_notes)


async def validate_async(path: str | Path, log_notes: bool = True) -> plain.Config:
    """The config in `path`, validated in a child process, awaited without holding the event loop (a reload)."""
    limit = timeout()
    try:
        process = await asyncio.create_subprocess_exec(*command(path), stdin=asyncio.subprocess.DEVNULL,
                                                       stdout=asyncio.subprocess.PIPE)
    except OSError as exc:
        raise ValidatorFailed(f"the validating process could not be started: {exc}", str(path)) from None
    try:
        async with asyncio.timeout(limit):
            out, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise ValidatorFailed(f"the validating process took longer than {limit:g} s and was killed "
                              f"({TIMEOUT_ENV})", str(path)) from None
    except BaseException:  # cancelled (a drain): the child goes too
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    assert process.returncode is not None
    return read_answer(out, process.returncode, path, log_notes)


__all__ = ["TIMEOUT_ENV", "ValidatorFailed", "read_answer", "timeout", "validate", "validate_async"]
