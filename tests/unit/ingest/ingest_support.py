"""Helpers for the ingest unit tests: a scripted sink, logs in temporary files, records, service addresses."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from meshbatch.clock import FakeClock
from meshbatch.config.model import IngestLog
from meshbatch.ingest.logs.sqlite import SQLiteLog
from meshbatch.ingest.record import Record
from meshbatch.ingest.sinks.base import BatchRejected, Outcome, SinkUnavailable

PG_URL = os.environ.get("MESHBATCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
NATS_URL = os.environ.get("MESHBATCH_NATS_URL", "nats://127.0.0.1:4222")


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1):
            return True
    except OSError:
        return False


def require(url: str, what: str) -> str:
    """`url`, or skip (fail when MESHBATCH_REQUIRE_SERVICES is set) when nothing answers there."""
    if not reachable(url):
        reason = f"{what} is not reachable at {url}"
        if os.environ.get("MESHBATCH_REQUIRE_SERVICES"):
            pytest.fail(reason + " and MESHBATCH_REQUIRE_SERVICES is set")
        pytest.skip(reason)
    return url


def records(n: int, start: int = 0, prefix: str = "e") -> list[Record]:
    return [Record(f"{prefix}{i}", b'{"n": %d}' % i, 1700000000.0 + i) for i in range(start, start + n)]


def request(n: int, start: int = 0, received: float = 1700000000.0) -> list[Record]:
    """The records a request of `n` events makes: one receive time, ids without commas (the log keeps them as
    one row)."""
    return [Record(f"e{i}", b'{"n":%d}' % i, received) for i in range(start, start + n)]


def sqlite_log(tmp_path: Path, clock: FakeClock | None = None, **options: Any) -> SQLiteLog:
    config = IngestLog(path=str(tmp_path / "log.db"), **options)
    return SQLiteLog(config, "r", clock or FakeClock())


class ScriptedSink:
    """Stores what it is given, unless told to fail: `down` (unavailable), `poison` ids (a batch holding one is
    rejected as a whole), `fail_ids` (those items alone fail)."""

    name = "scripted"

    def __init__(self) -> None:
        self.down = False
        self.poison: set[str] = set()
        self.fail_ids: set[str] = set()
        self.stored: list[str] = []
        self.calls: list[list[str]] = []
        self.hook: Callable[[], None] | None = None

    async def open(self) -> None:
        return None

    async def deliver(self, batch: Sequence[Record]) -> list[Outcome]:
        self.calls.append([r.id for r in batch])
        if self.hook is not None:
            self.hook()
        if self.down:
            raise SinkUnavailable("down for maintenance")
        if any(r.id in self.poison for r in batch):
            raise BatchRejected("a value does not fit")
        out: list[Outcome] = []
        for r in batch:
            if r.id in self.fail_ids:
                out.append("refused")
            else:
                self.stored.append(r.id)
                out.append(None)
        return out

    async def close(self) -> None:
        return None

    def summary(self) -> dict[str, Any]:
        return {"type": self.name, "stored": len(self.stored)}
