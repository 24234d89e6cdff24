"""An HTTP/2 upstream for the tests (asyncio + h2, in a thread of its own): h2c by prior knowledge, or h2 over TLS
when given a server context (ALPN h2 offered unless told otherwise).

The path picks the behaviour (the first segment that names one), the query its arguments:

| path | answers |
| --- | --- |
| anything else | 200, a JSON echo: method, path, headers, body, trailers (null: none), server, stream, connection |
| `/delay?ms=N` | the echo after N ms |
| `/status/N` | status N with the echo |
| `/mirror?ms=N` | 200, the request's body as JSON, after N ms if given (a json-array batch upstream) |
| `/trailers` | the echo, then trailers `grpc-status: 0`, `grpc-message: fine`, `x-checksum: 42` |
| `/big?bytes=N` | N bytes of body, sent as the client's windows allow |
| `/endless` | a body that never ends (as fast as the windows allow) |
| `/huge-headers?n=N` | N headers of 1000 bytes each (no HPACK indexing: a plain oversized block) |
| `/hpack-bomb?n=N` | one 4000-byte header indexed once and referenced N times: a few bytes on the wire each |
| `/reset` | the head, then RST_STREAM INTERNAL_ERROR |
| `/refuse` | RST_STREAM REFUSED_STREAM before anything |
| `/unopened` | a DATA frame on a stream the client never opened |
| `/silent` | nothing at all (the stream stays open) |

Server-wide options: `max_concurrent_streams` (its SETTINGS), `initial_window` (0: the client may never send a
body), `goaway_after` (after that many streams, a GOAWAY naming the last one it will serve: later streams are
refused, the connection closes once the served ones are answered). It records every request served (`seen`), the
most streams ever open at once on one connection (`max_open`), the client's stream resets (`resets`), and the
connections accepted.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.events
import h2.settings
from h2.errors import ErrorCodes
from hpack import Encoder
from hyperframe.frame import DataFrame, HeadersFrame

from meshbatch.http2.state import after_goaway

_SERVER_AFTER_GOAWAY = after_goaway(h2.connection.ConnectionState.SERVER_OPEN)
BEHAVIOURS = frozenset({"delay", "mirror", "status", "trailers", "big", "endless", "huge-headers", "hpack-bomb",
                        "reset", "refuse", "unopened", "silent"})


@dataclass
class H2Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection: int
    stream: int


class _Conn(asyncio.Protocol):
    def __init__(self, server: H2Upstream, number: int) -> None:
        self.server = server
        self.number = number
        settings: dict[h2.settings.SettingCodes, int] = {}
        if server.max_concurrent_streams is not None:
            settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = server.max_concurrent_streams
        if server.initial_window is not None:
            settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = server.initial_window
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values=settings)
        # the streams a GOAWAY names as served are still answered (RFC 9113 6.8), which h2 alone refuses
        self.h2.state_machine._transitions = _SERVER_AFTER_GOAWAY  # type: ignore[misc]
        self.transport: asyncio.Transport | None = None
        self.requests: dict[int, dict[str, Any]] = {}
        self.open = 0
        self.started = 0
        self.last_served = 2**31 - 1
        self.waiting: dict[int, asyncio.Future[None]] = {}  # streams waiting for window to send more

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.h2.initiate_connection()
        self.flush()

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.h2.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        for waiter in self.waiting.values():
            if not waiter.done():
                waiter.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self._begin(event)
            elif isinstance(event, h2.events.DataReceived):
                request = self.requests.get(event.stream_id)
                if request is not None:
                    request["body"].append(event.data)
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived):
                request = self.requests.get(event.stream_id)
                if request is not None:
                    request["trailers"] = dict(event.headers)  # type: ignore[arg-type]
            elif isinstance(event, h2.events.StreamEnded):
                request = self.requests.get(event.stream_id)
                if request is not None:
                    asyncio.get_running_loop().create_task(self._answer(event.stream_id, request))
            elif isinstance(event, h2.events.StreamReset):
                with self.server.lock:
                    self.server.resets.append((event.stream_id, int(event.error_code or 0)))
                self._done(event.stream_id)
                waiter = self.waiting.pop(event.stream_id, None)
                if waiter is not None and not waiter.done():
                    waiter.cancel()
            elif isinstance(event, h2.events.WindowUpdated):
                for stream_id in list(self.waiting) if event.stream_id == 0 else [event.stream_id]:
                    waiter = self.waiting.pop(stream_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
        self.flush()

    def _begin(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        server = self.server
        self.started += 1
        if stream_id > self.last_served:
            return  # above our GOAWAY: never processed
        self.open += 1
        with server.lock:
            server.max_open = max(server.max_open, self.open)
        headers = dict(event.headers)  # type: ignore[arg-type]
        self.requests[stream_id] = {"headers": headers, "body": []}
        if server.goaway_after is not None and self.started == server.goaway_after:
            self.last_served = stream_id
            self.h2.close_connection(last_stream_id=stream_id)

    def _done(self, stream_id: int) -> None:
        if self.requests.pop(stream_id, None) is not None:
            self.open -= 1
        if self.last_served < 2**31 - 1 and not self.requests and self.transport is not None:
            self.flush()
            self.transport.close()  # the GOAWAY said so: the streams it serves are answered

    async def _answer(self, stream_id: int, request: dict[str, Any]) -> None:
        headers = request["headers"]
        parts = urlsplit(headers[":path"])
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        segments = parts.path.split("/")
        kind, arg = "echo", ""
        for i, segment in enumerate(segments):
            if segment in BEHAVIOURS:
                kind, arg = segment, (segments[i + 1] if i + 1 < len(segments) else "")
                break
        body = b"".join(request["body"])
        server = self.server
        seen = H2Seen(headers[":method"], headers[":path"], headers, body, self.number, stream_id)
        with server.lock:
            server.seen.append(seen)
        echo = json.dumps({"method": seen.method, "path": seen.path, "headers": headers,
                           "body": body.decode(errors="replace"), "server": server.name,
                           "connection": self.number, "stream": stream_id,
                           "trailers": request.get("trailers")}).encode()
        conn = self.h2
        try:
            if kind == "delay" or (kind == "mirror" and "ms" in query):
                await asyncio.sleep(int(query.get("ms", "100")) / 1000)
            if kind == "silent":
                return
            if kind == "refuse":
                conn.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
                return
            if kind == "unopened":
                assert self.transport is not None
                self.transport.write(DataFrame(stream_id + 100, b"stray").serialize())
                return
            if kind == "huge-headers":
                many = [(f"x-big-{i}", "v" * 1000) for i in range(int(query.get("n", "100")))]
                conn.send_headers(stream_id, [(":status", "200"), *many], end_stream=True)
                return
            if kind == "hpack-bomb":
                self._bomb(stream_id, int(query.get("n", "1000")))
                return
            status = int(arg) if kind == "status" else 200
            if kind == "reset":
                conn.send_headers(stream_id, [(":status", "200")])
                self.flush()
                conn.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
                return
            if kind in ("big", "endless"):
                conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/octet-stream")])
                await self._send(stream_id, int(query.get("bytes", "1000000")) if kind == "big" else -1)
                return
            if kind == "mirror":
                echo = body
            answer = [(":status", str(status)), ("content-type", "application/json"),
                      ("content-length", str(len(echo))), ("x-upstream", server.name)]
            conn.send_headers(stream_id, answer)
            trailers = kind == "trailers"
            await self._send_bytes(stream_id, echo, end=not trailers)
            if trailers:
                conn.send_headers(stream_id, [("grpc-status", "0"), ("grpc-message", "fine"), ("x-checksum", "42")],
                                  end_stream=True)
        except (h2.exceptions.StreamClosedError, asyncio.CancelledError):
            return
        finally:
            self.flush()
            if kind != "silent":
                self._done(stream_id)

    async def _send(self, stream_id: int, total: int) -> None:
        piece = b"x" * 16_384
        sent = 0
        while total < 0 or sent < total:
            size = len(piece) if total < 0 else min(len(piece), total - sent)
            await self._send_bytes(stream_id, piece[:size], end=total >= 0 and sent + size >= total)
            sent += size

    async def _send_bytes(self, stream_id: int, data: bytes, end: bool) -> None:
        conn = self.h2
        while True:
            window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            if window >= len(data):
                conn.send_data(stream_id, data, end_stream=end)
                self.flush()
                return
            if window > 0:
                conn.send_data(stream_id, data[:window])
                data = data[window:]
                self.flush()
            waiter = self.waiting[stream_id] = asyncio.get_running_loop().create_future()
            await waiter

    def _bomb(self, stream_id: int, n: int) -> None:
        """A header block that decodes to n x 4 kB from a few bytes each: indexed once, then referenced."""
        encoder = Encoder()
        block = encoder.encode([(":status", "200"), *[("x-bomb", "b" * 4000)] * n])
        frame = HeadersFrame(stream_id, block, flags=["END_HEADERS", "END_STREAM"])
        assert self.transport is not None
        self.transport.write(frame.serialize())


@dataclass
class H2Upstream:
    name: str = "h2"
    max_concurrent_streams: int | None = None
    initial_window: int | None = None
    goaway_after: int | None = None
    tls: ssl.SSLContext | None = None
    host: str = "127.0.0.1"
    port: int = 0
    seen: list[H2Seen] = field(default_factory=list)
    max_open: int = 0
    connections: int = 0
    resets: list[tuple[int, int]] = field(default_factory=list)  # (stream, error code) of the client's RST_STREAMs
    lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _protocol(self) -> _Conn:
        with self.lock:
            self.connections += 1
            return _Conn(self, self.connections)

    def start(self) -> H2Upstream:
        started = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            server = loop.run_until_complete(loop.create_server(self._protocol, self.host, self.port, ssl=self.tls))
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            loop.run_forever()
            server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name=f"h2-upstream-{self.name}", daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.resets.clear()
            self.max_open = 0
            self.connections = 0


def h2_server_context(cert: str, key: str, ca: str, alpn: tuple[str, ...] = ("h2",)) -> ssl.SSLContext:
    """A server context presenting `cert`, asking for a client certificate signed by `ca`, offering `alpn`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(ca)
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(list(alpn))
    return context


__all__ = ["H2Seen", "H2Upstream", "h2_server_context"]
