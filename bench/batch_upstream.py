"""A batch-friendly HTTP upstream for the `batching` scenario: the work of `batch_work.py` behind HTTP/1.1.

    POST /item    one JSON item   -> one JSON result            (one call of one item)
    POST /batch   a JSON array    -> a JSON array of results    (one call of n items; the json-array codec)
    GET  /        "ok" (readiness)
    GET  /stats   {"calls", "items", "sizes", "service_ms": {p50, p99, max, mean}, "lock_wait_ms": {...}}
    POST /reset   clears the counters

ONE worker: calls are served one at a time behind a FIFO lock, whatever the number of connections (see
`batch_work.py` for the `fixed` and `cpu` models). The loop is asyncio's own over `select()` (microsecond
timeouts) with 1 ns timer slack, so a `fixed` call stays within tens of microseconds of its nominal cost.

Run as a script on 127.0.0.1: python batch_upstream.py --port 9000 --model fixed --base-ms 2 --per-item-us 20
Standard library plus httptools (and NumPy for the `cpu` model).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json

import httptools

from batch_work import DIM_OUT, MODELS, Work  # sibling modules: run as `python bench/batch_upstream.py`
from serve_loop import serve_until_interrupted

HOST = "127.0.0.1"


class Conn(asyncio.Protocol):
    """One keep-alive connection; requests are answered in order (no pipelining expected, but kept safe)."""

    def __init__(self, worker: Work):
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
            return 200, json.dumps(await self.worker.run(parsed)).encode()
        results = await self.worker.run([parsed])
        return 200, json.dumps(results[0]).encode()

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


async def serve(port: int, model: str, base_ms: float, per_item_us: float, dim_out: int) -> None:
    worker = Work(model, base_ms, per_item_us, dim_out)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(worker), HOST, port, backlog=1024, reuse_address=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", choices=MODELS, default="fixed", help="the work (see batch_work.py)")
    parser.add_argument("--base-ms", type=float, default=2.0, help="fixed: cost of every call")
    parser.add_argument("--per-item-us", type=float, default=20.0, help="fixed: cost of every item of a call")
    parser.add_argument("--cpu-dim", type=int, default=DIM_OUT, help="cpu: columns of the matrix")
    args = parser.parse_args(argv)
    return serve_until_interrupted(serve(args.port, args.model, args.base_ms, args.per_item_us, args.cpu_dim))


if __name__ == "__main__":
    raise SystemExit(main())
