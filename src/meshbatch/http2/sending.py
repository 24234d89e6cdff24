"""The sending half of an HTTP/2 server connection (http2/server.py): answers as HEADERS, DATA within the
flow-control windows and trailing HEADERS; the connection's output, its GOAWAY, its close; and the flow-control
credit given back for request bodies, held back while the bodies held exceed the cap (`max_pipelined_bytes` plus
`max_body_bytes`: one whole body always fits, so a single large request never waits on itself).
"""

from __future__ import annotations

import asyncio

from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import H2Error
from hyperframe.frame import GoAwayFrame

from meshbatch.errors import ProxyError
from meshbatch.grpc.caller import for_caller, is_grpc
from meshbatch.http.flow import Flow
from meshbatch.http.message import Request, Response
from meshbatch.http.serialize import local_reply
from meshbatch.http.serving import ConnectionGuard, ListenerState
from meshbatch.http2.credit import acknowledge, credit_stream
from meshbatch.http2.limits import FrameWatch
from meshbatch.http2.response import response_fields, sends_body, trailer_fields_out
from meshbatch.http2.steps import outgoing
from meshbatch.http2.streams import H2Stream
from meshbatch.http2.whole_answer import send_whole


class H2Sender(asyncio.Protocol):
    """The state of one HTTP/2 server connection and the way out of it (its subclass reads)."""

    def __init__(self, state: ListenerState, loop: asyncio.AbstractEventLoop) -> None:
        self.state = state
        self._loop = loop
        self._settings = state.settings
        self.limits = state.settings.http2
        self.transport: asyncio.Transport | None = None
        self.h2: H2Connection | None = None
        self.watch: FrameWatch | None = None
        self.flow = Flow()
        self.streams: dict[int, H2Stream] = {}
        self.closed = False
        self._lost = False
        self._guard: ConnectionGuard | None = None
        self._client = ""
        self._scheme = state.settings.scheme
        self._watchdog: asyncio.TimerHandle | None = None
        self._watch_at = 0.0
        self._started = 0.0
        self._settled = False  # the client's preface and first SETTINGS arrived
        self._last_activity = 0.0
        self._block_since = 0.0  # a header block has been open since (0.0: none is)
        self._stalled_since = 0.0  # answers have waited for window credit since (0.0: none waits)
        self._buffered = 0  # request body bytes held for streams not yet whole
        self._deferred: list[tuple[int, int]] = []  # flow-control credit held back while over the cap
        self._goaway = False  # GOAWAY sent: no new stream is served
        self._remote_goaway = False
        self._highest = 0  # the highest stream id taken up
        self._reading = False  # in data_received: what is sent goes out in one write at its end
        self._write_due = False  # a write is scheduled for the end of this turn of the loop
        self._fresh: list[H2Stream] = []  # streams whose head came in this read (http2/uploads.py)

    def _credit(self, sid: int, size: int) -> None:
        if size and self.h2 is not None:
            acknowledge(self.h2, sid, size)  # (a stream gone: the connection's window only)

    def observe_end(self, request: Request, response: Response) -> None:
        """A streamed answer is over (ended, failed, or its caller gone): the access log and the metrics see it."""
        observe = self._settings.observe
        if observe is not None:
            observe(request, response, self._loop.time() - request.received_at)

    def upload_credit(self, stream: H2Stream, size: int) -> None:
        """An upload's bytes went upstream: the caller may send as much more on the stream (its connection's window
        was credited as they came: http2/uploads.py)."""
        if self.h2 is None or not size:
            return
        credit_stream(self.h2, stream.id, size)
        if not self._reading and not self._write_due:
            self._write_due = True
            self._loop.call_soon(self.write_pending)

    def _release(self, stream: H2Stream) -> None:
        """A stream's held body is no longer the connection's: credit held back goes out."""
        self._buffered -= sum(len(piece) for piece in stream.body)
        if self._deferred and self._buffered <= self._settings.max_pipelined_bytes + \
                self._settings.parser_limits.max_body_bytes:
            deferred, self._deferred = self._deferred, []
            for sid, size in deferred:
                self._credit(sid, size)

    # answering -----------------------------------------------------------------------------------
    def _answer(self, stream: H2Stream, response: Response) -> None:
        source = response.stream
        conn = self.h2
        if stream.closed or stream.responded or self.closed or conn is None:  # the caller went away meanwhile
            if source is not None:
                source.abandon()  # nobody to read it: the upstream connection is dropped
            return
        stream.pending = None
        if source is not None and source.error is not None:
            response, source = local_reply(source.error), None  # it failed before its head went out: a status
        request = stream.request
        if request is not None and is_grpc(request):  # every answer to a gRPC call is a gRPC status
            response = for_caller(response)
            source = response.stream
        settings = self._settings
        request_id = request.request_id if request is not None and settings.request_id_in_response else b""
        head = request is not None and request.method == b"HEAD"
        body = response.body if sends_body(response, head) else b""
        length = source.length if source is not None else len(body)
        trailers = trailer_fields_out(response.trailers) if response.trailers else None
        end = not body and source is None and not trailers
        stream.responded = True
        fields = response_fields(response, request_id, length, head)
        # the common answer (request over, body in one frame: a gRPC call's too) in one go below h2 (whole_answer.py)
        whole = source is None and stream.ended and not self.flow.writing_paused and \
            send_whole(conn, stream.id, fields, body, trailers)
        if not whole:
            try:
                conn.send_headers(stream.id, fields, end_stream=end)
            except H2Error:  # the stream closed meanwhile (h2 knows first)
                self._finished(stream)
                return
        now = self._loop.time()
        if settings.observe is not None:
            observed = request if request is not None else Request(b"-", b"-", [], client=self._client,
                                                                    received_at=now)
            if source is not None and sends_body(response, head):
                stream.observed = (observed, response)  # a streamed answer: observed when it is over
            else:
                settings.observe(observed, response, now - observed.received_at)
        if end or whole:
            self._finished(stream)
        else:
            stream.queue(body)
            stream.trailers = trailers
            if source is not None and sends_body(response, head):
                stream.source = source
                source.attach(stream)  # the body follows (perhaps at once, perhaps all of it)
            else:
                if source is not None:
                    source.discard()
                stream.body_done = True
                self._send(stream)
        if not self._reading and not self._write_due:
            # answers that complete in one turn of the loop (their upstreams' reads) go out in one write
            self._write_due = True
            self._loop.call_soon(self.write_pending)

    def write_pending(self) -> None:
        """The write deferred to the end of this turn of the loop, now (a no-op when none is due)."""
        if self._write_due:
            self._write_due = False
            self._write()

    def stream_ready(self, stream: H2Stream) -> None:
        """A streamed answer has more body (or its end)."""
        self._send(stream)
        self._write()

    def stream_failed(self, stream: H2Stream, error: ProxyError) -> None:
        """The upstream failed mid-body: the stream is reset, so the client sees the answer fail, not end."""
        aborts = self.state.aborts
        aborts[error.reason] = aborts.get(error.reason, 0) + 1
        if self.h2 is not None and not stream.closed:
            try:
                self.h2.reset_stream(stream.id, ErrorCodes.INTERNAL_ERROR)
            except H2Error:
                pass
        self.streams.pop(stream.id, None)
        stream.drop()
        self._write()

    def _send(self, stream: H2Stream) -> None:
        """Send what the windows allow of a stream's waiting body, and its end when it is all out."""
        conn = self.h2
        if conn is None or stream.closed or self.flow.writing_paused:
            return
        try:
            while stream.out_bytes:
                window = min(conn.local_flow_control_window(stream.id), conn.max_outbound_frame_size)
                if window <= 0:
                    if not self._stalled_since:
                        self._stalled_since = self._loop.time()
                        self._watch(self._stalled_since + self._settings.send_timeout)
                    return
                piece = stream.take(window)
                last = not stream.out_bytes and stream.body_done and not stream.trailers
                conn.send_data(stream.id, piece, end_stream=last)  # the end rides on the last piece
                self._stalled_since = 0.0
                if last:
                    self._finished(stream)
                    return
            if stream.body_done:
                if stream.trailers:
                    conn.send_headers(stream.id, stream.trailers, end_stream=True)
                else:
                    conn.end_stream(stream.id)
                self._finished(stream)
        except H2Error:  # the client reset it meanwhile
            self._finished(stream)

    def _send_all(self) -> None:
        for stream in list(self.streams.values()):
            if stream.out_bytes or stream.body_done:
                self._send(stream)

    def _finished(self, stream: H2Stream) -> None:
        """The answer is all out: the stream is done (reset when the client is still sending its request)."""
        if self.streams.pop(stream.id, None) is None:
            return
        if not stream.ended:
            self._release(stream)
            if self.h2 is not None:
                try:
                    self.h2.reset_stream(stream.id, ErrorCodes.NO_ERROR)  # RFC 9113 8.1: read no more of it
                except H2Error:
                    pass
        stream.drop()
        if self.state.draining and not self._goaway:
            self._send_goaway(ErrorCodes.NO_ERROR, self._highest)
        if not self.streams and (self._goaway or self._remote_goaway):
            self._write()
            self._close()

    # writing and closing -------------------------------------------------------------------------
    def _write(self) -> None:
        conn, transport = self.h2, self.transport
        if conn is None or transport is None or self._lost:
            return
        data = outgoing(conn)
        if data:
            transport.write(data)
            self.flow.written += len(data)
            buffered = transport.get_write_buffer_size()
            if buffered:
                self._output_pending(buffered)

    def _send_goaway(self, code: ErrorCodes, last: int) -> None:
        """A graceful GOAWAY: no stream above `last` is served, the open ones are finished. Written here rather
        than by h2, whose state machine sends nothing more once it has sent GOAWAY."""
        if self._goaway or self.transport is None or self._lost:
            return
        self._goaway = True
        self._write()  # what h2 has queued goes first
        goaway = GoAwayFrame(0)
        goaway.last_stream_id = last
        goaway.error_code = code
        self.transport.write(goaway.serialize())

    def _refuse(self, reason: str, code: ErrorCodes | None) -> None:
        """An attack or a protocol error: GOAWAY (already queued by h2 when `code` is None), counted, closed."""
        aborts = self.state.aborts
        aborts[reason] = aborts.get(reason, 0) + 1
        if code is not None and self.h2 is not None and not self._goaway:
            try:
                self.h2.close_connection(code, last_stream_id=self._highest)
            except H2Error:
                pass
        self._goaway = True
        self._write()
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.drop()
        self._close()

    def _close(self) -> None:
        # A graceful close: what is unsent (GOAWAY) still goes out; the send watch aborts a client that takes none.
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def _abort(self, reason: str) -> None:
        aborts = self.state.aborts
        aborts[reason] = aborts.get(reason, 0) + 1
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _output_pending(self, buffered: int) -> None:
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
        raise NotImplementedError


__all__ = ["H2Sender"]
