"""A request body forwarded as it arrives (an HTTP/2 caller's DATA frames: a client-streaming gRPC call, a large
upload), with the caller's flow control as the back-pressure. http/stream.py is the same for answers.

A downstream HTTP/2 stream whose body is still arriving after the read that brought its head is dispatched at
once with an `Upload` as `request.upload` (http2/uploads.py). Its route decides what happens to it:

- a route that reads bodies whole (batching, ingest, a mirror) calls `collect`: the body is read as before,
  within `limits.max_body_bytes`, credited back at once, and the route goes on once it is whole;
- a plain route streams it: its upstream attempt `attach`es a sink (http/upload.py `ChunkedWriter` for an HTTP/1.1
  upstream, the upstream stream for HTTP/2: http2/client_upload.py) once its head is sent, and the bytes go
  there as they come. The sink calls `taken(n)` once it has handed n bytes on (written to its transport, sent
  as DATA within the upstream's window): only then does the caller get that much window credit back. So a slow
  upstream shuts the caller's stream window, and the proxy holds at most about one window per upload (plus the
  upstream transport's write buffer) whatever the body's size.

The end (with the caller's trailers, sent on by an HTTP/2 upstream) or a failure (the caller reset the stream,
the body was too large) reaches the sink once. A sink that goes away before the end (the upstream answered
early, or failed) calls `detach`: what comes after is credited back and dropped. An upload is sent once: the
retry layer does not replay a request whose upload was attached (`attached`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

from meshbatch.errors import ProxyError
from meshbatch.http.chunked import LAST_CHUNK, chunk

OPEN, ENDED, FAILED = "open", "ended", "failed"
Headers = list[tuple[bytes, bytes]]  # (http/message.py's: a request refers to its upload)


class UploadSource(Protocol):
    """The downstream stream the body arrives on."""

    def credit(self, size: int) -> None: ...


class UploadSink(Protocol):
    """Where the body goes (an upstream request)."""

    def upload_data(self, data: bytes) -> None: ...
    def upload_end(self, trailers: Headers | None) -> None: ...
    def upload_abort(self, error: ProxyError) -> None: ...


class Upload:
    __slots__ = ("_held", "_owed", "_ready", "attached", "collecting", "error", "length", "received", "sink",
                 "source", "state", "trailers")

    def __init__(self, source: UploadSource, length: int = -1) -> None:
        self.source = source
        self.length = length  # the caller's content-length (-1: none; an HTTP/1.1 upstream gets it chunked)
        self.state = OPEN
        self.error: ProxyError | None = None
        self.trailers: Headers | None = None
        self.sink: UploadSink | None = None
        self.attached = False  # handed to an upstream attempt (it cannot be sent again)
        self.collecting = False  # read whole instead (see `collect`)
        self.received = 0
        self._held: deque[bytes] = deque()  # arrived, no sink yet
        self._owed = 0  # bytes received whose credit has not gone back to the caller
        self._ready: Callable[[], None] | None = None

    @property
    def done(self) -> bool:
        return self.state != OPEN

    # the producer (the downstream stream) --------------------------------------------------------------
    def feed(self, data: bytes, credit: int) -> None:
        """Body bytes; `credit`: what they count against the caller's windows (padding included, credited now)."""
        if self.state != OPEN:
            return
        self.received += len(data)
        if credit > len(data):
            self.source.credit(credit - len(data))
        self._owed += min(credit, len(data))
        if self.sink is not None:
            self.sink.upload_data(data)
        elif self.attached:  # detached: nobody takes it
            self.taken(len(data))
        elif data:
            self._held.append(data)

    def end(self, trailers: Headers | None = None) -> None:
        if self.state != OPEN:
            return
        self.state = ENDED
        self.trailers = trailers
        if self.sink is not None:
            self.sink.upload_end(trailers)

    def fail(self, error: ProxyError) -> None:
        if self.state != OPEN:
            return
        self.state = FAILED
        self.error = error
        self._held.clear()
        if self.sink is not None:
            self.sink.upload_abort(error)

    def collected(self) -> None:
        """Collecting: the body is whole in the request (the downstream stream put it there)."""
        if self.state == OPEN:
            self.state = ENDED
            ready, self._ready = self._ready, None
            if ready is not None:
                ready()

    # the consumer (an upstream request) -------------------------------------------------------------------
    def collect(self, ready: Callable[[], None]) -> None:
        """Read the body whole instead (a route that needs it so): `ready()` once it is in `request.body`. A caller
        that goes away, or a body over `max_body_bytes`, is answered by its stream (nothing is called)."""
        self.collecting = True
        self._ready = ready

    def attach(self, sink: UploadSink) -> None:
        """Send the body to `sink`: what arrived so far, then the rest as it comes, then the end."""
        self.attached = True
        self.sink = sink
        held = self._held
        while held and self.sink is sink:
            sink.upload_data(held.popleft())
        if self.sink is not sink:
            return
        if self.state == ENDED:
            sink.upload_end(self.trailers)
        elif self.state == FAILED:
            assert self.error is not None
            sink.upload_abort(self.error)

    def taken(self, size: int) -> None:
        """The sink handed `size` bytes on: the caller may send that much more."""
        give = min(size, self._owed)
        if give > 0:
            self._owed -= give
            self.source.credit(give)

    def detach(self) -> None:
        """The sink is gone before the end: credit what is owed, drop what comes."""
        self.sink = None
        self.attached = True
        self._held.clear()
        self.taken(self._owed)

    def __repr__(self) -> str:
        return f"<Upload {self.state} received={self.received} owed={self._owed} attached={self.attached}>"


class UploadTransport(Protocol):
    def write(self, data: bytes) -> None: ...
    def is_closing(self) -> bool: ...


class ChunkedWriter:
    """The sink of an upload to an HTTP/1.1 upstream: chunks (or the bytes as they are, with a Content-Length)
    written to the connection's transport while it takes them; held while its buffer is over its high-water
    mark (`pause`/`resume`, from the connection's pause_writing/resume_writing)."""

    __slots__ = ("_held", "chunked", "done", "paused", "transport", "upload")

    def __init__(self, upload: Upload, transport: UploadTransport, chunked: bool) -> None:
        self.upload = upload
        self.transport = transport
        self.chunked = chunked
        self.paused = False
        self.done = False  # the last chunk is written (or the upload failed, or the connection is gone)
        self._held: deque[bytes] = deque()

    def upload_data(self, data: bytes) -> None:
        if self.done:
            self.upload.taken(len(data))
            return
        if self.paused:
            self._held.append(data)
            return
        self._write(data)

    def _write(self, data: bytes) -> None:
        if self.transport.is_closing():
            self.gone()
            return
        if data:
            self.transport.write(chunk(data) if self.chunked else data)
        self.upload.taken(len(data))

    def upload_end(self, trailers: Headers | None) -> None:
        if self.paused or self.done:
            return  # (`resume` ends it once the held bytes are out)
        self.done = True
        if self.chunked and not self.transport.is_closing():
            self.transport.write(LAST_CHUNK)

    def upload_abort(self, error: ProxyError) -> None:
        self.gone()  # the exchange is cancelled with its caller: the connection closes, the upstream sees a cut

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        held = self._held
        while held and not self.paused and not self.done:
            self._write(held.popleft())
        if not held and not self.paused and self.upload.state == ENDED:
            self.upload_end(self.upload.trailers)

    def gone(self) -> None:
        """The connection ended (or the answer came while the body was still going): stop sending."""
        if not self.done:
            self.done = True
            self._held.clear()
            if self.upload.sink is self:
                self.upload.detach()

    @property
    def sending(self) -> bool:
        """Part of the body is still to be written (an answer now leaves the connection single-use)."""
        return not self.done

    def __repr__(self) -> str:
        return f"<ChunkedWriter chunked={self.chunked} paused={self.paused} done={self.done} held={len(self._held)}>"


__all__ = ["ENDED", "FAILED", "OPEN", "ChunkedWriter", "Upload", "UploadSink", "UploadSource"]
