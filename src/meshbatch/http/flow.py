"""Flow control of a connection, either side: `Flow` pauses and resumes its reading and its writing, counts
what it wrote, watches that unsent output keeps moving, and bounds pipelined requests by water marks. The
downstream connection (http/server.py) and the upstream one (http/client.py) both hold one.

Memory per connection is bounded by three limits (Envoy's per-connection buffer limit is the model):
- output: the transport's write buffer has a high-water mark (`limits.max_buffer_bytes`); above it a streamed
  answer stops reading from its upstream (http/stream.py), and the next pipelined request waits;
- stalled output: a client that takes no byte of what is waiting for `limits.send_timeout_ms` (nginx's
  `send_timeout`) has its connection aborted, buffers freed; the idle timeout aborts too when output is
  still unsent (a graceful close would wait for a flush that never comes);
- input: requests read but not yet served are bounded in number (`max_pipelined`) and in body bytes
  (`max_pipelined_bytes`); beyond either, reading pauses until they are served (down to half of each).
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterable
from typing import Any, Protocol

from meshbatch.http.message import Request

CHECKS_PER_TIMEOUT = 4  # a stall is noticed between 1 and 1 + 1/4 send timeouts after the last byte moved


class SendWatch:
    """Whether a connection's unsent output is moving.

    The owner counts every byte it writes (`written`); given how much is still unsent (`buffered`), the
    bytes the client has taken are `written - buffered`. Progress is any growth of that between looks."""

    __slots__ = ("drained", "since")

    def __init__(self) -> None:
        self.since = 0.0  # when output was last seen to move (0.0: no unsent output is being watched)
        self.drained = 0  # the bytes taken by then

    @property
    def watching(self) -> bool:
        return self.since > 0.0

    def begin(self, written: int, buffered: int, now: float, timeout: float) -> float:
        """Unsent output appeared: start watching it; the time of the first look."""
        self.since = now
        self.drained = written - buffered
        return now + timeout / CHECKS_PER_TIMEOUT

    def check(self, written: int, buffered: int, now: float, timeout: float) -> float:
        """A look: 0.0 when nothing is left unsent (watching stops), -1.0 when the client took nothing for a
        whole `timeout` (abort), else the time of the next look."""
        if not self.since:
            return 0.0
        if not buffered:
            self.since = 0.0
            return 0.0
        drained = written - buffered
        if drained > self.drained:
            self.drained = drained
            self.since = now
        elif now >= self.since + timeout:
            return -1.0
        return min(self.since + timeout, now + timeout / CHECKS_PER_TIMEOUT)


def queued_bytes(ready: Iterable[Request]) -> int:
    """The body bytes of the requests read and waiting to be served."""
    return sum(len(request.body) for request in ready)


def must_pause(count: int, size: int, max_count: int, max_bytes: int) -> bool:
    """Stop reading: too many requests, or too many body bytes, wait to be served."""
    return count >= max_count or size > max_bytes


def may_resume(count: int, size: int, max_count: int, max_bytes: int) -> bool:
    """Read again: the waiting requests are down to half of both limits."""
    return count <= max_count // 2 and size <= max_bytes // 2


class FlowTransport(Protocol):
    """What a `Flow` steers: a transport (pausing reading; how much output is unsent)."""

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def get_write_buffer_size(self) -> int: ...


class Flow:
    """One connection's flow control: reading paused or not (and for good, after a protocol error), writing
    paused by the transport's high-water mark until its low one, the bytes written and the send watch.

    Reading is paused by whichever needs it (a queue of pipelined requests over its high-water mark, a stream
    whose consumer cannot keep up) and resumed when that need goes (the low-water mark); `stop_reading`
    pauses it for good. Each change reaches the transport once."""

    __slots__ = ("_stopped", "reading_paused", "send", "transport", "writing_paused", "written")

    def __init__(self, transport: FlowTransport | None = None) -> None:
        self.transport = transport
        self.reading_paused = False
        self.writing_paused = False
        self._stopped = False
        self.written = 0
        self.send = SendWatch()

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self._stopped and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()

    def stop_reading(self) -> None:
        """Read nothing more on this connection (it is to be closed)."""
        self._stopped = True
        self.pause_reading()

    def queue_grew(self, ready: Iterable[Request], count: int, max_count: int, max_bytes: int) -> None:
        """Requests wait to be served: above either high-water mark, reading pauses."""
        if count and not self.reading_paused and must_pause(count, queued_bytes(ready), max_count, max_bytes):
            self.pause_reading()

    def queue_shrank(self, ready: Iterable[Request], count: int, max_count: int, max_bytes: int) -> None:
        """A waiting request was taken: down to both low-water marks, reading resumes."""
        if self.reading_paused and not self._stopped and may_resume(count, queued_bytes(ready), max_count, max_bytes):
            self.resume_reading()

    def wrote(self, size: int) -> int:
        """Count bytes handed to the transport; how many are still unsent (0: no transport)."""
        self.written += size
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def watch_send(self, buffered: int, now: float, timeout: float) -> float:
        """Output is unsent: watch it (the time of the first look), unless it is watched already (0.0)."""
        if not buffered or self.send.watching:
            return 0.0
        return self.send.begin(self.written, buffered, now, timeout)

    def check_send(self, now: float, timeout: float) -> float:
        """A look at unsent output (see `SendWatch.check`)."""
        transport = self.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return self.send.check(self.written, buffered, now, timeout)


_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: closing sends a reset and drops what is unsent


def abort_with_reset(transport: Any) -> None:
    """Drop a connection now with a reset (not a FIN), whatever is unsent: a caller reading a body that ends
    with the connection (HTTP/1.0) must not take a cut one for a whole one."""
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        transport.abort()


__all__ = ["CHECKS_PER_TIMEOUT", "Flow", "FlowTransport", "SendWatch", "abort_with_reset", "may_resume", "must_pause",
           "queued_bytes"]
