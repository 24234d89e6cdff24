"""One request on an HTTP/2 upstream connection: what it still has to send, what its answer has brought so far,
and who waits for it. The connection (http2/client.py) drives it; it holds no I/O of its own.

A stream's answer is read whole (headers, body, trailers) into a `Response`, as HTTP/1.1 answers are, up to the
connection's `max_response_bytes`. With a `stream_limit` (a plain route's buffer limit), a larger answer is
delivered after its head with a `BodyStream` carrying the rest, and so is one of unknown length that a read
leaves unfinished after some of its body (server-sent events, a gRPC server's stream: each piece reaches the
caller as it comes); then flow control is the back-pressure: while the consumer is paused the stream's window
is not reopened, so the upstream stops sending on this stream alone (the connection's other streams go on) and
at most one stream window is held here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from meshbatch.errors import GatewayTimeout, ProxyError
from meshbatch.http.message import Headers, Response
from meshbatch.http.stream import BodyStream
from meshbatch.http.upload import Upload
from meshbatch.http2.response import trailer_fields_out

if TYPE_CHECKING:
    from h2.connection import H2Connection


@dataclass(frozen=True, slots=True)
class StreamLimits:
    max_response_bytes: int = 67_108_864
    max_header_list_size: int = 65_536  # as HTTP/1.1 answers' heads (http/client_machine.py)
    max_streams: int = 1_000  # ours, whatever the peer allows
    stream_window: int = 1_048_576  # what one stream may have in flight towards us
    connection_window: int = 16_777_216
    max_write_buffer: int = 1_048_576  # unsent output while the peer does not read: beyond, it floods us


class ClientStreamOwner(Protocol):
    """The connection a stream belongs to (http2/client.py), as the stream's consumer and its upload reach it."""

    def acknowledge(self, stream: ClientStream) -> None: ...
    def cancel(self, stream: ClientStream) -> None: ...
    def send_body(self, stream: ClientStream) -> None: ...


class ClientStream:
    """See the module docstring. `received`: some of the answer arrived (its replay is no longer safe)."""

    __slots__ = (
        "_body",
        "body_len",
        "conn",
        "headers",
        "id",
        "length",
        "on_done",
        "paused",
        "pending",
        "queued",
        "received",
        "status",
        "stream",
        "stream_limit",
        "timer",
        "trailers",
        "unacked",
        "upload",
        "upload_ended",
        "waiter",
        "went",
    )

    def __init__(self, conn: ClientStreamOwner, stream_id: int, waiter: asyncio.Future[Response],
                 stream_limit: int) -> None:
        self.conn = conn
        self.id = stream_id
        self.waiter = waiter
        self.on_done: Callable[[asyncio.Future[Response]], None] | None = None  # called as `waiter` is resolved
        self.stream_limit = stream_limit
        self.pending = b""  # request body not yet sent (the upstream's window is closed)
        self.status = 0
        self.headers: Headers = []
        self.length = -1  # the answer's content-length, when it gave one
        self._body: list[bytes] = []
        self.body_len = 0
        self.trailers: Headers | None = None
        self.received = False
        self.stream: BodyStream | None = None  # the body, once it outgrew `stream_limit`
        self.paused = False  # the stream's consumer cannot take more: its window stays closed
        self.unacked = 0  # bytes received while paused, acknowledged when the consumer resumes
        self.timer: asyncio.TimerHandle | None = None
        self.upload: Upload | None = None  # the request's body as it arrives (http/upload.py)
        self.upload_ended: Headers | None = None  # its end came (with its trailers, [] for none), not yet sent
        self.queued = 0  # upload bytes put in `pending`
        self.went = 0  # ... and sent (the caller was credited for them)

    # the answer --------------------------------------------------------------------------------------
    def add(self, data: bytes) -> None:
        """Body bytes (already checked against the answer's size limit)."""
        self.body_len += len(data)
        stream = self.stream
        if stream is not None:
            stream.feed(data)
        else:
            self._body.append(data)

    def more_to_come(self, unfinished: list[ClientStream] | None) -> None:
        """The answer goes on after this frame. Past the stream limit (or announcing that) it streams now; one of
        unknown length with some body goes into `unfinished` (None after a head), to stream if the read ends
        before the answer does (events, a gRPC server's stream: each piece reaches the caller as it comes)."""
        limit = self.stream_limit
        if not limit or self.stream is not None:
            return
        if self.body_len > limit or self.length > limit:
            self.start_stream()
        elif self.length < 0 and self.body_len and unfinished is not None:
            unfinished.append(self)

    def start_stream(self) -> None:
        """Deliver the head now, the body through a `BodyStream`."""
        stream = self.stream = BodyStream(self, self.length, self.stream_limit)
        response = Response(self.status, self.headers)
        response.stream = stream
        body = self._body
        self._body = []
        if body:
            stream.feed(b"".join(body))
        if not self.waiter.done():
            self.waiter.set_result(response)
            self._done()
        else:
            stream.abandon()

    def finish(self) -> None:
        """The answer ended: the caller gets it whole, or the stream ends."""
        stream = self.stream
        if stream is not None:
            stream.end(self.trailers)  # the sink sends them after the body (grpc-status of a large answer)
            return
        body = self._body
        response = Response(self.status, self.headers, body[0] if len(body) == 1 else b"".join(body))
        response.trailers = self.trailers
        if not self.waiter.done():
            self.waiter.set_result(response)
            self._done()

    def fail(self, error: ProxyError) -> None:
        stream = self.stream
        if stream is not None:
            stream.fail(error)  # the head went out: the consumer aborts its connection
        elif not self.waiter.done():
            self.waiter.set_exception(error)
            self._done()

    def _done(self) -> None:
        """The waiter is resolved: its `on_done` (the fast path's) hears it now, within the read that resolved it,
        rather than from the future's done callbacks on the next turn of the loop."""
        hook = self.on_done
        if hook is not None:
            self.on_done = None
            hook(self.waiter)

    def timeout_error(self) -> GatewayTimeout:
        return GatewayTimeout("upstream_timeout", "the answer did not end before the timeout"
                              if self.stream is not None else "no response before the timeout")

    # the stream's source (http/stream.py) ------------------------------------------------------------
    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False
        self.conn.acknowledge(self)

    def abandon(self) -> None:
        """The consumer went away mid-body: the stream is cancelled (RST_STREAM CANCEL), the connection stays."""
        self.conn.cancel(self)

    # the request's body as it arrives: this stream is the upload's sink -----------------------------------
    def attach(self, upload: Upload) -> None:
        self.upload = upload
        upload.attach(self)

    @property
    def open_ended(self) -> bool:
        """The stream does not end with its body's last DATA: an upload, or trailers to send."""
        return self.upload is not None or self.upload_ended is not None

    @property
    def sending(self) -> bool:
        """The request is not all sent: an upload still going, trailers still to send (an answer cuts it)."""
        return self.upload_ended is not None or (self.upload is not None and self.upload.sink is self)

    def upload_data(self, data: bytes) -> None:
        self.pending += data  # (bounded: the caller's window is credited only as this goes out)
        self.queued += len(data)
        self.conn.send_body(self)

    def upload_end(self, trailers: Headers | None) -> None:
        self.upload_ended = trailer_fields_out(trailers) if trailers else []
        self.conn.send_body(self)

    def upload_abort(self, error: ProxyError) -> None:
        """The caller went away (or its body was refused): the upstream stream is reset (CANCEL) at once; the
        exchange waiting for its answer is cancelled with its caller."""
        self.conn.cancel(self)

    def uploaded(self, conn: H2Connection) -> None:
        """The connection sent what it could (`pending` is what is left): credit the caller for what went, and
        end the stream once the upload ended and all of it went (with its trailers when it had some)."""
        upload = self.upload
        if upload is not None:
            if upload.sink is not self:
                return
            went = self.queued - len(self.pending)
            if went > self.went:
                upload.taken(went - self.went)
                self.went = went
        end = self.upload_ended
        if end is not None and not self.pending:
            self.upload_ended = None
            if upload is not None:
                upload.sink = None
            if end:
                conn.send_headers(self.id, end, end_stream=True)
            else:
                conn.end_stream(self.id)

    def detach(self) -> None:
        upload = self.upload
        if upload is not None and upload.sink is self:
            upload.detach()

    def __repr__(self) -> str:
        return f"<ClientStream {self.id} status={self.status} body={self.body_len}B>"


def start_streams(unfinished: list[ClientStream]) -> None:
    """The end of a read: the answers it left open, of a length never said, stream from now on (events, a gRPC
    server's stream); those that ended or failed in the same read are whole already. `unfinished` is emptied."""
    for stream in unfinished:
        if stream.stream is None and not stream.waiter.done():
            stream.start_stream()
    unfinished.clear()


__all__ = ["ClientStream", "ClientStreamOwner", "StreamLimits", "start_streams"]
