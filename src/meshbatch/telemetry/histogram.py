"""One histogram series, counted on the hot path (a bisect and two adds per observation), rendered by
telemetry/metrics.py at scrape time. Compiled with the hot path: requests observe their duration here."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Final

# Final: the compiled build keeps it in a C static (no module dict look-up per observation).
bisect_left: Final = bisect.bisect_left

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
# From acceptance to delivery: milliseconds when the sink keeps up, up to an hour through an outage.
DELIVERY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)


class Histogram:
    """One histogram series: fixed upper bounds, counts per bucket, sum. `observe` is a bisect and two adds."""

    __slots__ = ("_limits", "bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self._limits = tuple(float(bound) for bound in self.bounds)  # (as floats, for `observe`'s native loop)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # The bucket `bisect_left(bounds, value)` finds (the first bound >= value), by a native walk from the
        # smallest: most observations fall in the first few buckets, and a call to bisect costs more.
        limits = self._limits
        end = len(limits)
        bucket = 0
        while bucket < end and limits[bucket] < value:
            bucket += 1
        self.counts[bucket] += 1
        self.sum += value
        self.count += 1

    def observe_many(self, value: float, n: int) -> None:
        """`n` observations of the same value."""
        self.counts[bisect_left(self.bounds, value)] += n
        self.sum += value * n
        self.count += n

    def quantile(self, q: float) -> float:
        """An upper-bound estimate of the q-quantile (the bucket bound it falls in)."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return self.bounds[i] if i < len(self.bounds) else float("inf")
        return float("inf")

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append((bucket_label(bound), running))
        out.append(("+Inf", self.count))
        return out


def bucket_label(bound: float) -> str:
    return repr(float(bound))


__all__ = ["DELIVERY_BUCKETS", "LATENCY_BUCKETS", "SIZE_BUCKETS", "Histogram", "bucket_label"]
