"""The recorded trace `tune` replays: item arrivals and upstream batch timings, from the admin API or a file.

The source is the admin endpoint `GET /recorder?route=NAME` of a running proxy, or a JSON file holding the same
document (`meshbatch tune --admin URL --route NAME --save FILE` writes one). The upstream cost model is fitted to
the successful recorded batches: t(n) = fixed + per_item * n by least squares (non-negative), with the residuals
kept so the replay reproduces the measured spread and tail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from meshbatch.tools.admin_client import get_json
from meshbatch.tools.tune.sim import CostModel, percentile


class TraceError(ValueError):
    """The trace cannot be used (missing, empty, or not a recorder document)."""


@dataclass(frozen=True, slots=True)
class Trace:
    route: str
    policy: dict[str, Any]
    arrivals: tuple[float, ...]  # sorted, seconds (the proxy's monotonic clock)
    batches: tuple[tuple[int, float, bool], ...]  # (size, upstream seconds, ok)
    latencies: tuple[float, ...]  # as recorded: batch answered - item arrival, per item
    document: dict[str, Any]

    @property
    def span(self) -> float:
        return max(self.arrivals[-1] - self.arrivals[0], 1e-9) if len(self.arrivals) > 1 else 1e-9

    @property
    def rate(self) -> float:
        return len(self.arrivals) / self.span

    def recorded_p(self, q: float) -> float:
        return percentile(self.latencies, q)

    def mean_batch(self) -> float:
        return sum(size for size, _, _ in self.batches) / len(self.batches) if self.batches else 0.0


def parse(document: dict[str, Any]) -> Trace:
    if not isinstance(document, dict) or "batches" not in document:
        raise TraceError("not a recorder document (expected the JSON of GET /recorder?route=NAME)")
    arrivals: list[float] = []
    batches: list[tuple[int, float, bool]] = []
    latencies: list[float] = []
    for entry in document["batches"]:
        items = [float(a) for a in entry.get("arrivals", [])]
        if not items:
            continue
        sent, done = float(entry["sent"]), float(entry["done"])
        arrivals.extend(items)
        batches.append((len(items), max(0.0, done - sent), bool(entry.get("ok", True))))
        latencies.extend(max(0.0, done - a) for a in items)
    if len(arrivals) < 2:
        recording = document.get("recording", True)
        raise TraceError("the trace holds no batches yet: send traffic through the route first"
                         if recording else "the proxy records no batches (`recorder.max_items: 0`)")
    arrivals.sort()
    return Trace(str(document.get("route", "?")), dict(document.get("policy", {})), tuple(arrivals), tuple(batches),
                 tuple(latencies), document)


def load(admin: str | None, route: str | None, path: str | None) -> Trace:
    if path is not None:
        try:
            document = orjson.loads(Path(path).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise TraceError(f"{path}: {exc}") from exc
        return parse(document)
    if admin is None or route is None:
        raise TraceError("give --admin URL and --route NAME (a running proxy), or --input FILE")
    return parse(get_json(admin, "/recorder", timeout=30, route=route))


def fit(trace: Trace) -> CostModel:
    """Least-squares t(n) = a + b*n over the successful batches (a, b >= 0), with their residuals."""
    samples = [(n, t) for n, t, ok in trace.batches if ok] or [(n, t) for n, t, _ in trace.batches]
    count = len(samples)
    mean_n = sum(n for n, _ in samples) / count
    mean_t = sum(t for _, t in samples) / count
    var_n = sum((n - mean_n) ** 2 for n, _ in samples) / count
    if var_n <= 1e-12:
        a, b = mean_t, 0.0
    else:
        b = sum((n - mean_n) * (t - mean_t) for n, t in samples) / count / var_n
        a = mean_t - b * mean_n
        if b < 0:
            a, b = mean_t, 0.0
        elif a < 0:
            a, b = 0.0, sum(n * t for n, t in samples) / sum(n * n for n, _ in samples)
    residuals = tuple(t - (a + b * n) for n, t in samples)
    return CostModel(a, b, residuals)


__all__ = ["Trace", "TraceError", "fit", "load", "parse"]
