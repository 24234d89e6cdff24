"""Event-loop health for /metrics: loop lag, live asyncio tasks.

Nothing here runs on the request path. One timer every `interval` (100 ms) measures how late it fires: a loop
that is blocked (a long callback, a full garbage collection, a slow syscall) fires it late by as much. The
samples go into a histogram and a one-second maximum; the number of live tasks is counted only when scraped.
The resolution is about 1 ms (uvloop keeps timers in whole milliseconds).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from time import perf_counter

from meshbatch.telemetry.metrics import Gauge, Histogram, HistogramVec, Metric, Registry

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LoopMonitor:
    """`start()` once the loop runs, `stop()` at shutdown; registers its metrics with `registry`."""

    __slots__ = ("_expected", "_handle", "_loop", "_recent", "interval", "lag", "last")

    def __init__(self, loop: asyncio.AbstractEventLoop, registry: Registry, interval: float = 0.1) -> None:
        self._loop = loop
        self.interval = interval
        self.lag = Histogram(LAG_BUCKETS)
        self.last = 0.0
        self._recent: deque[float] = deque(maxlen=max(1, round(1.0 / interval)))  # the last second of samples
        self._expected = 0.0
        self._handle: asyncio.TimerHandle | None = None
        registry.add_source(self.metrics)

    def start(self) -> None:
        if self._handle is None:
            self._arm()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self) -> None:
        # a duration (from arming to firing, less the interval): perf_counter, not the loop's own clock, which
        # stands still while the loop is blocked (clock.py)
        self._expected = perf_counter() + self.interval
        self._handle = self._loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        lag = max(0.0, perf_counter() - self._expected)
        self.last = lag
        self.lag.observe(lag)
        self._recent.append(lag)
        self._arm()

    @property
    def recent_max(self) -> float:
        return max(self._recent, default=0.0)

    def tasks(self) -> int:
        return len(asyncio.all_tasks(self._loop))

    def metrics(self) -> Iterator[Metric]:
        hist = HistogramVec("meshbatch_event_loop_lag_seconds",
                            "Seconds the event loop ran a timer due every 100 ms late (sampled lag).", [], LAG_BUCKETS)
        hist.series[()] = self.lag
        yield hist
        yield Gauge("meshbatch_event_loop_lag_max_seconds", "The largest event-loop lag sampled in the last second.",
                    [], lambda: [((), self.recent_max)])
        yield Gauge("meshbatch_asyncio_tasks", "Live asyncio tasks of the proxy's event loop.", [],
                    lambda: [((), float(self.tasks()))])

    def summary(self) -> dict[str, float]:
        return {"lag_last_ms": round(self.last * 1000, 3), "lag_max_1s_ms": round(self.recent_max * 1000, 3),
                "lag_p99_ms": round(self.lag.quantile(0.99) * 1000, 3), "tasks": float(self.tasks())}


__all__ = ["LAG_BUCKETS", "LoopMonitor"]
