"""Flow-control decisions of a downstream connection, without I/O: when unsent output has stalled too long,
and when pipelined requests waiting to be served must pause reading.

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

from collections.abc import Iterable

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


__all__ = ["CHECKS_PER_TIMEOUT", "SendWatch", "may_resume", "must_pause", "queued_bytes"]
