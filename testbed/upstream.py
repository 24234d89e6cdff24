"""A real HTTP/1.1 upstream for integration tests, on 127.0.0.1 and an ephemeral port.

It runs in a background thread with its own event loop and parses requests with h11 (an implementation
independent of the proxy's), so a request the proxy forwards wrongly fails here. The path picks the behaviour:

    .../echo...          200, JSON of the request received: server name, method, target, version, headers, body
    .../chunked?n=N      200, an echo sent with chunked transfer encoding in N chunks
    .../trailers         200, a chunked echo with trailers `grpc-status: 0` and `x-checksum: 42`
    .../slow?ms=N        waits N ms, then echoes
    .../status/CODE      that status, with an echo body (none for 204/304)
    .../hop              200 with hop-by-hop response headers the proxy must strip
    .../close-mid        a head announcing 100 body bytes, 10 of them, then the connection closes
    .../close-now        closes the connection without answering
    .../malformed        an unparseable response
    anything else        echoes

The behaviour is the first path segment that names one, so `/short/slow?ms=500` is slow wherever it is routed.

Every request is recorded in `requests`; `connections` counts accepted connections.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11


@dataclass
class Seen:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]

    def as_json(self) -> dict[str, Any]:
        return {
            "server": "",
            "method": self.method,
            "target": self.target,
            "version": self.version,
            "headers": [[k, v] for k, v in self.headers],
            "body": self.body.decode("utf-8", errors="replace"),
        }


class _Closed(Exception):
    pass


BEHAVIOURS = frozenset({"echo", "chunked", "trailers", "slow", "status", "hop", "close-mid", "close-now",
                        "malformed"})


@dataclass
class UpstreamServer:
    name: str = "upstream"
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.base_events.Server | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> UpstreamServer:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, self.host, self.port, backlog=1024)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # pragma: no cover - reported to the starting thread
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            self._server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:  # connections still being served (a slow answer, a kept-alive client)
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"upstream-{id(self)}", daemon=True)
        self._thread.start()
        started.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.connections = 0

    def last(self, path_prefix: str = "") -> Seen:
        """The last request received whose target starts with `path_prefix`."""
        with self._lock:
            for seen in reversed(self.requests):
                if seen.target.startswith(path_prefix):
                    return seen
        raise AssertionError(f"the upstream received no request under {path_prefix!r}")

    # serving -------------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                seen = await self._read_request(conn, reader)
                if seen is None:
                    break
                with self._lock:
                    self.requests.append(seen)
                keep_going = await self._answer(conn, seen, writer)
                if not keep_going or conn.our_state is h11.MUST_CLOSE:
                    break
                conn.start_next_cycle()
        except (_Closed, ConnectionError, h11.ProtocolError, asyncio.CancelledError):  # cancelled: stopping
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Seen | None:
        request: h11.Request | None = None
        body: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                if not data and conn.their_state is h11.IDLE:
                    return None
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return Seen(
                    request.method.decode(),
                    request.target.decode(),
                    request.http_version.decode(),
                    [(k.decode(), v.decode("latin-1")) for k, v in request.headers],
                    b"".join(body),
                )
            elif isinstance(event, h11.ConnectionClosed):
                return None
            else:  # pragma: no cover
                raise _Closed(repr(event))

    async def _answer(self, conn: h11.Connection, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        parts = urlsplit(seen.target)
        segments = parts.path.split("/")
        kind, arg = "echo", ""
        for i, segment in enumerate(segments):
            if segment in BEHAVIOURS:
                kind, arg = segment, (segments[i + 1] if i + 1 < len(segments) else "")
                break
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        payload = seen.as_json()
        payload["server"] = self.name
        echo = json.dumps(payload).encode()
        json_type = ("content-type", "application/json")

        def send(*events: Any) -> None:
            for ev in events:
                data = conn.send(ev)
                if data:
                    writer.write(data)

        if kind == "slow":
            await asyncio.sleep(int(query.get("ms", "1000")) / 1000)
        if kind == "close-now":
            return False
        if kind == "malformed":
            writer.write(b"HTTP/1.1 2OO OK\r\nthis is : not http\r\n\r\n")
            await writer.drain()
            return False
        if kind == "close-mid":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
            await writer.drain()
            return False
        if kind == "chunked":
            n = max(1, int(query.get("n", "3")))
            send(h11.Response(status_code=200, headers=[json_type, ("transfer-encoding", "chunked")]))
            step = max(1, -(-len(echo) // n))
            for i in range(0, len(echo), step):
                send(h11.Data(data=echo[i:i + step]))
                await writer.drain()
            send(h11.EndOfMessage())
            await writer.drain()
            return True
        if kind == "trailers":  # a chunked echo ending with a trailer section
            send(h11.Response(status_code=200, headers=[json_type, ("transfer-encoding", "chunked"),
                                                        ("trailer", "grpc-status, x-checksum")]),
                 h11.Data(data=echo), h11.EndOfMessage(headers=[("grpc-status", "0"), ("x-checksum", "42")]))
            await writer.drain()
            return True
        if kind == "hop":
            headers = [
                json_type,
                ("content-length", str(len(echo))),
                ("connection", "keep-alive, x-upstream-private"),
                ("x-upstream-private", "secret"),
                ("keep-alive", "timeout=30"),
                ("proxy-connection", "keep-alive"),
                ("trailer", "x-checksum"),
                ("upgrade", "h2c"),
                ("x-end-to-end", "kept"),
            ]
            send(h11.Response(status_code=200, headers=headers), h11.Data(data=echo), h11.EndOfMessage())
            await writer.drain()
            return True
        status = 200
        if kind == "status":
            status = int(arg)
        if status in (204, 304) or seen.method == "HEAD":
            headers = [json_type] if status in (204, 304) else [json_type, ("content-length", str(len(echo)))]
            send(h11.Response(status_code=status, headers=headers), h11.EndOfMessage())
        else:
            headers = [json_type, ("content-length", str(len(echo))), ("x-upstream", "echo")]
            send(h11.Response(status_code=status, headers=headers), h11.Data(data=echo), h11.EndOfMessage())
        await writer.drain()
        return True


def refused_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


__all__ = ["Seen", "UpstreamServer", "refused_port"]
