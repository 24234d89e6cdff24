"""A batch-friendly upstream for the `batching` scenario: one worker, a fixed cost per call plus a cost per item.

    POST /item    one JSON item   -> one JSON result            (cost: base + per_item)
    POST /batch   a JSON array    -> a JSON array of results    (cost: base + per_item * n; the json-array codec)
    GET  /        "ok" (readiness)
    GET  /stats   {"calls", "items", "service_ms": {p50, p99, max, mean}, "lock_wait_ms": {...}} since the last reset
    POST /reset   clears the counters

ONE worker: calls are served one at a time behind a FIFO lock, whatever the number of connections. The cost is
*waited*, not burnt: a timer sleep to just before the end, then the event loop is polled until the exact end
time. The cost stands for work done elsewhere (a model server, a database) and the upstream shares its core with
the load generator, so burning the CPU would measure contention for that core instead of batching. The loop is
asyncio's own over `select()` (microsecond timeouts) with 1 ns timer slack, so the call time stays within tens of
microseconds of the nominal cost; the measured service time of every call is kept and reported.

Run as a script on 127.0.0.1: python batch_upstream.py --port 9000 --base-ms 2 --per-item-us 20
Standard library plus httptools.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import selectors
import time
from typing import Any

import httptools

HOST = "127.0.0.1"
SPIN = 0.0002  # wake this early from the timer and poll the loop until the end of the call


class Worker:
    """The single worker: a FIFO lock, the cost model and the per-call measurements."""

    def __init__(self, base: float, per_item: float):
        self.base = base
        self.per_item = per_item
        self.lock = asyncio.Lock()
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self.items = 0
        self.service: list[float] = []
        self.lock_wait: list[float] = []

    async def call(self, n: int) -> None:
        queued = time.perf_counter()
        async with self.lock:
            start = time.perf_counter()
            end = start + self.base + self.per_item * n
            if end - start > SPIN:
                await asyncio.sleep(end - start - SPIN)
            while time.perf_counter() < end:
                await asyncio.sleep(0)
            done = time.perf_counter()
        self.calls += 1
        self.items += n
        self.service.append(done - start)
        self.lock_wait.append(start - queued)

    def stats(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "items": self.items,
            "base_ms": self.base * 1000,
            "per_item_us": self.per_item * 1e6,
            "service_ms": _percentiles(self.service),
            "lock_wait_ms": _percentiles(self.lock_wait),
        }


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)

    def pick(q: float) -> float:
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return round(ordered[rank - 1] * 1000, 4)

    return {"p50": pick(50), "p99": pick(99), "max": pick(100), "mean": round(sum(ordered) / len(ordered) * 1000, 4)}


def _result(item: Any) -> Any:
    return {"ok": True, "id": item.get("id") if isinstance(item, dict) else None}


class Conn(asyncio.Protocol):
    """One keep-alive connection; requests are answered in order (no pipelining expected, but kept safe)."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.previous: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(400, b'{"error":"bad request"}', keep_alive=False)

    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        keep_alive = self.parser.should_keep_alive()
        task = asyncio.get_running_loop().create_task(
            self._handle(method, self.url, b"".join(self.body), keep_alive, self.previous)
        )
        self.previous = task

    async def _handle(
        self, method: bytes, url: bytes, body: bytes, keep_alive: bool, previous: asyncio.Task[None] | None
    ) -> None:
        status, payload = await self._answer(method, url.split(b"?", 1)[0], body)
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous
        self._write(status, payload, keep_alive)

    async def _answer(self, method: bytes, path: bytes, body: bytes) -> tuple[int, bytes]:
        if method == b"GET" and path == b"/":
            return 200, b"ok"
        if method == b"GET" and path == b"/stats":
            return 200, json.dumps(self.worker.stats()).encode()
        if method == b"POST" and path == b"/reset":
            self.worker.reset()
            return 200, b"{}"
        if method != b"POST" or path not in (b"/item", b"/batch"):
            return 404, b'{"error":"not found"}'
        try:
            parsed = json.loads(body)
        except ValueError:
            return 400, b'{"error":"not json"}'
        if path == b"/batch":
            if not isinstance(parsed, list):
                return 400, b'{"error":"not an array"}'
            await self.worker.call(len(parsed))
            return 200, json.dumps([_result(item) for item in parsed]).encode()
        await self.worker.call(1)
        return 200, json.dumps(_result(parsed)).encode()

    def _write(self, status: int, payload: bytes, keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}\r\n"
        )
        self.transport.write(head.encode() + payload)
        if not keep_alive:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _fine_timer_slack() -> None:
    """1 ns of timer slack instead of 50 us (prctl PR_SET_TIMERSLACK); harmless where absent."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0)


async def serve(port: int, base: float, per_item: float) -> None:
    worker = Worker(base, per_item)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(worker), HOST, port, backlog=1024, reuse_address=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--base-ms", type=float, default=2.0, help="fixed cost of every call")
    parser.add_argument("--per-item-us", type=float, default=20.0, help="cost of every item of a call")
    args = parser.parse_args(argv)
    _fine_timer_slack()
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        loop.run_until_complete(serve(args.port, args.base_ms / 1000, args.per_item_us / 1e6))
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
