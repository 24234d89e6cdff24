"""A response body that flows from an upstream connection to a downstream one, with back-pressure both ways.

Answers up to the listener's buffer limit are read whole and written in one go (the fast path). A larger
one is streamed (Envoy's model: a per-connection buffer limit, 1 MiB by default): its head goes out, then its
body as it arrives; so is one of unknown length (chunked, close-delimited, HTTP/2 without content-length) that a
read leaves unfinished after some of its body, so that server-sent events, long polls and gRPC server streams
reach the caller as they come rather than when they end. `BodyStream` joins the two ends.

- The producer (the upstream connection) calls `feed` with each received piece, then `end` (with the answer's
  trailers, if it had any: an HTTP/2 upstream's, a chunked HTTP/1.1 answer's; the sink sends them after the
  body, so a streamed gRPC answer keeps its `grpc-status`) or `fail`.
- The consumer (the downstream connection) calls `attach` with itself as the sink once the head is written,
  `pause`/`resume` when its transport's write buffer crosses its watermarks, and `abandon` when its client
  goes away. A consumer that only wants the exchange over (a mirror) calls `discard`.
- Until a sink is attached, pieces wait here, at most `limit` bytes, then the producer stops reading. While
  the sink is paused the producer stops reading too, so neither end holds more than about `limit` bytes.
- `when_closed(callback)` runs once the stream is over either way (its owner hands the connection back to its
  pool: reused only if the answer ended cleanly, see http/client.py). It runs before the sink hears of the
  end, so a connection reusable again is in its pool before the downstream connection starts its next request.

A failure after the head went out cannot become a status any more: the sink aborts its connection, so the
client sees a truncated answer fail instead of one that looks complete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from meshbatch.errors import ProxyError


class StreamSource(Protocol):
    """The producing end (an upstream connection)."""

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def abandon(self) -> None: ...


class StreamSink(Protocol):
    """The consuming end (a downstream connection)."""

    def stream_data(self, data: bytes) -> None: ...
    def stream_end(self) -> None: ...
    def stream_abort(self, error: ProxyError) -> None: ...


class _Drop:
    """The sink of a discarded stream: reads to the end, keeps nothing."""

    def stream_data(self, data: bytes) -> None:
        pass

    def stream_end(self) -> None:
        pass

    def stream_abort(self, error: ProxyError) -> None:
        pass


DROP = _Drop()

OPEN, ENDED, FAILED, ABANDONED = "open", "ended", "failed", "abandoned"


class BodyStream:
    __slots__ = ("_held", "_on_close", "_pending", "_pending_bytes", "_sink_paused", "error", "fed", "length",
                 "limit", "sink", "source", "state", "trailers")

    def __init__(self, source: StreamSource, length: int, limit: int) -> None:
        self.source = source
        self.length = length  # the body's length when the upstream gave one (Content-Length), else -1
        self.limit = limit
        self.sink: StreamSink | None = None
        self.state = OPEN
        self.error: ProxyError | None = None
        self.trailers: list[tuple[bytes, bytes]] | None = None  # the answer's trailers, known at its end
        self.fed = 0  # body bytes the producer gave (the access log's bytes_out of a streamed answer)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._sink_paused = False
        self._held = False  # the source was told to stop reading
        self._on_close: Callable[[], None] | None = None

    @property
    def done(self) -> bool:
        return self.state != OPEN

    # the producer ----------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if self.state != OPEN or not data:
            return
        self.fed += len(data)
        sink = self.sink
        if sink is not None:
            sink.stream_data(data)
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        self._update()

    def end(self, trailers: list[tuple[bytes, bytes]] | None = None) -> None:
        """The body ended cleanly (the source has settled whether its connection is reusable), with `trailers`
        when the answer had some: the sink reads them when it hears of the end."""
        if self.state != OPEN:
            return
        self.trailers = trailers
        self.state = ENDED
        self._closed()
        if self.sink is not None:
            self.sink.stream_end()

    def fail(self, error: ProxyError) -> None:
        """The body cannot be completed (reset, timeout, too large): the consumer must abort."""
        if self.state != OPEN:
            return
        self.state = FAILED
        self.error = error
        self._pending.clear()
        self._closed()
        if self.sink is not None:
            self.sink.stream_abort(error)

    # the consumer ----------------------------------------------------------------------------------
    def attach(self, sink: StreamSink) -> None:
        """Deliver the body to `sink` from now on: what waited here first, then the end if it came."""
        self.sink = sink
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending = []
            self._pending_bytes = 0
            sink.stream_data(data)
        if self.state == ENDED:
            sink.stream_end()
        elif self.state == FAILED:
            assert self.error is not None
            sink.stream_abort(self.error)
        else:
            self._update()

    def pause(self) -> None:
        self._sink_paused = True
        self._update()

    def resume(self) -> None:
        self._sink_paused = False
        self._update()

    def abandon(self) -> None:
        """The consumer went away (or never wants the body): the source drops its connection mid-body."""
        if self.state != OPEN:
            return
        self.state = ABANDONED
        self._pending.clear()
        self.source.abandon()
        self._closed()

    def discard(self) -> None:
        """Read the body to its end and drop it (the exchange completes; the connection may be reused)."""
        self._sink_paused = False
        self.attach(DROP)

    def when_closed(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the stream is over (now, if it already is)."""
        if self.state != OPEN:
            callback()
        else:
            self._on_close = callback

    # inside ----------------------------------------------------------------------------------------
    def _update(self) -> None:
        """Hold the source while the sink is paused, or while no sink takes the body and `limit` bytes wait."""
        hold = self._sink_paused if self.sink is not None else self._pending_bytes >= self.limit
        if hold != self._held and self.state == OPEN:
            self._held = hold
            if hold:
                self.source.pause_reading()
            else:
                self.source.resume_reading()

    def _closed(self) -> None:
        callback = self._on_close
        self._on_close = None
        if callback is not None:
            callback()

    def __repr__(self) -> str:
        return (f"<BodyStream {self.state} length={self.length} pending={self._pending_bytes} "
                f"held={self._held}>")


__all__ = ["DROP", "BodyStream", "StreamSink", "StreamSource"]
