"""Shared pieces of the ingest end-to-end tests (imported by the other `test_ingest_*` modules), and the
check that the services they need answer (skipped when unreachable, failed when MESHBATCH_REQUIRE_SERVICES is
set): PostgreSQL at MESHBATCH_PG_URL, NATS JetStream at MESHBATCH_NATS_URL."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from testbed.stores import NATS_URL, PG_URL


def require(url: str, what: str) -> str:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1):
            return url
    except OSError:
        reason = f"{what} is not reachable at {url}"
        if os.environ.get("MESHBATCH_REQUIRE_SERVICES"):
            pytest.fail(reason + " and MESHBATCH_REQUIRE_SERVICES is set")
        pytest.skip(reason)


def wait_until(predicate: Callable[[], Any], timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {message}"
        time.sleep(0.05)


def ingest_config(admin: dict[str, Any] | None = None, **ingest: Any) -> dict[str, Any]:
    return {
        "admin": {"listen": "127.0.0.1:0", **(admin or {})},
        "listeners": [{"name": "main", "listen": "127.0.0.1:0", "routes": [
            {"name": "events", "match": {"path_prefix": "/events"}, "timeout_ms": 10000, "ingest": ingest}]}],
        "drain_timeout_ms": 5000,
    }


class Producer:
    """Threads sending events `{"n": i}` with idempotency-key `k-i`; remembers which got a 202."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acked: set[str] = set()
        self.failed: set[int] = set()
        self.lock = threading.Lock()

    def send(self, numbers: Iterable[int], threads: int = 16) -> None:
        def run(chunk: list[int]) -> None:
            with httpx.Client(timeout=10) as client:
                for i in chunk:
                    try:
                        response = client.post(self.url, json={"n": i}, headers={"idempotency-key": f"k-{i}"})
                        ok = response.status_code == 202
                    except httpx.HTTPError:
                        ok = False
                    with self.lock:
                        (self.acked.add(f"k-{i}") if ok else self.failed.add(i))

        items = list(numbers)
        chunks = [items[t::threads] for t in range(threads)]
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, chunks))


def test_postgres_answers() -> None:
    require(PG_URL, "PostgreSQL")


def test_jetstream_answers() -> None:
    require(NATS_URL, "NATS JetStream")
