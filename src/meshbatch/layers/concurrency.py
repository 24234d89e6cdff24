"""Adaptive concurrency: a gradient controller on the minimum round trip (after Envoy's filter; sans-I/O).

The controller alternates between two phases:
- measuring: the limit is pinned to `min_concurrency` until `min_rtt_requests` answers have come back; their
  `sample_percentile` is the new minRTT, the latency of an upstream that is not queueing;
- adjusting: every `sample_window_ms`, the window's `sample_percentile` latency (sampleRTT) gives
  gradient = clamp((minRTT x (1 + buffer)) / sampleRTT, 0.5, 2.0), and the limit becomes
  limit x gradient + sqrt(limit x gradient) (the square root is headroom to probe for more), within
  [min_concurrency, max_concurrency].
It measures again every `min_rtt_interval_ms` (jittered by up to `jitter_percent`, so that proxies started
together do not measure together), and after five windows in a row at the minimum limit. A request over the
limit is answered 503 `concurrency_limited` at once. Answers of 5xx and errors release their place without
a sample: a fast failure must not look like a fast upstream.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from math import ceil, sqrt

from meshbatch.config.plain import AdaptiveConcurrency
from meshbatch.errors import ConcurrencyLimited
from meshbatch.http.message import Response
from meshbatch.layers.metrics import LayerMetrics
from meshbatch.service import Call, Service

MEASURING, ADJUSTING = "measuring", "adjusting"
MAX_SAMPLES = 100_000  # per window: a bound on memory, far above what a window sees


def percentile(samples: list[float], p: float) -> float:
    """The nearest-rank p-th percentile (0 < p <= 100) of a non-empty list."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, ceil(p / 100 * len(ordered)) - 1))]


class GradientController:
    __slots__ = (
        "_at_min",
        "_random",
        "_samples",
        "_saved",
        "_window_end",
        "config",
        "in_flight",
        "limit",
        "min_rtt",
        "next_measure",
        "rejected",
        "state",
    )

    def __init__(self, config: AdaptiveConcurrency, now: float, rng: Callable[[], float] | None = None) -> None:
        self.config = config
        self._random = rng or random.random
        self.limit = float(config.min_concurrency)
        self.in_flight = 0
        self.min_rtt = 0.0
        self.rejected = 0
        self._samples: list[float] = []
        self._saved = float(config.min_concurrency)  # the limit before a measurement, given back after it
        self._at_min = 0
        self._window_end = now
        self.state = MEASURING
        self.next_measure = now

    # the caller's side -----------------------------------------------------------------------------
    def try_acquire(self, now: float) -> bool:
        self._tick(now)
        if self.in_flight >= int(self.limit):
            self.rejected += 1
            return False
        self.in_flight += 1
        return True

    def release(self, rtt: float | None, now: float) -> None:
        """A request ended; `rtt` is its round trip, or None when it gives no sample (a failure)."""
        self.in_flight -= 1
        self.sample(rtt, now)

    def sample(self, rtt: float | None, now: float) -> None:
        """A round trip (None: none, a failure) from a caller that keeps its own count of what is in flight (the
        batcher's `max_in_flight: auto`, batching/slots.py); the limit moves as with `release`."""
        if rtt is not None and len(self._samples) < MAX_SAMPLES:
            self._samples.append(rtt)
        self._tick(now)

    # the controller --------------------------------------------------------------------------------
    def _tick(self, now: float) -> None:
        config = self.config
        if self.state == MEASURING:
            if len(self._samples) >= config.min_rtt_requests:
                self.min_rtt = percentile(self._samples, config.sample_percentile)
                self._samples = []
                self.state = ADJUSTING
                self.limit = self._saved
                self._at_min = 0
                self._window_end = now + config.sample_window_ms / 1000
                jitter = 1 + self._random() * config.jitter_percent / 100
                self.next_measure = now + config.min_rtt_interval_ms / 1000 * jitter
            return
        if now < self._window_end:
            return
        self._window_end = now + config.sample_window_ms / 1000
        if self._samples:
            sample_rtt = percentile(self._samples, config.sample_percentile)
            self._samples = []
            target = self.min_rtt * (1 + config.buffer_percent / 100)
            gradient = min(2.0, max(0.5, target / sample_rtt)) if sample_rtt > 0 else 2.0
            limit = self.limit * gradient
            self.limit = min(float(config.max_concurrency), max(float(config.min_concurrency), limit + sqrt(limit)))
        if int(self.limit) <= config.min_concurrency:
            self._at_min += 1
        else:
            self._at_min = 0
        if now >= self.next_measure or self._at_min >= 5:
            self._measure()

    def _measure(self) -> None:
        self.state = MEASURING
        self._saved = self.limit
        self.limit = float(self.config.min_concurrency)
        self._samples = []

    def summary(self) -> dict[str, object]:
        return {"state": self.state, "limit": int(self.limit), "in_flight": self.in_flight,
                "min_rtt_ms": round(self.min_rtt * 1000, 3), "rejected": self.rejected}

    def __repr__(self) -> str:
        return f"<GradientController {self.state} limit={int(self.limit)} in_flight={self.in_flight}>"


class ConcurrencyLayer:
    __slots__ = ("controller", "inner", "loop", "metrics", "route")

    def __init__(self, inner: Service, controller: GradientController, route: str, loop: asyncio.AbstractEventLoop,
                 metrics: LayerMetrics | None = None) -> None:
        self.inner = inner
        self.controller = controller
        self.route = route
        self.loop = loop
        self.metrics = metrics

    async def __call__(self, call: Call) -> Response:
        controller, loop = self.controller, self.loop
        start = loop.time()
        if not controller.try_acquire(start):
            if self.metrics is not None:
                self.metrics.concurrency_rejected.inc((self.route,))
            raise ConcurrencyLimited("concurrency_limited",
                                     f"route {self.route!r} has {controller.in_flight} requests in flight, "
                                     f"its limit is {int(controller.limit)}")
        sample: float | None = None
        try:
            response = await self.inner(call)
            if response.status < 500:
                sample = loop.time() - start
            return response
        finally:
            controller.release(sample, loop.time())


__all__ = ["ADJUSTING", "MEASURING", "ConcurrencyLayer", "GradientController", "percentile"]
