"""Recent history of the live figures, for the dashboard and `meshbatch top`: a sans-I/O sampler.

Every second the admin side reads each route's cumulative counters, histograms and gauges (a `Reading`) and
hands them to `Series.sample(now, readings)`. The series keeps the last `capacity` readings and turns each pair of
consecutive ones into a point: rates per second from counter deltas, windowed quantiles from histogram bucket
deltas (interpolated within the bucket, as Prometheus' `histogram_quantile`), and the gauges as read. Counters
that go backwards (a route replaced on reload) count from zero again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Hist:
    """A cumulative histogram as read: upper bounds, counts per bucket (one more than bounds), sum."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float
    scale: float = 1.0  # applied to quantiles and the mean (1000: seconds read as milliseconds)


@dataclass(frozen=True, slots=True)
class Reading:
    counters: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    hists: dict[str, Hist] = field(default_factory=dict)


def quantile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float | None:
    """The q-quantile of bucketed counts, linear within its bucket; the last bound for the overflow bucket."""
    total = sum(counts)
    if total <= 0 or not bounds:
        return None
    rank = q * total
    seen = 0
    for index, n in enumerate(counts):
        if n > 0 and seen + n >= rank:
            if index >= len(bounds):
                return float(bounds[-1])
            low = bounds[index - 1] if index > 0 else 0.0
            return float(low + (bounds[index] - low) * max(0.0, rank - seen) / n)
        seen += n
    return float(bounds[-1])


def _delta(now: Hist, before: Hist | None) -> tuple[list[int], float] | None:
    if before is None or before.bounds != now.bounds or any(a < b for a, b in zip(now.counts, before.counts,
                                                                                  strict=True)):
        return list(now.counts), now.total
    return [a - b for a, b in zip(now.counts, before.counts, strict=True)], now.total - before.total


def point(now: Reading, before: Reading | None, seconds: float) -> dict[str, float | None]:
    """The figures of one interval: `X_per_s` per counter, `X_p50`/`X_p99`/`X_mean` per histogram, the gauges."""
    out: dict[str, float | None] = {}
    seconds = max(seconds, 1e-9)
    for name, value in now.counters.items():
        prior = before.counters.get(name, 0.0) if before is not None else value
        diff = value - prior if value >= prior else value
        out[f"{name}_per_s"] = round(diff / seconds, 3)
    for name, hist in now.hists.items():
        delta = _delta(hist, before.hists.get(name) if before is not None else None) if before is not None else None
        counts, total = delta if delta is not None else ([0] * len(hist.counts), 0.0)
        n = sum(counts)
        for label, q in (("p50", 0.5), ("p99", 0.99)):
            estimate = quantile(hist.bounds, counts, q)
            out[f"{name}_{label}"] = round(estimate * hist.scale, 3) if estimate is not None else None
        out[f"{name}_mean"] = round(total / n * hist.scale, 3) if n else None
    out.update(now.gauges)
    return out


class Series:
    def __init__(self, capacity: int = 300) -> None:
        self.capacity = capacity
        self.readings: deque[tuple[float, dict[str, Reading]]] = deque(maxlen=capacity + 1)
        self.points: deque[dict[str, Any]] = deque(maxlen=capacity)
        self.seq = 0

    def sample(self, now: float, readings: dict[str, Reading]) -> dict[str, Any] | None:
        """Add a reading; returns the new point (None for the very first reading: no interval yet)."""
        previous = self.readings[-1] if self.readings else None
        self.readings.append((now, readings))
        if previous is None:
            return None
        then, before = previous
        self.seq += 1
        new: dict[str, Any] = {
            "seq": self.seq, "t": round(now, 3),
            "routes": {name: point(reading, before.get(name), now - then) for name, reading in readings.items()},
        }
        self.points.append(new)
        return new

    def since(self, seq: int) -> list[dict[str, Any]]:
        """The points after `seq` (all of them for 0)."""
        return [p for p in self.points if p["seq"] > seq]

    def window(self, route: str, hist: str, seconds: float) -> tuple[tuple[float, ...], list[int]] | None:
        """A histogram's counts over about the last `seconds` (bounds, counts), or None before two readings."""
        if len(self.readings) < 2:
            return None
        now, latest = self.readings[-1]
        current = latest.get(route)
        if current is None or hist not in current.hists:
            return None
        start: Reading | None = None
        for then, readings in self.readings:
            if now - then <= seconds + 1e-6:
                start = readings.get(route)
                break
        delta = _delta(current.hists[hist], start.hists.get(hist) if start is not None else None)
        assert delta is not None
        return current.hists[hist].bounds, delta[0]


__all__ = ["Hist", "Reading", "Series", "point", "quantile"]
