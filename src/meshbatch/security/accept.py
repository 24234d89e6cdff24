"""What a listening socket does when `accept()` fails. Pure: the accept loop (meshbatch.security.listener) asks.

A failure that is about this process, not about one connection (out of file descriptors, out of kernel buffers
or memory) does not go away by trying again at once: the pending connection stays in the backlog, the socket
stays readable, and a loop that keeps it registered is called back immediately, forever: a core at 100% and a
log line per call (hundreds of thousands a second). So the listener stops reading its socket and resumes after a
delay that grows (10 ms, doubling, at most 1 s) while the failures go on and starts over after an accept
succeeds; open connections meanwhile finish and free what was missing. nginx (`accept_mutex_delay`, its
"accept() failed (24: Too many open files)" pause) and asyncio (`ACCEPT_RETRY_DELAY`) do the same.

A failure about one connection (it was reset before we took it, a network error the kernel reports on accept)
is skipped: the next connection in the backlog is taken at once. Any other failure pauses, like the shortages:
an error that is not understood must not become a busy loop either.

The log line is throttled: one per interval, saying how many were left out since the previous one.
"""

from __future__ import annotations

import errno

# the error belongs to one pending connection (accept(2): "treat them like EAGAIN by retrying")
CONNECTION_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENETDOWN, errno.ENOPROTOOPT,
                               errno.EHOSTDOWN, errno.EHOSTUNREACH, errno.EOPNOTSUPP, errno.ENETUNREACH,
                               getattr(errno, "ENONET", errno.ENETDOWN)})

INITIAL_DELAY = 0.010
MAX_DELAY = 1.0
LOG_INTERVAL = 5.0


def error_name(code: int | None) -> str:
    """A bounded label for an errno (`EMFILE`), "OSError" when unknown."""
    return errno.errorcode.get(code, "OSError") if code is not None else "OSError"


def skip_connection(code: int | None) -> bool:
    """True when an accept error is about one connection only: take the next one at once."""
    return code in CONNECTION_ERRNOS


class AcceptBackoff:
    """The pause after each failed accept: `initial`, doubling up to `maximum`; `succeeded` starts over."""

    __slots__ = ("_next", "initial", "maximum")

    def __init__(self, initial: float = INITIAL_DELAY, maximum: float = MAX_DELAY) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def failed(self) -> float:
        """The delay before accepting again."""
        delay = self._next
        self._next = min(self.maximum, delay * 2)
        return delay

    def succeeded(self) -> None:
        self._next = self.initial

    @property
    def backing_off(self) -> bool:
        return self._next != self.initial


class LogThrottle:
    """At most one line per `interval` seconds: `allow(now)` is None for a line to leave out, else the number of
    lines left out since the previous one written."""

    __slots__ = ("_last", "interval", "suppressed")

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self._last = float("-inf")
        self.suppressed = 0

    def allow(self, now: float) -> int | None:
        if now - self._last < self.interval:
            self.suppressed += 1
            return None
        self._last = now
        left_out, self.suppressed = self.suppressed, 0
        return left_out


__all__ = ["CONNECTION_ERRNOS", "INITIAL_DELAY", "LOG_INTERVAL", "MAX_DELAY", "AcceptBackoff",
           "LogThrottle", "error_name", "skip_connection"]
