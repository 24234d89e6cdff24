"""`max_in_flight: auto`: the batches a route has in flight, moved between bounds by the upstream's latency.

The controller is the route-level adaptive concurrency's gradient method (layers/concurrency.py), fed one sample
per successful batch: it measures the upstream's minimum round trip with the slots pinned to `min`, then every
`sample_window_ms` sets the slots to `limit x gradient + sqrt(limit x gradient)` within `[min, max]`, where
gradient = clamp(minRTT x (1 + buffer) / sampleRTT, 0.5, 2). An upstream that gets slower gets fewer batches at
once (and, as the queue grows, bigger ones); one that gets faster gets more.

A batch's time grows with its size, and fewer slots make bigger batches: fed raw, the controller would read its
own decision as a slower upstream and shrink to `min`. So each sample is the batch's time less the part its size
explains, `b x (n - 1)`, with b the per-item cost of the route's latency model (batching/model.py) once it has
enough batches to be trusted: the time a one-item batch would have taken, which grows when the upstream queues.
"""

from __future__ import annotations

from collections.abc import Callable

from meshbatch.batching.model import LatencyModel
from meshbatch.config.plain import AdaptiveConcurrency, InFlightGradient
from meshbatch.layers.concurrency import GradientController


class AutoSlots:
    __slots__ = ("bounds", "gradient", "model", "samples")

    def __init__(self, bounds: InFlightGradient, model: LatencyModel, now: float,
                 rng: Callable[[], float] | None = None) -> None:
        self.bounds = bounds
        self.model = model
        self.samples = 0
        self.gradient = GradientController(AdaptiveConcurrency(
            sample_window_ms=bounds.sample_window_ms, sample_percentile=bounds.sample_percentile,
            buffer_percent=bounds.buffer_percent, min_rtt_interval_ms=bounds.min_rtt_interval_ms,
            min_rtt_requests=bounds.min_rtt_batches, jitter_percent=bounds.jitter_percent,
            min_concurrency=bounds.min, max_concurrency=bounds.max), now, rng)

    @property
    def limit(self) -> int:
        """The batches allowed in flight now."""
        return int(self.gradient.limit)

    def observe(self, size: int, seconds: float, now: float) -> int:
        """A batch of `size` items took `seconds` (a 2xx answer); the limit after it."""
        model = self.model
        if model.ready and size > 1:
            seconds = max(seconds - model.b * (size - 1), seconds / size)
        self.samples += 1
        self.gradient.sample(seconds, now)
        return self.limit

    def summary(self) -> dict[str, object]:
        gradient = self.gradient
        return {"min": self.bounds.min, "max": self.bounds.max, "limit": self.limit, "state": gradient.state,
                "min_rtt_ms": round(gradient.min_rtt * 1000, 3), "samples": self.samples}


__all__ = ["AutoSlots"]
