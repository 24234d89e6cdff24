"""`meshbatch run` validates its config in a child process (runtime/validation.py): the same problems as the
loader finds in-process, the plain config otherwise; a child that crashes, hangs or answers garbage is a clear
error, never a hang, at start and on a reload (where the old snapshot keeps serving)."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

import pytest

from meshbatch.config import ConfigError, load, plain
from meshbatch.runtime import validation
from meshbatch.runtime.app import Proxy
from meshbatch.runtime.validation import ValidatorFailed, validate, validate_async

GOOD = """
admin: {listen: 127.0.0.1:0}
listeners:
  - name: main
    listen: 127.0.0.1:0
    routes:
      - {name: orders, match: {path_prefix: /orders}, cluster: c, batch: {max_items: 8}}
clusters: [{name: c, endpoints: [127.0.0.1:9]}]
"""
BAD = """
listeners:
  - name: main
    listen: 127.0.0.1:0
    routes:
      - {name: r, cluster: nowhere, batch: {max_items: 0, max_wiat_ms: 5}}
"""


def _write(tmp_path: Path, text: str, name: str = "meshbatch.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_valid_config_comes_back_plain_with_its_notes_logged(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    path = _write(tmp_path, GOOD)
    with caplog.at_level(logging.INFO, logger="meshbatch.config"):
        config = validate(path)
    assert isinstance(config, plain.Config)
    assert config == plain.of(load(path, log_notes=False))
    assert any("batch.upstream_path is not set" in r.getMessage() for r in caplog.records)


def test_a_bad_config_has_the_problems_the_loader_finds(tmp_path: Path) -> None:
    path = _write(tmp_path, BAD)
    with pytest.raises(ConfigError) as here:
        load(path)
    with pytest.raises(ConfigError) as child:
        validate(path)
    assert not isinstance(child.value, ValidatorFailed)
    assert [str(p) for p in child.value.problems] == [str(p) for p in here.value.problems]
    assert "listeners[0].routes[0].batch.max_items: must be >= 1" in [str(p) for p in child.value.problems]
    assert child.value.source == str(path)


def _child(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    monkeypatch.setattr(validation, "command", lambda path: [sys.executable, "-c", code])


@pytest.mark.parametrize(("code", "says"), [
    ("import sys; sys.exit(3)", "exited with status 3"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "killed by signal 9"),
    ("print('garbage')", "answered no config ('garbage')"),
    ("print('{\"ok\": true, \"config\": {\"listeners\": 7}}')", "JSON of another shape"),
    ("print('{\"ok\": true}')", "answered no config"),
    ("import time; time.sleep(30)", "took longer than 0.5 s and was killed"),
])
def test_a_broken_child_is_a_clear_error_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  code: str, says: str) -> None:
    monkeypatch.setenv(validation.TIMEOUT_ENV, "0.5")
    _child(monkeypatch, code)
    began = time.monotonic()
    with pytest.raises(ValidatorFailed) as failed:
        validate(_write(tmp_path, GOOD))
    assert time.monotonic() - began < 5
    assert says in str(failed.value) and "the config could not be validated" in str(failed.value)


async def test_a_hanging_child_is_killed_and_the_loop_keeps_turning(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(validation.TIMEOUT_ENV, "0.5")
    _child(monkeypatch, "import time; time.sleep(30)")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.get_running_loop().create_task(tick())
    try:
        with pytest.raises(ValidatorFailed, match=r"took longer than 0\.5 s"):
            await validate_async(_write(tmp_path, GOOD))
    finally:
        ticker.cancel()
    assert ticks >= 20  # the loop ran all along


@pytest.mark.serial  # three children, each a few hundred milliseconds of CPU
async def test_a_reload_keeps_the_old_snapshot_on_a_bad_file_a_broken_child_and_swaps_on_a_good_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, GOOD)
    lines: list[str] = []
    proxy = Proxy(path, asyncio.get_running_loop(), announce=lines.append)
    await proxy.start()
    try:
        first = proxy.snapshot
        path.write_text(BAD)
        assert await proxy.reload() is False
        assert proxy.snapshot is first and "meshbatch: reload rejected errors=3" in lines
        with monkeypatch.context() as patch:
            patch.setenv(validation.TIMEOUT_ENV, "0.5")
            _child(patch, "import time; time.sleep(30)")
            assert await proxy.reload() is False
        assert proxy.snapshot is first and lines[-1] == "meshbatch: reload rejected errors=1"
        path.write_text(GOOD.replace("max_items: 8", "max_items: 16"))
        assert await proxy.reload() is True
        assert proxy.snapshot is not first and lines[-1] == "meshbatch: reloaded version=2"
        route = proxy.snapshot.config.listeners[0].routes[0]
        assert isinstance(route, plain.BatchRoute) and route.batch.max_items == 16
    finally:
        await proxy.drain()
