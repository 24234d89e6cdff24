"""The downstream HTTP/1.1 connection's I/O: an asyncio Protocol around a `ServerConnection` (the state machine
of http/server_machine.py), which decides what happens to every byte read, every answer and every timeout.

One request is served at a time per connection: pipelined requests wait their turn (answers go out in order)
up to `max_pipelined` requests and `max_pipelined_bytes` of their bodies, then reading pauses (the connection's
`Flow`, http/flow.py). One timer per connection (a watchdog re-armed lazily) enforces the header-read timeout
(slowloris), the idle timeout and the send timeout. An `Upgrade: h2c` request hands the connection to HTTP/2.

An answer is written in one go, head and body, unless it comes with a stream (larger than the listener's
`max_buffer_bytes`, or of unknown length and still arriving, see http/stream.py): then its head goes out, the
connection becomes the stream's sink (framed by the upstream's Content-Length, else chunked, else, for an
HTTP/1.0 caller, by closing), and the transport's write-buffer watermarks pause and resume the upstream; it is
observed (access log, metrics) once over. An answer that fails mid-body aborts the connection: the caller must
not mistake a cut answer for a whole one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from meshbatch.errors import ProxyError
from meshbatch.http.flow import Flow, abort_with_reset
from meshbatch.http.message import Request, Response
from meshbatch.http.parser import RequestParser
from meshbatch.http.serialize import local_reply
from meshbatch.http.server_machine import (
    CONTINUE,
    EXPIRED_ERROR,
    EXPIRED_IDLE,
    NEXT_CLOSE,
    NEXT_CONTINUE,
    NEXT_ERROR,
    NEXT_REQUEST,
    ServerConnection,
)
from meshbatch.http.serving import (
    Answer,
    ConnectionGuard,
    Dispatch,
    ListenerState,
    Pending,
    ServerSettings,
    new_request_id,
    serve_handler,
)

if TYPE_CHECKING:
    from meshbatch.http.stream import BodyStream
    from meshbatch.http.upgrade import Upgrade



def _gone(response: Response) -> None:
    """The answer callback of a lost connection: nobody to answer."""


class HttpServerProtocol(asyncio.Protocol):
    """The I/O of one downstream connection: bytes to its `ServerConnection`, what it answers to the transport."""

    __slots__ = ("_answer_to", "_guard", "_loop", "_lost", "_observing", "_pending", "_settings", "_stream",
                 "_watch_at", "_watchdog", "closed", "flow", "machine", "state", "transport")

    def __init__(self, state: ListenerState, loop: asyncio.AbstractEventLoop) -> None:
        self.state = state
        self._loop = loop
        self._settings = state.settings
        self.transport: asyncio.Transport | None = None
        self.machine: ServerConnection | None = None
        self.flow = Flow()
        self._watchdog: asyncio.TimerHandle | None = None
        self._watch_at = 0.0
        self._guard: ConnectionGuard | None = None
        self._pending: Pending | None = None  # the answer under way for the machine's current request
        self._stream: BodyStream | None = None  # the answer whose body is being streamed to the client
        self._observing: tuple[Request, Response] | None = None  # ... observed once it is over
        self.closed = False
        self._lost = False
        # `_answer` bound once, not once per request (dispatch takes it with every request); dropped when the
        # connection is lost, so that the connection is not kept alive by a cycle through its own method.
        self._answer_to: Answer = self._answer

    @property
    def busy(self) -> bool:
        machine = self.machine
        return machine is not None and machine.busy

    # connection lifecycle ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        state = self.state
        settings = self._settings
        if len(state.connections) >= settings.max_connections or state.draining:
            state.rejected_connections += 1
            self.closed = True
            self.transport.abort()
            return
        guard = settings.guard
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
        self.transport.set_write_buffer_limits(high=settings.max_buffer_bytes)
        self.flow.transport = self.transport
        peer = transport.get_extra_info("peername")
        client = peer[0] if isinstance(peer, tuple) else ""
        now = self._loop.time()
        parser = RequestParser(settings.parser_limits, client, settings.scheme)
        # h2c by Upgrade (http/upgrade.py) beside HTTP/1.1 on `codec: auto` in plaintext; over TLS, ALPN chooses
        parser.h2c = settings.codec == "auto" and transport.get_extra_info("ssl_object") is None
        self.machine = ServerConnection(parser, settings, now)
        self._watch(now + settings.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._lost = True
        self._answer_to = _gone
        self.state.forget(self)
        self._drop_stream()  # (the client left mid-body)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        pending = self._pending
        self._pending = None
        machine = self.machine
        if machine is not None:
            machine.closed()
            # httptools' parser holds the RequestParser's bound callbacks: a reference cycle that only the cyclic
            # collector would free. Dropping it here frees a closed connection's parser at once.
            machine.parser.ready.clear()
            machine.parser.detach()
        if pending is not None:
            pending.cancel()

    def pause_writing(self) -> None:
        self.flow.writing_paused = True
        if self._stream is not None:
            self._stream.pause()  # the upstream stops being read until the client catches up
        self._output_pending(self.flow.wrote(0))

    def resume_writing(self) -> None:
        self.flow.writing_paused = False
        if self._stream is not None:
            self._stream.resume()
        self._pump()

    # reading -------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        machine = self.machine
        if machine is None or self.closed:
            return
        now = self._loop.time()
        if machine.receive(data, now):
            self._watch(now + self._settings.header_timeout)
        if machine.error is not None:
            self.flow.stop_reading()
        self._pump()
        if machine.parser.ready:
            settings = self._settings
            ready = machine.parser.ready
            self.flow.queue_grew(ready, len(ready), settings.max_pipelined, settings.max_pipelined_bytes)

    def eof_received(self) -> bool | None:
        # A half-closed client still gets its pending answers; then we close (a partial request never ends).
        machine = self.machine
        if machine is not None and machine.half_closed():
            self._close()
        # Over TLS there is no half-close (the TLS transport closes itself whatever this says, and warns when told
        # to keep it open): keep the connection open for pending answers on plain TCP only.
        transport = self.transport
        return transport is None or transport.get_extra_info("sslcontext") is None

    def _pump(self) -> None:
        """Do what the machine says is next: serve a waiting request, answer the pending error, close, or
        send 100 Continue."""
        machine = self.machine
        if machine is None or self.closed:
            return
        step = machine.step()
        if step == NEXT_REQUEST:
            if not self.flow.writing_paused:
                self._next(machine)
        elif step == NEXT_ERROR:
            self._answer_error(machine)
        elif step == NEXT_CLOSE:
            self._close()
        elif step == NEXT_CONTINUE:
            self._write(CONTINUE)

    def _next(self, machine: ServerConnection) -> None:
        settings = self.state.settings
        self._settings = settings
        request = machine.take(settings)
        upgrade = machine.parser.upgrade
        if upgrade is not None and upgrade.request is request and self._switched(upgrade):
            return
        flow = self.flow
        if flow.reading_paused:
            ready = machine.parser.ready
            flow.queue_shrank(ready, len(ready), settings.max_pipelined, settings.max_pipelined_bytes)
        if not request.request_id:
            request.request_id = new_request_id()
            request.headers.append((b"x-request-id", request.request_id))
        guard = self._guard
        if guard is not None:  # peer identity onto the request; connection and identity rates
            refused = guard.admit(request)
            if refused is not None:
                self._answer(local_reply(refused))
                return
        pending = settings.dispatch(request, self._answer_to)
        # Read through the machine, not here: dispatch may answer (and clear) the current request meanwhile, and
        # the compiled build would take a test of it in this function as still true.
        if machine.serves(request):
            self._pending = pending

    def _switched(self, upgrade: Upgrade) -> bool:
        """An h2c upgrade request is next: the connection becomes HTTP/2's (http2/upgrade.py), unless draining."""
        machine = self.machine
        if self.state.draining or upgrade.overflow or machine is None or self.transport is None:
            return False  # served over HTTP/1.1 (draining: then closed)
        from meshbatch.http2.upgrade import switch  # (h2 is imported by the first HTTP/2 connection)

        refused = switch(self.state, self._loop, self.transport, self._guard, upgrade)
        if refused is not None:  # settings h2 refuses: answered over HTTP/1.1, then the connection closes
            machine.parser.upgrade = None
            upgrade.request.keep_alive = False
            self._answer(local_reply(refused))
            return True
        self.closed = self._lost = True  # the transport is the HTTP/2 connection's now
        self._answer_to = _gone
        self.state.forget(self)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        machine.parser.detach()
        return True

    def _answer(self, response: Response) -> None:
        machine = self.machine
        stream = response.stream
        if machine is None or machine.current is None or self.closed:  # the caller went away meanwhile
            if stream is not None:
                stream.abandon()  # nobody to read it: the upstream connection is dropped
            return
        request = machine.current
        self._pending = None
        if stream is not None and stream.error is not None:
            response, stream = local_reply(stream.error), None  # it failed before its head went out: a status
        now = self._loop.time()
        data = machine.answer(response, self.state.draining, now)
        self._write(data)
        settings = machine.settings
        if stream is not None:  # observed at its end (or when it is cut off)
            self._observing = (request, response)
            self._stream = stream
            if self.flow.writing_paused:
                stream.pause()
            stream.attach(self)  # the body follows (perhaps at once, perhaps all of it)
            return
        if settings.observe is not None:
            settings.observe(request, response, now - request.received_at)
        self._pump()

    # writing -------------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and data:
            transport.write(data)
            flow = self.flow
            flow.written += len(data)
            buffered = transport.get_write_buffer_size()
            if buffered:
                self._output_pending(buffered)

    # a streamed body (this connection is the stream's sink) -----------------------------------------
    def stream_data(self, data: bytes) -> None:
        machine = self.machine
        if self._stream is None or machine is None or self.closed:
            return
        self._write(machine.stream_data(data))

    def stream_end(self) -> None:
        machine = self.machine
        if self._stream is None or machine is None or self.closed:
            return
        stream, self._stream = self._stream, None
        self._write(machine.stream_end(self.state.draining, self._loop.time(), stream.trailers))
        self._drop_stream()
        self._pump()

    def stream_abort(self, error: ProxyError) -> None:
        """The upstream failed mid-body: no status can be sent any more, so the connection is aborted."""
        if self._stream is None:
            return
        self._stream = None
        self._abort(error.reason)

    def _drop_stream(self) -> None:
        """A streamed answer is over (its end written, or the client gone: then the upstream connection is
        dropped, never reused); it is observed now, so its duration is the whole answer's."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abandon()
        observing, self._observing = self._observing, None
        observe = self._settings.observe
        if observing is not None and observe is not None:
            observe(observing[0], observing[1], self._loop.time() - observing[0].received_at)

    def _answer_error(self, machine: ServerConnection) -> None:
        response, data = machine.error_reply()
        self._write(data)
        observe = self._settings.observe
        if observe is not None:
            client = machine.parser.client
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
        self._drop_stream()
        abort_with_reset(self.transport)

    def close_if_idle(self) -> None:
        if not self.busy:
            self._close()

    # timers --------------------------------------------------------------------------------------
    def _output_pending(self, buffered: int) -> None:
        """Output is waiting in the transport: watch that the client keeps taking it."""
        if buffered and not self._lost:
            at = self.flow.watch_send(buffered, self._loop.time(), self._settings.send_timeout)
            if at:
                self._watch(at)

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
        machine = self.machine
        if self._lost or machine is None or self.transport is None:
            return
        now = self._loop.time()
        if self.flow.send.watching:  # even after a graceful close, which waits for the output to go
            at = self.flow.check_send(now, self._settings.send_timeout)
            if at < 0:
                self._abort("send_timeout")
                return
            if at:
                self._watch(at)
        if self.closed:
            return
        at = machine.expire(now)
        if at == EXPIRED_ERROR:
            self.flow.stop_reading()
            self._pump()
        elif at == EXPIRED_IDLE:
            if self.transport.get_write_buffer_size():
                self._abort("idle_timeout")  # a graceful close would wait for a flush that never comes
            else:
                self._close()
        elif at:
            self._watch(at)


def protocol_factory(state: ListenerState, loop: asyncio.AbstractEventLoop) -> Callable[[], HttpServerProtocol]:
    def make() -> HttpServerProtocol:
        return HttpServerProtocol(state, loop)

    return make


__all__ = ["Answer", "ConnectionGuard", "Dispatch", "HttpServerProtocol", "ListenerState", "Pending",
           "ServerSettings", "protocol_factory", "serve_handler"]
