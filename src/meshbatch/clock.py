"""Time as an injectable dependency: the event loop's clock, and a fake one for tests.

The rule, one clock:
- Every time that is compared with another time (a deadline, a timer, a token bucket, a breaker's open time, an
  outlier window, a queue time) is read from the event loop's clock, `loop.time()`: directly where a loop is at
  hand, else through a `Clock` (`LoopClock` in the proxy, `FakeClock` in tests). A request's `received_at` is
  that clock too (the server stamps it), so deadlines computed anywhere agree.
- `time.monotonic()` is not read for such times: under uvloop the loop's clock lags it by up to a millisecond,
  and a deadline from one compared with a `now` from the other is wrong by that much.
- `time.perf_counter()` only measures a duration (both ends read from it, the difference used, never compared
  with a loop time): the upstream's latency, a pipeline stage's CPU time.
- `time.time()` only stamps wall-clock times that people read or that outlive the process (event ids, the time an
  event was received, log lines).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds, on the event loop's clock."""
        ...


class LoopClock:
    """The event loop's clock: `loop.time()` of the given loop, else of the running one (outside any loop, as
    when a test builds a part without one, `time.monotonic()`: the clock asyncio's own loop reads). The running
    loop found is kept while it runs: `asyncio.get_running_loop()` costs a getpid(2) call each time."""

    __slots__ = ("_given", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._given = loop
        self._loop = loop

    def now(self) -> float:
        loop = self._loop
        if loop is None or (loop is not self._given and not loop.is_running()):
            try:
                loop = self._loop = asyncio.get_running_loop()
            except RuntimeError:
                return time.monotonic()
        return loop.time()


class FakeClock:
    """A clock that moves only when told to; sans-I/O cores are tested with it."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self._now += seconds


__all__ = ["Clock", "FakeClock", "LoopClock"]
