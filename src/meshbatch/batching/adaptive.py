"""Adaptive batching: choose the hold (wait) and the size cap from the learnt upstream cost and a latency target.

Every `update` (a few times a second, on batch completions) the controller:
1. reads the fit t(n) = a + b*n and its tail t99(n) = t(n) + residual p99 (`LatencyModel`), and the arrival
   rate lambda (items/s, smoothed);
2. finds the largest batch size n <= max_items whose added latency fits the budget:
       fill(n) + t99(n) - t(1) <= target * scale,   fill(n) = (n - 1) / lambda
   (the first caller of a batch waits for n - 1 more arrivals, then for a batch that is slower than a single
   call); since per-item upstream cost t(n)/n falls with n, the largest such n buys the most throughput;
3. finds the smallest size that keeps up with lambda with 20% headroom: max_in_flight * n / t(n) >= lambda/0.8;
4. sets the size cap to the larger of the two (never below what the load needs; above it only as far as the
   budget allows), and the hold to fill(n) -- but only when the upstream is at least half busy
   (lambda * t(n)/n / max_in_flight >= 0.5): at low load holding buys nothing and costs latency, so batches go
   at the end of the event-loop tick. The hold stays within [min_wait_ms, max_wait_ms];
5. corrects itself from what it observes: `scale` shrinks by 20% when the p99 of the measured added latency
   (worst caller per batch, over the batches since the last correction, at least a quarter window) exceeds
   the target, and grows back by 10% up to 1 when it is under 70% of it (multiplicative decrease, as
   Clipper's AIMD).
Until the model has 8 batches it holds `min_wait_ms` and caps at `max_items`.
"""

from __future__ import annotations

import math
from collections import deque

from meshbatch.batching.model import LatencyModel

HEADROOM = 0.8
BUSY = 0.5


def _sizes(max_items: int) -> list[int]:
    sizes = list(range(1, min(max_items, 64) + 1))
    n = 64.0
    while sizes[-1] < max_items:
        n *= 1.125
        sizes.append(min(max_items, int(n)))
    return sizes


class AdaptiveController:
    __slots__ = ("_added", "_arrivals", "_last", "_sizes", "cap", "hold", "last_p99", "max_in_flight",
                 "max_items", "max_wait", "min_wait", "model", "rate", "scale", "target", "updates", "utilisation")

    def __init__(self, model: LatencyModel, *, target: float, window: int, min_wait: float, max_wait: float,
                 max_items: int, max_in_flight: int) -> None:
        self.model = model
        self.target = target
        self.min_wait, self.max_wait = min_wait, max_wait
        self.max_items, self.max_in_flight = max_items, max_in_flight
        self.hold = min_wait
        self.cap = max_items
        self.scale = 1.0
        self.rate = 0.0
        self.utilisation = 0.0
        self.updates = 0
        self.last_p99 = 0.0
        self._added: deque[float] = deque(maxlen=window)
        self._sizes = _sizes(max_items)
        self._last: float | None = None
        self._arrivals = 0

    def observe_added(self, seconds: float) -> None:
        """The added latency of the worst caller of one batch: queue wait + (batch time - single-call time)."""
        self._added.append(seconds)

    def _p99(self) -> float:
        ordered = sorted(self._added)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if ordered else 0.0

    def update(self, now: float, arrivals: int) -> None:
        """Re-decide from the model and `arrivals` (the running count of items queued)."""
        if self._last is not None and now > self._last:
            instant = (arrivals - self._arrivals) / (now - self._last)
            self.rate = instant if self.rate == 0 else 0.7 * self.rate + 0.3 * instant
        self._last, self._arrivals = now, arrivals
        self.updates += 1
        self._feedback()
        model = self.model
        if not model.ready:
            self.hold, self.cap = self.min_wait, self.max_items
            return
        rate = self.rate
        budget = self.target * self.scale
        single = model.expected(1)
        best = 1
        for n in self._sizes:
            fill = (n - 1) / rate if rate > 0 else (0.0 if n == 1 else math.inf)
            if fill + model.tail(n) - single > budget:
                break
            best = n
        need = self._needed(rate)
        self.cap = max(1, min(self.max_items, max(best, need)))
        mean = max(1.0, model.mean_size())
        self.utilisation = rate * model.expected(round(mean)) / mean / self.max_in_flight
        hold = (best - 1) / rate if rate > 0 and self.utilisation >= BUSY else 0.0
        self.hold = min(self.max_wait, max(self.min_wait, hold))

    def _needed(self, rate: float) -> int:
        a, b = self.model.a, self.model.b
        room = HEADROOM * self.max_in_flight - rate * b
        if rate <= 0:
            return 1
        if room <= 0:
            return self.max_items
        return max(1, math.ceil(rate * a / room))

    def _feedback(self) -> None:
        # Each decision looks at fresh batches only, so one slow spell is not punished twice.
        added = self._added
        if len(added) < max(8, (added.maxlen or 8) // 4):
            return
        p99 = self.last_p99 = self._p99()
        added.clear()
        if p99 > self.target:
            self.scale = max(0.05, self.scale * 0.8)
        elif p99 < 0.7 * self.target:
            self.scale = min(1.0, self.scale * 1.1)

    def summary(self) -> dict[str, object]:
        return {
            "target_p99_ms": round(self.target * 1000, 3),
            "observed_p99_ms": round(self.last_p99 * 1000, 3),
            "hold_ms": round(self.hold * 1000, 3),
            "size_cap": self.cap,
            "arrival_rate": round(self.rate, 1),
            "utilisation": round(self.utilisation, 3),
            "budget_scale": round(self.scale, 3),
            "updates": self.updates,
        }


__all__ = ["AdaptiveController"]
