"""HTTP/2 clients for tests: the h2 state machine as a client, against the server protocol over an in-memory
transport (`H2Pair`) or against a running proxy over a real socket (`H2Socket`). Both can also write raw
frames (`frame`), for the attacks that a well-behaved client library would never send."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, cast

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, Event, ResponseReceived, StreamEnded, StreamReset
from h2.settings import SettingCodes, Settings
from hyperframe.frame import Frame

from meshbatch.http.serving import Dispatch, ListenerState, ServerSettings
from meshbatch.http2.server import H2ServerProtocol
from testbed.transport import FakeTransport, connect

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One raw HTTP/2 frame."""
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream_id) + payload


def client_connection(window: int | None = None) -> H2Connection:
    """A client connection; `window`: the initial stream window it grants (0: the server may send no data)."""
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    if window is not None:
        conn.local_settings = Settings(client=True, initial_values={SettingCodes.INITIAL_WINDOW_SIZE: window})
    conn.initiate_connection()
    return conn


def request_headers(path: str = "/", method: str = "GET", authority: str = "test",
                    extra: list[tuple[str, str]] | None = None) -> list[tuple[bytes, bytes]]:
    fields = [(":method", method), (":path", path), (":scheme", "http"), (":authority", authority), *(extra or [])]
    return [(k.encode(), v.encode()) for k, v in fields]


def parse_frames(data: bytes) -> list[Frame]:
    """The whole frames in `data` (a server's output: no preface)."""
    out: list[Frame] = []
    at = 0
    while len(data) - at >= 9:
        frame_, length = Frame.parse_frame_header(memoryview(data[at:at + 9]))
        if len(data) - at - 9 < length:
            break
        frame_.parse_body(memoryview(data[at + 9:at + 9 + length]))
        out.append(frame_)
        at += 9 + length
    return out


class Answers:
    """What a client connection heard, per stream."""

    def __init__(self) -> None:
        self.status: dict[int, int] = {}
        self.headers: dict[int, dict[bytes, bytes]] = {}
        self.body: dict[int, bytes] = {}
        self.ended: set[int] = set()
        self.reset: dict[int, int] = {}
        self.goaway: ConnectionTerminated | None = None
        self.events: list[Event] = []

    def take(self, conn: H2Connection, events: list[Event]) -> None:
        self.events += events
        for event in events:
            if isinstance(event, ResponseReceived):
                fields = dict(event.headers)  # type: ignore[arg-type]
                self.headers[event.stream_id] = fields
                self.status[event.stream_id] = int(fields[b":status"])
            elif isinstance(event, DataReceived):
                self.body[event.stream_id] = self.body.get(event.stream_id, b"") + event.data
                if event.flow_controlled_length:
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                self.ended.add(event.stream_id)
            elif isinstance(event, StreamReset):
                self.reset[event.stream_id] = event.error_code
            elif isinstance(event, ConnectionTerminated):
                self.goaway = event


class FakeTimers:
    """In place of a protocol's event loop: `time()` and `call_at`/`call_later` on a clock the test advances."""

    class Handle:
        def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
            self.when, self.callback, self.args, self.cancelled = when, callback, args, False

        def cancel(self) -> None:
            self.cancelled = True

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.handles: list[FakeTimers.Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> FakeTimers.Handle:
        handle = FakeTimers.Handle(when, callback, args)
        self.handles.append(handle)
        return handle

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> FakeTimers.Handle:
        return self.call_at(self.now + delay, callback, *args)

    def call_soon(self, callback: Callable[..., object], *args: Any) -> FakeTimers.Handle:
        return self.call_at(self.now, callback, *args)

    def advance(self, seconds: float) -> None:
        """Move the clock on, running each timer that falls due (in time order, as they come due)."""
        end = self.now + seconds
        while True:
            due = sorted((h for h in self.handles if not h.cancelled and h.when <= end), key=lambda h: h.when)
            if not due:
                break
            handle = due[0]
            self.handles.remove(handle)
            self.now = max(self.now, handle.when)
            handle.callback(*handle.args)
        self.now = end


class H2Pair:
    """A client `H2Connection` and an `H2ServerProtocol` joined by a FakeTransport (no socket); with `timers`,
    the server's clock and timers are the test's."""

    def __init__(self, dispatch: Dispatch, timers: FakeTimers | None = None, **settings: Any) -> None:
        self.state = ListenerState(ServerSettings(dispatch=dispatch, **settings))
        loop = cast(asyncio.AbstractEventLoop, timers) if timers is not None else asyncio.get_running_loop()
        self.server = H2ServerProtocol(self.state, loop)
        self.transport: FakeTransport = connect(self.server)
        self.client = client_connection()
        self.answers = Answers()
        self._read = 0

    def flush(self) -> None:
        """Client output to the server, then server output back to the client."""
        data = self.client.data_to_send()
        if data:
            self.raw(data)
        self.pull()

    def raw(self, data: bytes) -> None:
        self.server.data_received(data)

    def pull(self) -> None:
        self.server.write_pending()  # what the server deferred to the end of the loop's turn: the test reads now
        out = self.transport.written
        while self._read < len(out):
            chunk = out[self._read]
            self._read += 1
            try:
                events = self.client.receive_data(chunk)
            except Exception:  # the server broke the protocol: the test sees it in what was heard
                raise
            self.answers.take(self.client, events)
        data = self.client.data_to_send()
        if data and not self.transport.closing:
            self.server.data_received(data)
            self.pull()

    def frames(self) -> list[Frame]:
        """Everything the server wrote, as frames (h2's client stops reading at a GOAWAY; this does not)."""
        return parse_frames(self.transport.data)

    def request(self, path: str = "/", method: str = "GET", body: bytes = b"",
                extra: list[tuple[str, str]] | None = None) -> int:
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, request_headers(path, method, extra=extra), end_stream=not body)
        if body:
            self.client.send_data(sid, body, end_stream=True)
        self.flush()
        return sid


class H2Socket:
    """An h2 client over a blocking socket to a running proxy."""

    def __init__(self, address: tuple[str, int], timeout: float = 5.0, window: int | None = None,
                 preface_in_pieces: bool = False, upgrade: bytes | None = None) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.answers = Answers()
        self.closed = False
        self.switched = b""  # with `upgrade`: the server's answer head to the HTTP/1.1 request
        if upgrade is not None:  # h2c by Upgrade: `upgrade` is an HTTP/1.1 request head (without its blank line)
            self.conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
            settings = self.conn.initiate_upgrade_connection()
            assert settings is not None
            head, _, body = upgrade.partition(b"\r\n\r\n")
            self.sock.sendall(head + b"\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: " +
                              settings + b"\r\n\r\n" + body)
            data = b""
            while b"\r\n\r\n" not in data and (chunk := self.sock.recv(65_536)):
                data += chunk
            self.switched, _, rest = data.partition(b"\r\n\r\n")
            if not self.switched.startswith(b"HTTP/1.1 101"):
                self.closed = True
                return
            self.send()  # the client preface follows the 101
            if rest:
                self.answers.take(self.conn, self.conn.receive_data(rest))
            return
        self.conn = client_connection(window)
        if preface_in_pieces:  # a byte at a time, with pauses: the server must wait for the rest
            data = self.conn.data_to_send()
            for i in range(len(PREFACE)):
                self.sock.sendall(data[i:i + 1])
                time.sleep(0.01)
            self.sock.sendall(data[len(PREFACE):])
        self.send()

    def send(self, raw: bytes = b"") -> None:
        data = self.conn.data_to_send() + raw
        if data:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def request(self, path: str = "/", method: str = "GET", body: bytes = b"", authority: str = "test",
                extra: list[tuple[str, str]] | None = None) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, request_headers(path, method, authority, extra), end_stream=not body)
        if body:
            self.conn.send_data(sid, body, end_stream=True)
        self.send()
        return sid

    def read_until(self, done: Any, timeout: float = 5.0) -> Answers:
        """Read until `done(answers)` is true or the server closes; fails after `timeout`."""
        deadline = time.monotonic() + timeout
        while not done(self.answers) and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no answer in {timeout}s: {self.answers.events[-5:]}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65_536)
            except (TimeoutError, ConnectionResetError):
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            try:
                events = self.conn.receive_data(data)
            except Exception:
                self.closed = True
                break
            self.answers.take(self.conn, events)
            self.send()
        return self.answers

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> H2Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["PREFACE", "Answers", "H2Pair", "H2Socket", "client_connection", "frame", "parse_frames", "request_headers"]
