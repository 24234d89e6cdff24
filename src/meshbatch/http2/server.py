"""The downstream HTTP/2 connection's I/O: an asyncio Protocol around h2's sans-I/O `H2Connection`.

Each stream whose request is whole becomes a `Request` (http2/head.py: the same checks as HTTP/1.1) handed to the
listener's `dispatch` (one whose body is still arriving, with it as an upload: http2/uploads.py; the request of an
`Upgrade: h2c` is stream 1: http2/upgrade.py), exactly as http/server.py does for HTTP/1.1: the connection's guard
admits it (mTLS identity, rates), an `x-request-id` is given when it has none, local replies come from
`local_reply`, the observer (access log, metrics) sees every answer. Answers go out as HEADERS, DATA within the
flow-control windows (http2/streams.py keeps what waits) and trailing HEADERS; a streamed body (http/stream.py) too.
A client's RST_STREAM cancels its stream's `Pending`: a batched caller withdraws its item as a closed HTTP/1.1
connection does.

Every byte read passes `FrameWatch` (http2/limits.py) first: an attack closes the connection with GOAWAY
ENHANCE_YOUR_CALM, counted in the listener's `aborts` by reason. One timer (a watchdog re-armed lazily) enforces
the preface and header-block timeouts, stalled request bodies (408), the idle timeout, the send timeout (a client
that reads nothing) and the zero-window stall (a client that grants no credit). Drain sends GOAWAY with the last
stream id, finishes the open streams, then closes.
"""

from __future__ import annotations

import asyncio
import functools
from typing import cast

from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import DenialOfServiceError, H2Error, ProtocolError

from meshbatch.errors import PayloadTooLarge, ProxyError, RequestTimeout
from meshbatch.http.message import Request
from meshbatch.http.serialize import local_reply
from meshbatch.http.serving import ConnectionGuard, new_request_id
from meshbatch.http2.connection import new_connection
from meshbatch.http2.head import build_request, trailer_fields
from meshbatch.http2.limits import FrameWatch
from meshbatch.http2.sending import H2Sender
from meshbatch.http2.streams import H2Stream
from meshbatch.http2.uploads import dispatch_early, upload_data


class H2ServerProtocol(H2Sender):
    """One downstream HTTP/2 connection. See the module docstring."""

    @property
    def busy(self) -> bool:
        return bool(self.streams)

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
        if settings.guard is not None:
            try:
                self._guard = settings.guard(transport)
            except ProxyError:  # a TLS peer whose identity is refused: no answer, the connection drops
                state.rejected_connections += 1
                self.closed = True
                self.transport.abort()
                return
        state.accepted_connections += 1
        self._begin(self.transport, new_connection(self.limits))

    def _begin(self, transport: asyncio.Transport, conn: H2Connection) -> None:
        """The connection is served from now on (accepted, or upgraded from HTTP/1.1: http2/upgrade.py)."""
        self.transport = transport
        self.state.connections.add(self)
        transport.set_write_buffer_limits(high=self._settings.max_buffer_bytes)
        self.flow.transport = transport
        peer = transport.get_extra_info("peername")
        self._client = peer[0] if isinstance(peer, tuple) else ""
        now = self._started = self._last_activity = self._loop.time()
        self.watch = FrameWatch(self.limits, now)
        self.h2 = conn
        self._write()
        self._watch(now + self._settings.header_timeout)

    def adopt(self, transport: asyncio.Transport, guard: ConnectionGuard | None, conn: H2Connection,
              request: Request, rest: bytes) -> None:
        """h2c by Upgrade: the 101 is written, `conn` has stream 1 half-closed; `request` is its request and
        `rest` what the client sent after it (its preface, first)."""
        self._guard = guard
        self._begin(transport, conn)
        assert self.watch is not None
        now = self._last_activity
        self.watch.opened(now)
        stream = self.streams[1] = H2Stream(1, self, now, self._settings.max_buffer_bytes)
        stream.request = request
        stream.ended = True
        self._highest = 1
        self._dispatch(stream, request)
        if rest and not self.closed:
            self.data_received(rest)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._lost = True
        self.state.forget(self)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.drop()

    def pause_writing(self) -> None:
        self.flow.writing_paused = True
        self._output_pending(self.flow.wrote(0))

    def resume_writing(self) -> None:
        self.flow.writing_paused = False
        self._send_all()
        self._write()

    def eof_received(self) -> bool | None:
        self._remote_goaway = True  # nothing more comes: the open streams are answered, then it closes
        if not self.streams:
            self._close()
        transport = self.transport  # TLS has no half-close (http/server.py)
        return transport is None or transport.get_extra_info("sslcontext") is None

    # reading -------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        conn, watch = self.h2, self.watch
        if conn is None or watch is None or self.closed:
            return
        now = self._last_activity = self._loop.time()
        reason = watch.feed(data, now)
        if reason is not None:
            self._refuse(reason, ErrorCodes.ENHANCE_YOUR_CALM)
            return
        if watch.header_block_open:
            if not self._block_since:
                self._block_since = now
                self._watch(now + self._settings.header_timeout)
        else:
            self._block_since = 0.0
        try:
            events = conn.receive_data(data)
        except DenialOfServiceError:  # h2 has queued GOAWAY ENHANCE_YOUR_CALM
            self._refuse("h2_hpack_bomb", None)
            return
        except (ProtocolError, H2Error) as error:  # h2 has queued GOAWAY with the error's code (but for a bad
            # preface, found before its state machine runs)
            queued = conn.state_machine.state == ConnectionState.CLOSED
            code = None if queued else getattr(error, "error_code", ErrorCodes.PROTOCOL_ERROR)
            self._refuse("h2_protocol_error", code)
            return
        self._reading = True  # answers given during this read go out in one write, after it
        try:
            self._events(events, now)
            if self._fresh:  # streams whose body is still arriving: dispatched now, with an upload
                fresh, self._fresh = self._fresh, []
                for stream in fresh:
                    dispatch_early(self, stream)
        finally:
            self._reading = False
        if self.closed:
            return
        self._write()
        if self._remote_goaway and not self.streams:
            self._close()

    def _events(self, events: list[Event], now: float) -> None:
        for event in events:
            kind = type(event)
            if kind is RequestReceived:
                self._opened(cast(RequestReceived, event), now)
            elif kind is DataReceived:
                self._data(cast(DataReceived, event), now)
            elif kind is StreamEnded:
                self._ended(cast(StreamEnded, event).stream_id)
            elif kind is TrailersReceived:
                self._trailers(cast(TrailersReceived, event))
            elif kind is StreamReset:
                self._reset(cast(StreamReset, event).stream_id)
            elif kind is WindowUpdated:
                self._send_all()
            elif kind is RemoteSettingsChanged:
                self._settled = True
                self._send_all()
            elif kind is ConnectionTerminated:
                self._remote_goaway = True
            if self.closed:
                return

    def _opened(self, event: RequestReceived, now: float) -> None:
        conn, watch = self.h2, self.watch
        assert conn is not None and watch is not None
        sid = event.stream_id
        self._highest = max(self._highest, sid)
        if self._goaway:
            conn.reset_stream(sid, ErrorCodes.REFUSED_STREAM)  # after GOAWAY: the client retries elsewhere
            return
        reason = watch.opened(now)
        if reason is not None:  # the connection has served its share: the client goes on on a new one
            self.state.aborts[reason] = self.state.aborts.get(reason, 0) + 1
            self._send_goaway(ErrorCodes.NO_ERROR, sid - 2 if sid > 2 else 0)
            conn.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        settings = self._settings = self.state.settings
        stream = H2Stream(sid, self, now, settings.max_buffer_bytes)
        self.streams[sid] = stream
        try:
            stream.request = build_request(event.headers, settings.parser_limits,
                                           self._client, self._scheme, now)
            if settings.uploads:
                self._fresh.append(stream)
        except ProxyError as error:
            stream.error = error
            self._answer(stream, local_reply(error))

    def _data(self, event: DataReceived, now: float) -> None:
        conn = self.h2
        assert conn is not None
        sid = event.stream_id
        credit = event.flow_controlled_length
        stream = self.streams.get(sid)
        if stream is None or stream.request is None or (stream.responded and not stream.forwarding):
            self._credit(sid, credit)  # refused, or answered and not forwarded: dropped
            return
        data = event.data
        stream.last_activity = now
        limit = self._settings.parser_limits.max_body_bytes
        upload = stream.upload
        if upload is not None and not upload.collecting:  # forwarded as it arrives
            upload_data(self, conn, stream, upload, data, credit, limit)
            return
        stream.body_len += len(data)
        if stream.body_len > limit:
            self._buffered -= stream.body_len - len(data)
            stream.body = []
            self._credit(sid, credit)
            self._answer(stream, local_reply(PayloadTooLarge("body_too_large", f"body exceeds {limit} bytes")))
            return
        stream.body.append(data)
        self._buffered += len(data)
        # Credit goes back at once while the held bodies are within the cap; beyond it, once some leave.
        settings = self._settings
        if self._buffered <= settings.max_pipelined_bytes + limit:
            self._credit(sid, credit)
        else:
            self._deferred.append((sid, credit))

    def _trailers(self, event: TrailersReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None or stream.request is None or (stream.responded and not stream.forwarding):
            return
        try:
            stream.request.trailers = trailer_fields(event.headers,
                                                     self._settings.parser_limits)
        except ProxyError as error:
            self._answer(stream, local_reply(error))

    def _ended(self, sid: int) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            return
        stream.ended = True
        request = stream.request
        if request is not None and stream.responded and stream.upload is not None and stream.forwarding:
            stream.upload.end(request.trailers)  # (a bidi call answered as it went: its upstream hears the end)
        if request is None or stream.responded:
            if stream.closed or (stream.body_done and not stream.out_bytes):
                self._finished(stream)
            return
        upload = stream.upload
        if upload is not None and not upload.collecting:
            upload.end(request.trailers)
            return
        body = stream.body
        request.body = body[0] if len(body) == 1 else b"".join(body)
        self._release(stream)
        stream.body = []
        if upload is not None:
            upload.collected()  # its route waited for it whole
        else:
            self._dispatch(stream, request)

    def _dispatch(self, stream: H2Stream, request: Request) -> None:
        settings = self.state.settings
        self._settings = settings
        if not request.request_id:
            request.request_id = new_request_id()
            request.headers.append((b"x-request-id", request.request_id))
        guard = self._guard
        if guard is not None:  # peer identity onto the request; connection and identity rates
            refused = guard.admit(request)
            if refused is not None:
                self._answer(stream, local_reply(refused))
                return
        pending = settings.dispatch(request, functools.partial(self._answer, stream))
        if not stream.responded and not stream.closed:
            stream.pending = pending

    def _reset(self, sid: int) -> None:
        stream = self.streams.pop(sid, None)
        if stream is not None:
            if not stream.ended:
                self._release(stream)
            stream.drop()
        if self._goaway and not self.streams:
            self._close()

    def close_if_idle(self) -> None:
        """Drain: GOAWAY with the last stream id; open streams are finished, then the connection closes."""
        if self.closed:
            return
        self._send_goaway(ErrorCodes.NO_ERROR, self._highest)
        if not self.streams:
            self._close()

    # timers ------------------------------------------------------------------------------------
    def _on_watchdog(self) -> None:
        self._watchdog = None
        if self._lost or self.transport is None:
            return
        now = self._loop.time()
        settings = self._settings
        if self.flow.send.watching:  # even after a graceful close, which waits for the output to go
            at = self.flow.check_send(now, settings.send_timeout)
            if at < 0:
                self._abort("send_timeout")
                return
            if at:
                self._watch(at)
        if self.closed:
            return
        if self._stalled_since and not any(stream.out_bytes for stream in self.streams.values()):
            self._stalled_since = 0.0  # the streams that waited for credit are gone
        if self._stalled_since:
            if now - self._stalled_since >= settings.send_timeout:  # no window credit for a whole send timeout
                self._refuse("h2_zero_window", ErrorCodes.FLOW_CONTROL_ERROR)
                return
            self._watch(self._stalled_since + settings.send_timeout)
        if not self._settled or self._block_since:  # a preface or a header block that stopped arriving
            since = self._block_since or self._started
            if now - since >= settings.header_timeout:
                self._refuse("header_timeout", ErrorCodes.ENHANCE_YOUR_CALM)
                return
            self._watch(since + settings.header_timeout)
        for stream in list(self.streams.values()):
            if not stream.ended and not stream.responded and not stream.streaming:  # a body that stopped arriving
                if now - stream.last_activity >= settings.idle_timeout:
                    self._answer(stream, local_reply(RequestTimeout("body_timeout", "request body not received "
                                                                                    "in time")))
                else:
                    self._watch(stream.last_activity + settings.idle_timeout)
        if self.streams:
            self._watch(now + settings.idle_timeout)
        elif now - self._last_activity >= settings.idle_timeout:
            self._send_goaway(ErrorCodes.NO_ERROR, self._highest)
            self._close()
        else:
            self._watch(self._last_activity + settings.idle_timeout)


__all__ = ["H2ServerProtocol", "new_connection"]  # (new_connection: http2/connection.py)
