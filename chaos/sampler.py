"""A resource sampler for a proxy process: every second, RSS and open fds (/proc), live asyncio tasks and the
event-loop lag of the last second (/metrics), and CPU seconds; and the growth test of the soak.

Growth test: a least-squares line through the samples of the second half of the run (the first half is warm-up:
pools fill, bounded buffers fill, allocators settle). A resource "grows without bound" when the lower end of that
slope's 95% confidence interval (slope - 2 standard errors), projected over one hour, exceeds its limit (`LIMITS`,
documented in docs/reliability.md): a steady leak fails, the jitter of an instantaneous count (tasks in flight) does
not."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .common import percentile, slope
from .mesh import Proxy

# Per resource: the largest growth per hour the second-half slope may project, and its unit.
LIMITS: dict[str, tuple[float, str]] = {
    "rss_mib": (64.0, "MiB/h"),  # a leak of ~18 KiB/s fails
    "fds": (30.0, "fds/h"),  # steady load: connections are reused; any fd leak per request or per minute fails
    "tasks": (30.0, "tasks/h"),
    "lag_ms": (60.0, "ms/h"),  # the loop's 1-second maximum lag must not creep up
}
# The proxy's bounded histories fill during its first minutes: the batch recorder (65,536 arrivals per batching
# route, ~2.7 min at 400 items/s) and the dashboard's five minutes of one-second points (~1 MiB a minute at this
# load). A soak of 10 minutes or more measures its second half after both are full; a shorter one still sees the
# dashboard's history fill, and its RSS limit is twice as high (it still fails on ~35 KiB/s, ~50 bytes a request).
FULL_WARMUP_SECONDS = 600.0
SHORT_RSS_LIMIT = 128.0
# Counts that move by a few units with the traffic (connections opened and closed, tasks in flight, the loop's
# worst second): over a short soak's half (30 s for one minute) a drift of two fds projects 240 fds/h, so a slope
# per hour cannot tell jitter from a leak there. A short soak lets each move by this much over its second half;
# the leak checks after settling (fds and tasks back to their floor) are what catch a leak in the short version.
# RSS too: the short soak (20 s) is a smoke test that fails a gross leak (2 MiB over its 10-second second half,
# ~200 KiB/s); the 10-minute soak of `make chaos` is the one that finds a slow leak.
SHORT_DRIFT = {"fds": 8.0, "tasks": 8.0, "lag_ms": 5.0, "rss_mib": 2.0}


def limits_for(seconds: float) -> dict[str, tuple[float, str]]:
    limits = dict(LIMITS)
    if seconds < FULL_WARMUP_SECONDS:
        limits["rss_mib"] = (SHORT_RSS_LIMIT, "MiB/h")
        half_hours = max(seconds, 1.0) / 2 / 3600
        for key, drift in SHORT_DRIFT.items():
            limit, unit = limits[key]
            limits[key] = (max(limit, round(drift / half_hours, 1)), unit)
    return limits


@dataclass
class Sampler:
    proxy: Proxy
    interval: float = 1.0
    samples: list[dict[str, float]] = field(default_factory=list)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="chaos-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            at = time.monotonic()
            try:
                r = self.proxy.resources()
                self.samples.append({"t": round(at - started, 3), "rss_mib": round(r["rss_mib"], 3), "fds": r["fds"],
                                     "tasks": r["tasks"], "lag_ms": round(r["lag_max_ms"], 3),
                                     "cpu_s": round(self.proxy.cpu_seconds(), 3)})
            except (OSError, ValueError):
                self.errors += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - at)))

    def growth(self, limits: dict[str, tuple[float, str]] | None = None) -> dict[str, dict[str, Any]]:
        """Per resource: first and last values, the second half's slope per hour, its limit, and the verdict."""
        samples = self.samples
        half = samples[len(samples) // 2:]
        out: dict[str, dict[str, Any]] = {}
        for key, (limit, unit) in (limits or LIMITS).items():
            per_second, error = slope([(s["t"], s[key]) for s in half])
            values = [s[key] for s in samples]
            out[key] = {"first": values[0] if values else None, "last": values[-1] if values else None,
                        "max": max(values, default=None), "p99_second_half": percentile([s[key] for s in half], 0.99),
                        "slope_per_hour": round(per_second * 3600, 2), "slope_error_per_hour": round(error * 3600, 2),
                        "limit_per_hour": limit, "unit": unit, "ok": (per_second - 2 * error) * 3600 <= limit}
        return out


__all__ = ["LIMITS", "Sampler", "limits_for"]
