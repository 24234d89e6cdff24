"""Real upstream processes to kill, slow down, break and revive mid-load, and an asyncio load generator.

Each upstream is its own process (`python testbed/fleet.py NAME PORT`) on 127.0.0.1, answering:
    GET  /health           200, or the status set by control `health`
    POST /batch            a JSON array of n items -> n results `{"server": NAME, "item": ITEM}`
    POST /_control?k=v     set `delay_ms` (every answer waits), `item_us` (a batch also waits that long per item),
                           `status` (every answer has it), `health`
    GET  /_stats           {"requests": N, "batches": N, "items": N}
    anything else          200 `{"server": NAME}` (or `status`), after `delay_ms`
Every answer carries `x-server: NAME`. A killed upstream is SIGKILLed; `revive` starts it on the same port.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


# -- the upstream process -------------------------------------------------------------------------------
class _Upstream(asyncio.Protocol):
    state: dict[str, int] = {"delay_ms": 0, "item_us": 0, "status": 200, "health": 200}
    stats: dict[str, int] = {"requests": 0, "batches": 0, "items": 0}
    name = ""

    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.queue: asyncio.Queue[tuple[bytes, bytes, bytes]] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self.serve())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.task.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception:
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.queue.put_nowait((self.parser.get_method(), self.url, b"".join(self.body)))
        self.url = b""
        self.body = []

    async def serve(self) -> None:
        while True:
            method, url, body = await self.queue.get()
            status, payload = await self.answer(method, url.decode(), body)
            data = json.dumps(payload).encode()
            head = (f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nx-server: {self.name}\r\n"
                    f"content-length: {len(data)}\r\n\r\n").encode()
            if self.transport is None or self.transport.is_closing():
                return
            self.transport.write(head + data)

    async def answer(self, method: bytes, url: str, body: bytes) -> tuple[int, object]:
        parts = urlsplit(url)
        state, stats = self.state, self.stats
        if parts.path == "/_control":
            for key, values in parse_qs(parts.query).items():
                state[key] = int(values[-1])
            return 200, dict(state)
        if parts.path == "/_stats":
            return 200, dict(stats)
        if parts.path == "/health":
            return state["health"], {"server": self.name}
        stats["requests"] += 1
        items = json.loads(body or b"[]") if parts.path == "/batch" else None
        delay = state["delay_ms"] / 1000 + (len(items) * state["item_us"] / 1e6 if items else 0.0)
        if delay:
            await asyncio.sleep(delay)
        if items is not None:
            stats["batches"] += 1
            stats["items"] += len(items)
            return state["status"], [{"server": self.name, "item": item} for item in items]
        return state["status"], {"server": self.name}


def _serve(name: str, port: int) -> None:
    import uvloop

    _Upstream.name = name

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Upstream, "127.0.0.1", port, reuse_address=True, backlog=1024)
        print("ready", flush=True)
        await server.serve_forever()

    uvloop.run(main())


# -- managing them from a test --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_port_free(port: int, timeout: float = 10.0) -> None:
    """Until a listener can bind 127.0.0.1:`port` again (SO_REUSEADDR, as the proxy binds). A SIGKILLed
    listener's accepted connections linger in FIN_WAIT2 until their clients close them, and meanwhile hold the
    port even for SO_REUSEADDR."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.05)


@dataclass
class Upstream:
    name: str
    port: int
    proc: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Upstream:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__)), self.name, str(self.port)],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", f"upstream {self.name} did not start: {line!r}"
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def control(self, **state: int) -> dict[str, int]:
        query = "&".join(f"{k}={v}" for k, v in state.items())
        with urllib.request.urlopen(urllib.request.Request(
                f"http://{self.address}/_control?{query}", method="POST"), timeout=5) as answer:
            result: dict[str, int] = json.loads(answer.read())
        return result

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://{self.address}/_stats", timeout=5) as answer:
            result: dict[str, int] = json.loads(answer.read())
        return result


@dataclass
class Fleet:
    upstreams: dict[str, Upstream] = field(default_factory=dict)

    def start(self, *names: str) -> Fleet:
        for name in names:
            self.upstreams[name] = Upstream(name, free_port()).start()
        return self

    def __getitem__(self, name: str) -> Upstream:
        return self.upstreams[name]

    def addresses(self) -> list[str]:
        return [u.address for u in self.upstreams.values()]

    def close(self) -> None:
        for upstream in self.upstreams.values():
            upstream.kill()


# -- load -------------------------------------------------------------------------------------------------
@dataclass
class Result:
    status: int
    server: str
    latency: float
    body: bytes


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> Result:
    started = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Result(status, headers.get("x-server", ""), time.perf_counter() - started, body)


def request_bytes(method: str, path: str, host: str = "service", body: bytes = b"",
                  headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"{method} {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {len(body)}\r\n{extra}\r\n").encode() + body


async def load(address: tuple[str, int], requests: list[bytes], concurrency: int,
               on_progress: object = None) -> list[Result]:
    """Send every request once, `concurrency` keep-alive connections at a time; one Result per request, in
    order. A connection that fails is reopened and its request counted as status 0 (never re-sent)."""
    results: list[Result | None] = [None] * len(requests)
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection(*address)
        try:
            while next_index < len(requests):
                i = next_index
                next_index += 1
                try:
                    results[i] = await _exchange(reader, writer, requests[i])
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    results[i] = Result(0, "", 0.0, b"")
                    writer.close()
                    reader, writer = await asyncio.open_connection(*address)
                if callable(on_progress):
                    on_progress(i)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [r for r in results if r is not None]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
