"""One HTTP/2 upstream connection: an asyncio Protocol around h2's sans-I/O `H2Connection`, carrying many requests
at once, each a `ClientStream` (http2/client_stream.py).

- Streams: at most the peer's SETTINGS_MAX_CONCURRENT_STREAMS (and `max_streams` of ours) at once; no stream is
  opened before the peer's first SETTINGS arrived (`ready`), so its limit is known. `available` says whether
  one more may be opened now; `on_free` tells the pool when a stream slot frees up (or the limit grew).
- Flow control: request bodies go out as the peer's windows allow (the rest waits for WINDOW_UPDATE and a full
  transport). Data is credited back as it is taken (http2/credit.py): a stream's window stays closed while its
  streamed body's consumer is paused; nothing is held beyond one window per stream.
- Answers: headers, body and trailers into a `Response` (grpc-status arrives in `trailers`); streamed past the
  stream limit, or when a read leaves one of unknown length unfinished after some body; each has its deadline (504
  `upstream_timeout`, RST_STREAM CANCEL); `cancel` resets a stream whose caller gave up.
- GOAWAY: no new stream; streams above its last stream id were never processed and fail with `StreamRefused` (safe
  to replay, whatever the method), as do those the peer resets with REFUSED_STREAM; the others end, then it closes.
- A hostile peer: a header block beyond `max_header_list_size` (HPACK bombs included: the limit counts decoded
  bytes) is 502 `upstream_headers_too_large`; a body beyond `max_response_bytes` is 502 `upstream_response_too_large`
  (that stream is reset); a protocol violation (frames on streams never opened, a PUSH_PROMISE we refused, bad
  framing) fails every stream with 502 `bad_upstream_response`, then GOAWAY and close; a peer that makes us write
  (PING, SETTINGS) but does not read is cut off (`upstream_flood`) once our unsent bytes pass `max_write_buffer`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import cast

import h2.events
import h2.exceptions
from h2.errors import ErrorCodes

from meshbatch.errors import BadGateway, ConnectFailed, ProxyError, StreamRefused, UpstreamReset
from meshbatch.http.message import Headers, Response
from meshbatch.http.upload import Upload
from meshbatch.http2.client_setup import new_client_connection, nothing, request_block, retrieved
from meshbatch.http2.client_stream import ClientStream, StreamLimits, start_streams
from meshbatch.http2.credit import acknowledge
from meshbatch.http2.headers import answer_fields, trailer_fields
from meshbatch.http2.response import trailer_fields_out
from meshbatch.http2.steps import next_stream_id, outgoing, streams_allowed
from meshbatch.http2.whole_request import send_request


class MultiplexedConnection(asyncio.Protocol):
    __slots__ = ("_flush_due", "_h2", "_loop", "_unfinished", "_write_paused", "closed", "goaway", "idle_since",
                 "limits", "on_close", "on_free", "pooled", "ready", "scheme", "streams", "transport", "uses")

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: StreamLimits, scheme: bytes = b"http") -> None:
        self._loop = loop
        self.limits = limits
        self.scheme = scheme
        self._h2 = new_client_connection(limits)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, ClientStream] = {}
        self.ready: asyncio.Future[None] = loop.create_future()  # the peer's first SETTINGS arrived
        self.ready.add_done_callback(retrieved)
        self.closed = False
        self.goaway = False  # the peer sent GOAWAY (or stream ids ran out): no new stream
        self._write_paused = False
        self._flush_due = False  # a write is scheduled for the end of this turn of the loop
        self.uses = 0
        self.pooled = False
        self.idle_since = loop.time()
        self.on_free: Callable[[MultiplexedConnection], None] = nothing
        self.on_close: Callable[[MultiplexedConnection], None] = nothing
        self._unfinished: list[ClientStream] = []  # answers of unknown length this read left open

    @property
    def capacity(self) -> int:
        return min(streams_allowed(self._h2.remote_settings), self.limits.max_streams)

    @property
    def available(self) -> bool:
        """One more stream may be opened now."""
        return self.ready.done() and not self.goaway and not self.closed and len(self.streams) < self.capacity

    def __repr__(self) -> str:
        return f"<MultiplexedConnection streams={len(self.streams)}/{self.capacity} goaway={self.goaway}>"

    # the connection ------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        conn = self._h2
        conn.initiate_connection()
        conn.increment_flow_control_window(self.limits.connection_window - 65_535)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectFailed("upstream_http2_refused",
                                                   "the connection closed before the upstream's HTTP/2 SETTINGS"))
        self._close_all(UpstreamReset("upstream_reset", "the HTTP/2 connection closed"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._send_pending()
        self._flush()

    # requests --------------------------------------------------------------------------------------------
    def request(self, method: bytes, target: bytes, headers: Headers, body: bytes, deadline: float,
                stream_limit: int = 0, upload: Upload | None = None, trailers: Headers | None = None) -> ClientStream:
        """Open a stream for one request (only while `available`); its `waiter` gets the answer or a ProxyError.
        An `upload`: its body as it arrives (http2/client_stream.py); `trailers`: after a whole body."""
        assert self.available
        conn = self._h2
        waiter: asyncio.Future[Response] = self._loop.create_future()
        stream_id = next_stream_id(conn)
        if not stream_id:
            self.goaway = True  # ids ran out: this connection retires
            stream = ClientStream(self, 0, waiter, stream_limit)
            stream.fail(StreamRefused("upstream_refused_stream", "the connection has no stream id left"))
            return stream
        stream = ClientStream(self, stream_id, waiter, stream_limit)
        stream.upload = upload
        if trailers and upload is None:
            stream.upload_ended = trailer_fields_out(trailers)
        fields = request_block(method, target, headers, self.scheme)
        whole = not stream.open_ended and send_request(conn, stream_id, fields, body)  # (http2/whole_request.py)
        try:
            if not whole:
                conn.send_headers(stream_id, fields, end_stream=not body and not stream.open_ended)
        except h2.exceptions.ProtocolError as exc:  # a field HTTP/2 cannot carry
            stream.fail(BadGateway("bad_upstream_request", f"the request cannot be sent over HTTP/2: {exc}"))
            self._flush_soon()
            return stream
        self.uses += 1
        self.streams[stream_id] = stream
        if not whole and (body or (trailers and upload is None)):
            stream.pending = body
            self._send_body(stream)
        stream.timer = self._loop.call_at(deadline, self._expire, stream)
        if upload is not None:
            stream.attach(upload)
        self._flush_soon()
        return stream

    def _send_body(self, stream: ClientStream) -> None:
        conn = self._h2
        pending = stream.pending
        while pending and not self._write_paused:
            size = min(conn.local_flow_control_window(stream.id), conn.max_outbound_frame_size, len(pending))
            if size <= 0:
                break
            piece, pending = pending[:size], pending[size:]
            conn.send_data(stream.id, piece, end_stream=not pending and not stream.open_ended)
            if pending:
                self._flush()  # frame by frame: a full transport pauses us (`pause_writing`) before the next one
        stream.pending = pending
        if stream.open_ended and self.streams.get(stream.id) is stream:
            stream.uploaded(conn)  # credit for what went; its end when all went
        self._flush_soon()  # (a body's last frame goes with what else this turn of the loop sends)

    def send_body(self, stream: ClientStream) -> None:
        """An upload's sink: more to send."""
        self._send_body(stream)

    def _send_pending(self) -> None:
        for stream in list(self.streams.values()):
            if stream.pending:
                self._send_body(stream)

    def cancel(self, stream: ClientStream) -> None:
        """The caller gave up: RST_STREAM CANCEL; the connection and its other streams go on."""
        if self.streams.get(stream.id) is stream:
            self._reset(stream, ErrorCodes.CANCEL)
            self._flush()

    def acknowledge(self, stream: ClientStream) -> None:
        """A paused stream's consumer resumed: reopen its window by what it held back."""
        if stream.unacked and self.streams.get(stream.id) is stream:
            acknowledge(self._h2, stream.id, stream.unacked)
            stream.unacked = 0
            self._flush()

    def _expire(self, stream: ClientStream) -> None:
        stream.timer = None
        if self.streams.get(stream.id) is stream:
            error = stream.timeout_error()
            self._reset(stream, ErrorCodes.CANCEL)
            stream.fail(error)
            self._flush()

    def _reset(self, stream: ClientStream, code: ErrorCodes) -> None:
        if not self.closed:
            try:
                self._h2.reset_stream(stream.id, code)
            except h2.exceptions.StreamClosedError:
                pass  # it closed meanwhile (its end is on the way)
        self._drop(stream)

    def _drop(self, stream: ClientStream) -> None:
        """The stream is over: its slot is free."""
        if self.streams.pop(stream.id, None) is None:
            return
        stream.detach()  # (an upload that did not end: what comes is credited and dropped)
        if stream.timer is not None:
            stream.timer.cancel()
            stream.timer = None
        if not self.streams:
            self.idle_since = self._loop.time()
            if self.goaway:
                self.close()
                return
        self.on_free(self)

    # reading ---------------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.DenialOfServiceError as exc:
            self._broken(BadGateway("upstream_headers_too_large", f"HTTP/2: {exc}"))
            return
        except h2.exceptions.StreamClosedError as exc:
            self._broken(BadGateway("bad_upstream_response", f"HTTP/2: a frame on stream {exc}, not open"))
            return
        except h2.exceptions.ProtocolError as exc:
            self._broken(BadGateway("bad_upstream_response", f"HTTP/2 protocol error: {exc}"))
            return
        for event in events:
            self._event(event)
        if self._unfinished:
            start_streams(self._unfinished)
        self._flush()
        transport = self.transport
        if transport is not None and transport.get_write_buffer_size() > self.limits.max_write_buffer:
            self._broken(BadGateway("upstream_flood", "the upstream makes us write but does not read"))

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            self._data(event)
        elif isinstance(event, h2.events.ResponseReceived):
            self._head(event)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                if stream.pending or stream.sending:  # answered before our body was all sent: stop sending it
                    self._reset(stream, ErrorCodes.NO_ERROR)
                else:
                    self._drop(stream)
                stream.finish()
        elif isinstance(event, h2.events.TrailersReceived):
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                try:
                    stream.trailers = trailer_fields(event.headers or [])  # type: ignore[arg-type]
                except BadGateway as error:
                    self._refuse(stream, error)
        elif isinstance(event, h2.events.WindowUpdated):
            self._window(event.stream_id or 0)
        elif isinstance(event, h2.events.StreamReset):
            self._peer_reset(event)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            if not self.ready.done():
                self.ready.set_result(None)
            self._window(0)  # (a new initial window may let bodies go on)
            self.on_free(self)  # (the stream limit may have grown)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._goaway(event)

    def _head(self, event: h2.events.ResponseReceived) -> None:
        stream = self.streams.get(event.stream_id or 0)
        if stream is None:
            return
        stream.received = True
        try:
            status, headers, stream.length = answer_fields(event.headers or [])  # type: ignore[arg-type]
        except BadGateway as error:
            self._refuse(stream, error)
            return
        if not 200 <= status <= 599:
            self._refuse(stream, BadGateway("bad_upstream_response", "an HTTP/2 answer without a valid :status"))
            return
        stream.status = status
        stream.headers = headers
        limit = self.limits.max_response_bytes
        if stream.length > limit:
            self._refuse(stream, BadGateway("upstream_response_too_large",
                                            f"response of {stream.length} bytes exceeds {limit}"))
        elif event.stream_ended is None:
            stream.more_to_come(None)

    def _data(self, event: h2.events.DataReceived) -> None:
        conn = self._h2
        size = event.flow_controlled_length or 0
        stream = self.streams.get(event.stream_id or 0)
        if stream is None:
            if size:  # a stream we reset: its bytes still count against the connection's window
                conn.increment_flow_control_window(size)
            return
        data = event.data or b""
        limit = self.limits.max_response_bytes
        if stream.body_len + len(data) > limit:
            conn.increment_flow_control_window(size)
            self._refuse(stream, BadGateway("upstream_response_too_large", f"response exceeds {limit} bytes"))
            return
        stream.add(data)
        if stream.paused:
            stream.unacked += size
        elif size:
            acknowledge(conn, stream.id, size)
        if event.stream_ended is None:
            stream.more_to_come(self._unfinished)

    def _window(self, stream_id: int) -> None:
        if stream_id == 0:
            self._send_pending()
        else:
            stream = self.streams.get(stream_id)
            if stream is not None and stream.pending:
                self._send_body(stream)

    def _peer_reset(self, event: h2.events.StreamReset) -> None:
        stream = self.streams.get(event.stream_id or 0)
        if stream is None:
            return
        self._drop(stream)
        code = event.error_code
        name = code.name if isinstance(code, ErrorCodes) else str(code)
        if code == ErrorCodes.REFUSED_STREAM and not stream.received:
            stream.fail(StreamRefused("upstream_refused_stream", "the upstream refused the stream (REFUSED_STREAM)"))
        else:
            stream.fail(UpstreamReset("upstream_reset", f"the upstream reset the stream ({name})"))

    def _goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.goaway = True
        last = event.last_stream_id if event.last_stream_id is not None else 0
        for stream in [s for s in self.streams.values() if s.id > last]:
            self._drop(stream)
            stream.fail(StreamRefused("upstream_refused_stream",
                                      "the upstream went away (GOAWAY) before it processed the stream"))
        if event.error_code not in (ErrorCodes.NO_ERROR, None):
            self._broken(UpstreamReset("upstream_reset", f"the upstream went away (GOAWAY {event.error_code})"))
        elif not self.streams:
            self.close()
        else:
            self.on_free(self)  # the pool stops choosing this connection and may open another

    def _refuse(self, stream: ClientStream, error: ProxyError) -> None:
        """This stream's answer is unacceptable: reset it; the connection goes on."""
        self._reset(stream, ErrorCodes.CANCEL)
        stream.fail(error)

    # ending ----------------------------------------------------------------------------------------------
    def _flush_soon(self) -> None:
        """Write at the end of this turn of the loop: the requests opened in one turn leave in one write."""
        if not self._flush_due:
            self._flush_due = True
            self._loop.call_soon(self.write_pending)

    def write_pending(self) -> None:
        """The write deferred to the end of this turn of the loop, now (a no-op when none is due)."""
        if self._flush_due:
            self._flush_due = False
            self._flush()

    def _flush(self) -> None:
        data = outgoing(self._h2)
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    def _broken(self, error: ProxyError) -> None:
        """A connection error: every stream fails with it, the connection closes (after h2's GOAWAY)."""
        if not self.ready.done():
            self.ready.set_exception(ConnectFailed("upstream_http2_refused", f"no HTTP/2 handshake: {error}"))
        self._flush()
        self._close_all(error)
        self.close()

    def _close_all(self, error: ProxyError) -> None:
        self.goaway = True
        first = not self.closed
        self.closed = True
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            if stream.timer is not None:
                stream.timer.cancel()
                stream.timer = None
            stream.fail(error)
        if first:
            self.on_close(self)

    def close(self) -> None:
        """Close now (GOAWAY first when the connection still works); streams still open fail as reset."""
        if not self.closed and self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.close_connection()
            self._flush()
        self._close_all(UpstreamReset("upstream_reset", "the HTTP/2 connection closed"))
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


__all__ = ["MultiplexedConnection", "StreamLimits"]
