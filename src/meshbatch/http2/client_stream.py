"""One request on an HTTP/2 upstream connection: what it still has to send, what its answer has brought so far,
and who waits for it. The connection (http2/client.py) drives it; it holds no I/O of its own.

A stream's answer is read whole (headers, body, trailers) into a `Response`, as HTTP/1.1 answers are, up to the
connection's `max_response_bytes`. With a `stream_limit` (a plain route's buffer limit), a larger answer is
delivered after its head with a `BodyStream` carrying the rest; then flow control is the back-pressure: while
the consumer is paused the stream's window is not reopened, so the upstream stops sending on this stream alone
(the connection's other streams go on) and at most one stream window is held here.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from meshbatch.errors import GatewayTimeout, ProxyError
from meshbatch.http.message import Headers, Response
from meshbatch.http.stream import BodyStream


class ClientStreamOwner(Protocol):
    """The connection a stream belongs to (http2/client.py), as the stream's consumer reaches it."""

    def acknowledge(self, stream: ClientStream) -> None: ...
    def cancel(self, stream: ClientStream) -> None: ...


class ClientStream:
    """See the module docstring. `received`: some of the answer arrived (its replay is no longer safe)."""

    __slots__ = (
        "_body",
        "body_len",
        "conn",
        "headers",
        "id",
        "length",
        "paused",
        "pending",
        "received",
        "status",
        "stream",
        "stream_limit",
        "timer",
        "trailers",
        "unacked",
        "waiter",
    )

    def __init__(self, conn: ClientStreamOwner, stream_id: int, waiter: asyncio.Future[Response],
                 stream_limit: int) -> None:
        self.conn = conn
        self.id = stream_id
        self.waiter = waiter
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

    # the answer --------------------------------------------------------------------------------------
    def add(self, data: bytes) -> None:
        """Body bytes (already checked against the answer's size limit)."""
        self.body_len += len(data)
        stream = self.stream
        if stream is not None:
            stream.feed(data)
        else:
            self._body.append(data)

    def wants_stream(self) -> bool:
        """The body outgrew the stream limit (or its announced length does) and is not streaming yet."""
        limit = self.stream_limit
        return bool(limit) and self.stream is None and (self.body_len > limit or self.length > limit)

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

    def fail(self, error: ProxyError) -> None:
        stream = self.stream
        if stream is not None:
            stream.fail(error)  # the head went out: the consumer aborts its connection
        elif not self.waiter.done():
            self.waiter.set_exception(error)

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

    def __repr__(self) -> str:
        return f"<ClientStream {self.id} status={self.status} body={self.body_len}B>"


__all__ = ["ClientStream", "ClientStreamOwner"]
