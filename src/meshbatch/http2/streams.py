"""One HTTP/2 stream of a server connection: its request as it arrives, and its answer's body as it leaves.

The request's body is kept up to the listener's `max_body_bytes` (413 beyond), or forwarded as it arrives (an
upload: http2/uploads.py), after the answer's head too while the upload is open (a bidi call's messages). The
answer's body waits here for flow-control credit: a buffered body is the `Response`'s own bytes (no copy), a
streamed one (http/stream.py) arrives through this object as the stream's sink, and its producer is paused while
more than `limit` bytes wait (the window is shut, or the socket is full), so a stream holds about that much at
most. A streamed answer is observed (access log, metrics) when it is over, with the trailers it ended with.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Protocol

from meshbatch.errors import ProxyError, UpstreamReset
from meshbatch.grpc.caller import is_grpc, streamed_trailers
from meshbatch.http.message import Headers, Request, Response
from meshbatch.http.upload import OPEN
from meshbatch.http2.response import trailer_fields_out

if TYPE_CHECKING:
    from meshbatch.http.serving import Pending
    from meshbatch.http.stream import BodyStream
    from meshbatch.http.upload import Upload


class StreamOwner(Protocol):
    """The connection a stream sends through (http2/server.py)."""

    def stream_ready(self, stream: H2Stream) -> None: ...
    def stream_failed(self, stream: H2Stream, error: ProxyError) -> None: ...
    def upload_credit(self, stream: H2Stream, size: int) -> None: ...
    def observe_end(self, request: Request, response: Response) -> None: ...


class H2Stream:
    __slots__ = ("_out", "body", "body_done", "body_len", "closed", "ended", "error", "id", "last_activity",
                 "limit", "observed", "out_bytes", "owner", "pending", "request", "responded", "source", "trailers",
                 "upload")

    def __init__(self, stream_id: int, owner: StreamOwner, now: float, limit: int) -> None:
        self.id = stream_id
        self.owner = owner
        self.limit = limit
        self.request: Request | None = None  # None: its head was refused (`error` is answered)
        self.error: ProxyError | None = None
        self.body: list[bytes] = []
        self.body_len = 0
        self.ended = False  # the client's side is done (END_STREAM received)
        self.responded = False  # the answer's head went out
        self.closed = False  # gone: answered to the end, or reset
        self.pending: Pending | None = None
        self.last_activity = now
        self._out: deque[bytes] = deque()  # the answer's body waiting for credit
        self.out_bytes = 0
        self.body_done = False  # the answer's body is all in `_out` (or sent)
        self.trailers: Headers | None = None  # the answer's trailers, sent after the body
        self.source: BodyStream | None = None  # a streamed answer's producer
        self.upload: Upload | None = None  # the request's body as it arrives (http2/uploads.py)
        self.observed: tuple[Request, Response] | None = None  # a streamed answer, observed when it is over

    # the request's body as it arrives: this stream is its upload's source ------------------------------------
    @property
    def streaming(self) -> bool:
        """The body goes upstream as it arrives (a stalled window is the upstream's doing, not the caller's)."""
        upload = self.upload
        return upload is not None and not upload.collecting

    @property
    def forwarding(self) -> bool:
        """The body goes upstream as it arrives and its upload is still open: what comes after the answer's head
        (a bidi call's next messages, the end) still goes there."""
        upload = self.upload
        return upload is not None and not upload.collecting and upload.state == OPEN

    def credit(self, size: int) -> None:
        self.owner.upload_credit(self, size)

    # the answer's body ---------------------------------------------------------------------------------
    def queue(self, data: bytes) -> None:
        if data:
            self._out.append(data)
            self.out_bytes += len(data)

    def take(self, size: int) -> bytes:
        """Up to `size` bytes of the waiting body (the caller checked `out_bytes`)."""
        out = self._out
        first = out[0]
        if len(first) <= size:
            out.popleft()
            piece = first
        else:
            piece, out[0] = first[:size], first[size:]
        self.out_bytes -= len(piece)
        if self.source is not None and self.out_bytes < self.limit // 2:
            self.source.resume()
        return piece

    # the sink of a streamed answer (http/stream.py) ------------------------------------------------------
    def stream_data(self, data: bytes) -> None:
        if self.closed:
            return
        self.queue(data)
        if self.out_bytes >= self.limit and self.source is not None:
            self.source.pause()
        self.owner.stream_ready(self)

    def stream_end(self) -> None:
        if self.closed:
            return
        self.body_done = True
        source, self.source = self.source, None
        trailers = source.trailers if source is not None else None
        request = self.request
        if request is not None and is_grpc(request):  # a gRPC caller reads its status there: never without one
            self.trailers = streamed_trailers(trailer_fields_out(trailers) if trailers else None)
        elif trailers:  # a streamed answer's trailers follow its body
            self.trailers = trailer_fields_out(trailers)
        if self.observed is not None:
            self.observed[1].trailers = self.trailers  # (its grpc-status, for the counts by status)
        self.owner.stream_ready(self)

    def stream_abort(self, error: ProxyError) -> None:
        if self.closed:
            return
        self.source = None
        self.owner.stream_failed(self, error)

    def drop(self) -> None:
        """The stream is gone: what is under way for it is cancelled, a streamed answer abandoned."""
        self.closed = True
        self._out.clear()
        self.out_bytes = 0
        self.body = []
        pending, self.pending = self.pending, None
        source, self.source = self.source, None
        if pending is not None:
            pending.cancel()  # a batched caller withdraws its item, as when an HTTP/1.1 caller disconnects
        if self.upload is not None:  # (after the cancel: the exchange ends as cancelled, not as failed)
            self.upload.fail(UpstreamReset("downstream_reset", "the caller reset the stream"))
        if source is not None:
            source.abandon()
        observed, self.observed = self.observed, None
        if observed is not None:
            self.owner.observe_end(*observed)

    def __repr__(self) -> str:
        return (f"<H2Stream {self.id} ended={self.ended} responded={self.responded} closed={self.closed} "
                f"out={self.out_bytes}>")


__all__ = ["H2Stream", "StreamOwner"]
