"""The downstream HTTP/1.1 connection: an asyncio Protocol around `RequestParser`.

Each request read goes to the listener's `dispatch` (its request stack, built by runtime/listener.py) with a
callback for the answer; dispatch answers at once (a local reply), or returns what is under way (a task, or an
exchange driven by callbacks) so that a disconnect can cancel it, and a batcher can drop a caller whose batch
is not yet sealed. One request is served at a time per connection: pipelined requests wait their turn (answers
go out in order) up to `max_pipelined` requests and `max_pipelined_bytes` of their bodies, then reading
pauses. One timer per connection (a watchdog re-armed lazily) enforces the header-read timeout (slowloris), the
idle timeout and the send timeout (see http/flow.py). `serve_handler` makes a dispatch of an async handler
(the admin API).

An answer is written in one go, head and body, unless it comes with a stream (larger than the listener's
`max_buffer_bytes`, see http/stream.py): then its head goes out, the connection becomes the stream's sink
(framed by the upstream's Content-Length, else chunked, else, for an HTTP/1.0 caller, by closing), and the
transport's write-buffer watermarks pause and resume the upstream. An answer that fails mid-body aborts the
connection: the caller must not mistake a cut answer for a whole one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, cast

from meshbatch.errors import ProxyError, RequestTimeout
from meshbatch.http.flow import SendWatch, may_resume, must_pause, queued_bytes
from meshbatch.http.message import Handler, Request, Response
from meshbatch.http.parser import ParserLimits, RequestParser
from meshbatch.http.serialize import LAST_CHUNK, chunk, encode_response, encode_stream_head, local_reply

if TYPE_CHECKING:
    from meshbatch.http.stream import BodyStream

log = logging.getLogger("meshbatch.server")

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: closing sends a reset and drops what is unsent
Observer = Callable[[Request, Response, float], None]
Answer = Callable[[Response], None]


class ConnectionGuard(Protocol):
    """What a connection checks of each of its requests (security/guard.py: the peer's identity, its rates)."""

    def admit(self, request: Request) -> ProxyError | None: ...


class Pending(Protocol):
    """An answer under way (a task, an exchange): cancelled when the caller goes away."""

    def cancel(self) -> object: ...


# A listener's request stack: answer through the callback, once; return what is under way (None: answered).
Dispatch = Callable[[Request, Answer], "Pending | None"]


def serve_handler(handler: Handler, loop: asyncio.AbstractEventLoop) -> Dispatch:
    """A dispatch that runs an async handler in a task per request (the admin API, tests)."""

    async def run(request: Request, answer: Answer) -> None:
        try:
            response = await handler(request)
        except ProxyError as error:
            response = local_reply(error)
        except asyncio.CancelledError:
            return  # the client went away; nobody to answer
        except Exception:
            log.exception("handler failed for %r", request)
            response = local_reply(ProxyError("internal_error"))
        answer(response)

    def dispatch(request: Request, answer: Answer) -> Pending | None:
        return loop.create_task(run(request, answer))

    return dispatch


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What a listener's connections need; replaced as a whole on reload (connections read it per request)."""

    dispatch: Dispatch
    parser_limits: ParserLimits = field(default_factory=ParserLimits)
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections: int = 10_000
    max_pipelined: int = 32
    max_pipelined_bytes: int = 1_048_576
    max_buffer_bytes: int = 1_048_576  # the write buffer's high-water mark (and the streaming threshold)
    send_timeout: float = 30.0
    request_id_in_response: bool = True
    scheme: bytes = b"http"
    observe: Observer | None = None
    # mTLS and connection rates (meshbatch.security): run in connection_made, it refuses a peer (ProxyError) or
    # gives the connection a guard that admits each request; None (no TLS, no rates): no per-request work.
    guard: Callable[[asyncio.BaseTransport], ConnectionGuard | None] | None = None
    # Opaque here: read by the accept loop of a listener with a `tls` block for each new connection
    # (security/listener.py `ServerTls`).
    tls: object | None = None


@dataclass(slots=True)
class ListenerState:
    """Shared by all connections of one listener: the live settings, the open connections, drain state."""

    settings: ServerSettings
    connections: set[HttpServerProtocol] = field(default_factory=set)
    draining: bool = False
    rejected_connections: int = 0
    accepted_connections: int = 0
    aborts: dict[str, int] = field(default_factory=dict)  # connections aborted, by reason (send_timeout, ...)

    emptied: asyncio.Event = field(default_factory=asyncio.Event)

    def drain(self, close_idle: bool = True) -> None:
        """Stop keep-alive: busy connections close after their current answer, and so do idle ones after their
        next answer; with `close_idle`, idle connections close now (else call `close_idle()` later)."""
        self.draining = True
        if close_idle:
            self.close_idle()
        if not self.connections:
            self.emptied.set()

    def close_idle(self) -> None:
        for conn in list(self.connections):
            conn.close_if_idle()

    def forget(self, conn: HttpServerProtocol) -> None:
        self.connections.discard(conn)
        if self.draining and not self.connections:
            self.emptied.set()

    @property
    def active_requests(self) -> int:
        return sum(1 for c in self.connections if c.busy)


_random_bits = random.Random(int.from_bytes(os.urandom(16), "big")).getrandbits


def _new_request_id() -> bytes:
    # 128 random bits as 32 hex digits: unique enough to trace by, without a getrandom(2) syscall each.
    return b"%032x" % _random_bits(128)


class HttpServerProtocol(asyncio.Protocol):
    __slots__ = (
        "_current",
        "_current_settings",
        "_eof",
        "_error",
        "_guard",
        "_head_started",
        "_last_activity",
        "_loop",
        "_lost",
        "_paused_reading",
        "_paused_writing",
        "_pending",
        "_send",
        "_settings",
        "_stream",
        "_stream_chunked",
        "_stream_close",
        "_stream_keep_alive",
        "_watch_at",
        "_watchdog",
        "_written",
        "closed",
        "parser",
        "state",
        "transport",
    )

    def __init__(self, state: ListenerState, loop: asyncio.AbstractEventLoop) -> None:
        self.state = state
        self._loop = loop
        self._settings = state.settings
        self.transport: asyncio.Transport | None = None
        self.parser: RequestParser | None = None
        self._pending: Pending | None = None  # the answer under way for `_current`
        self._watchdog: asyncio.TimerHandle | None = None
        self._watch_at = 0.0
        self._head_started = 0.0
        self._paused_reading = False
        self._paused_writing = False
        self._last_activity = loop.time()
        self._error: ProxyError | None = None
        self._eof = False
        self._current: Request | None = None  # the request being served (its answer not yet written)
        self._current_settings = state.settings
        self._guard: ConnectionGuard | None = None
        self.closed = False
        self._lost = False
        self._stream: BodyStream | None = None  # the answer whose body is being streamed to the client
        self._stream_chunked = False
        self._stream_close = False
        self._stream_keep_alive = False
        self._written = 0  # bytes handed to the transport (the send watch's measure of progress)
        self._send = SendWatch()

    @property
    def busy(self) -> bool:
        parser = self.parser
        return self._current is not None or self._stream is not None or \
            (parser is not None and (parser.in_message or bool(parser.ready)))

    # connection lifecycle ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        state = self.state
        if len(state.connections) >= self._settings.max_connections or state.draining:
            state.rejected_connections += 1
            self.closed = True
            self.transport.abort()
            return
        guard = self._settings.guard
        if guard is not None:
            try:
                self._guard = guard(transport)
            except ProxyError:  # a TLS peer whose identity is refused: no answer, the connection drops
                state.rejected_connections += 1
                self.closed = True
                self.transport.abort()
                return
        state.connections.add(self)
        state.accepted_connections += 1
        self.transport.set_write_buffer_limits(high=self._settings.max_buffer_bytes)
        peer = transport.get_extra_info("peername")
        client = peer[0] if isinstance(peer, tuple) else ""
        self.parser = RequestParser(self._settings.parser_limits, client, self._settings.scheme)
        self._watch(self._loop.time() + self._settings.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._lost = True
        self.state.forget(self)
        stream = self._stream
        if stream is not None:  # the client left mid-body: the upstream connection is dropped, never reused
            self._stream = None
            stream.abandon()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        pending = self._pending
        if pending is not None:
            self._pending = None
            self._current = None
            pending.cancel()
        parser = self.parser
        if parser is not None:
            # httptools' parser holds the RequestParser's bound callbacks: a reference cycle that only the cyclic
            # collector would free. Dropping it here frees a closed connection's parser at once.
            self.parser = None
            parser.ready.clear()
            parser.detach()

    def pause_writing(self) -> None:
        self._paused_writing = True
        if self._stream is not None:
            self._stream.pause()  # the upstream stops being read until the client catches up
        if not self._send.watching:
            self._output_pending()

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._stream is not None:
            self._stream.resume()
        self._next()

    # reading -------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None or self.closed:
            return
        now = self._loop.time()
        self._last_activity = now
        try:
            parser.feed(data, now)
        except ProxyError as error:
            self._fail(error)
            return
        # A head is being read: a partial one, or, on an idle connection, bytes that began none (llhttp skips
        # CRLFs before a request; a client sending only those must not hold the connection past the timeout).
        if not parser.headers_done and (parser.in_message or not (parser.ready or self.busy)):
            if not self._head_started:
                self._head_started = now
                self._watch(now + self._settings.header_timeout)
        else:
            self._head_started = 0.0
        if parser.continue_wanted and self._current is None and not parser.ready:
            parser.continue_wanted = False
            assert self.transport is not None
            self.transport.write(CONTINUE)
        if parser.ready:
            self._next()
            ready = parser.ready
            if ready and not self._paused_reading:
                settings = self._settings
                if must_pause(len(ready), queued_bytes(ready), settings.max_pipelined, settings.max_pipelined_bytes):
                    self._paused_reading = True
                    assert self.transport is not None
                    self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        # A half-closed client still gets its pending answers; then we close (a partial request never ends).
        self._eof = True
        if self._current is None and self._stream is None and \
                not (self.parser is not None and self.parser.ready):
            self._close()
        return True

    def _next(self) -> None:
        parser = self.parser
        if self._current is not None or self._stream is not None or parser is None or \
                not parser.ready or self._paused_writing or self.closed:
            return
        ready = parser.ready
        request = ready.popleft()
        if self._paused_reading and self._error is None:
            settings = self._settings
            if may_resume(len(ready), queued_bytes(ready), settings.max_pipelined, settings.max_pipelined_bytes):
                self._paused_reading = False
                assert self.transport is not None
                self.transport.resume_reading()
        settings = self.state.settings
        self._settings = settings
        if not request.request_id:
            request.request_id = _new_request_id()
            request.headers.append((b"x-request-id", request.request_id))
        guard = self._guard
        if guard is not None:  # peer identity onto the request; connection and identity rates
            refused = guard.admit(request)
            if refused is not None:
                self._respond(request, local_reply(refused), settings)
                return
        self._serving(request, settings)
        pending = settings.dispatch(request, self._answer)
        if self._serves(request):  # not answered yet (a local reply, or a fast exchange, may answer at once)
            self._pending = pending

    # `_current` is set and read through these two, not in `_next`: there the compiled build would take its type
    # as narrowed by `_next`'s own tests and assignments, although `dispatch` may answer (and clear) it meanwhile.
    def _serving(self, request: Request, settings: ServerSettings) -> None:
        self._current = request
        self._current_settings = settings

    def _serves(self, request: Request) -> bool:
        return self._current is request

    def _answer(self, response: Response) -> None:
        request = self._current
        if request is None:  # the caller went away meanwhile: nobody to answer
            if response.stream is not None:
                response.stream.abandon()
            return
        self._current = None
        self._pending = None
        self._respond(request, response, self._current_settings)

    # writing -------------------------------------------------------------------------------------
    def _respond(self, request: Request, response: Response, settings: ServerSettings) -> None:
        stream = response.stream
        transport = self.transport
        if self.closed or transport is None:
            if stream is not None:
                stream.abandon()  # nobody to read it: the upstream connection is dropped
            return
        if stream is not None and stream.error is not None:
            response, stream = local_reply(stream.error), None  # it failed before its head went out: a status
        keep_alive = request.keep_alive and not self.state.draining
        request_id = request.request_id if settings.request_id_in_response else b""
        if stream is None:
            data = encode_response(response, keep_alive, request.method == b"HEAD", request_id)
        else:
            chunked = stream.length < 0 and request.version == b"1.1"
            close = stream.length < 0 and not chunked  # an HTTP/1.0 caller: the body ends when we close
            keep_alive = keep_alive and not close
            data = encode_stream_head(response, stream.length, chunked, keep_alive, request_id)
        transport.write(data)
        self._written += len(data)
        now = self._loop.time()
        self._last_activity = now
        if transport.get_write_buffer_size() and not self._send.watching:
            self._output_pending()
        if settings.observe is not None:
            settings.observe(request, response, now - request.received_at)
        if stream is not None:
            self._stream = stream
            self._stream_chunked = chunked
            self._stream_close = close
            self._stream_keep_alive = keep_alive
            if self._paused_writing:
                stream.pause()
            stream.attach(self)  # the body follows (perhaps at once, perhaps all of it)
            return
        self._after(keep_alive)

    def _after(self, keep_alive: bool) -> None:
        """An answer is out: close, or go on with the next request, the pending error, or a half-close."""
        if not keep_alive:
            self._close()
            return
        parser = self.parser
        if parser is not None and parser.ready:
            self._next()
        elif self._error is not None:
            self._answer_error()
        elif self._eof:
            self._close()
        elif parser is not None and parser.continue_wanted and self.transport is not None:
            parser.continue_wanted = False
            self.transport.write(CONTINUE)

    # a streamed body (this connection is the stream's sink) -----------------------------------------
    def stream_data(self, data: bytes) -> None:
        transport = self.transport
        if self._stream is None or transport is None or self.closed:
            return
        if self._stream_chunked:
            data = chunk(data)
        transport.write(data)
        self._written += len(data)
        if transport.get_write_buffer_size() and not self._send.watching:
            self._output_pending()

    def stream_end(self) -> None:
        transport = self.transport
        if self._stream is None or transport is None or self.closed:
            return
        self._stream = None
        if self._stream_chunked:
            transport.write(LAST_CHUNK)
            self._written += len(LAST_CHUNK)
        self._last_activity = self._loop.time()
        if self._stream_close:
            self._close()
            return
        self._after(self._stream_keep_alive and not self.state.draining)

    def stream_abort(self, error: ProxyError) -> None:
        """The upstream failed mid-body: no status can be sent any more, so the connection is aborted."""
        if self._stream is None:
            return
        self._stream = None
        self._abort(error.reason)

    def _fail(self, error: ProxyError) -> None:
        """A protocol error: requests already read still get their answers, then the error, then close."""
        self._error = error
        if self.transport is not None and not self._paused_reading:
            self._paused_reading = True
            self.transport.pause_reading()
        if self._current is None and self._stream is None:
            if self.parser is not None and self.parser.ready:
                self._next()  # read in the same bytes as the bad one: answered first, then the error
            else:
                self._answer_error()

    def _answer_error(self) -> None:
        error = self._error
        assert error is not None
        response = local_reply(error)
        if self.transport is not None and not self.closed:
            data = encode_response(response, keep_alive=False)
            self.transport.write(data)
            self._written += len(data)
            if self.transport.get_write_buffer_size() and not self._send.watching:
                self._output_pending()
            observe = self._settings.observe
            if observe is not None:
                client = self.parser.client if self.parser else ""
                observe(Request(b"-", b"-", [], client=client, received_at=self._loop.time()), response, 0.0)
        self._close()

    def _close(self) -> None:
        # A graceful close: what is unsent still goes out (the send watch aborts a client that takes none).
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def _abort(self, reason: str) -> None:
        """Drop the connection now, unsent output and all (counted by reason). A reset, not a FIN: a caller
        reading a body that ends with the connection (HTTP/1.0) must not take a cut one for a whole one."""
        aborts = self.state.aborts
        aborts[reason] = aborts.get(reason, 0) + 1
        self.closed = True
        stream = self._stream
        if stream is not None:
            self._stream = None
            stream.abandon()
        transport = self.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            transport.abort()

    def close_if_idle(self) -> None:
        if not self.busy:
            self._close()

    # timers --------------------------------------------------------------------------------------
    def _output_pending(self) -> None:
        """Output is waiting in the transport: watch that the client keeps taking it."""
        if self.transport is not None and not self._lost:
            buffered = self.transport.get_write_buffer_size()
            if buffered:
                self._watch(self._send.begin(self._written, buffered, self._loop.time(), self._settings.send_timeout))

    def _watch(self, at: float) -> None:
        """Make sure the watchdog fires no later than `at`."""
        if self._lost:
            return
        if self._watchdog is not None:
            if self._watch_at <= at:
                return
            self._watchdog.cancel()
        self._watch_at = at
        self._watchdog = self._loop.call_at(at, self._on_watchdog)

    def _on_watchdog(self) -> None:
        self._watchdog = None
        transport = self.transport
        if self._lost or transport is None:
            return
        settings = self._settings
        now = self._loop.time()
        if self._send.watching:  # even after a graceful close, which waits for the output to go
            at = self._send.check(self._written, transport.get_write_buffer_size(), now, settings.send_timeout)
            if at < 0:
                self._abort("send_timeout")
                return
            if at:
                self._watch(at)
        if self.closed:
            return
        parser = self.parser
        if parser is not None and not parser.headers_done and self._head_started:
            deadline = self._head_started + settings.header_timeout
            if now >= deadline:
                self._fail(RequestTimeout("header_timeout", "request headers not received in time"))
            else:
                self._watch(deadline)
            return
        deadline = self._last_activity + settings.idle_timeout
        if parser is not None and parser.in_message and self._current is None:
            if now >= deadline:  # a body that stopped arriving
                self._fail(RequestTimeout("body_timeout", "request body not received in time"))
            else:
                self._watch(deadline)
            return
        if self.busy:  # the handler has its own timeouts (a streamed body: the route's, and the send timeout)
            self._watch(now + settings.idle_timeout)
        elif now >= deadline:
            if transport.get_write_buffer_size():
                self._abort("idle_timeout")  # a graceful close would wait for a flush that never comes
            else:
                self._close()
        else:
            self._watch(deadline)


def protocol_factory(state: ListenerState, loop: asyncio.AbstractEventLoop) -> Callable[[], HttpServerProtocol]:
    def make() -> HttpServerProtocol:
        return HttpServerProtocol(state, loop)

    return make


__all__ = ["Answer", "ConnectionGuard", "Dispatch", "HttpServerProtocol", "ListenerState", "Pending",
           "ServerSettings", "protocol_factory", "serve_handler"]
