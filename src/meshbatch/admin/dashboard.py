"""The live dashboard on the admin listener, its JSON feed, and the batch recorder's endpoint.

GET /dashboard               the page (HTML, with its script and style served from the package; nothing external)
GET /dashboard/feed?since=N  live figures as JSON: routes, clusters, listeners, and the history points after N
GET /recorder[?route=NAME]   a batching route's recent batches: arrival times and upstream timings (`tune`)

Once a second a timer reads every route's cumulative counters and histograms into the `Series` (the last five
minutes), so the page and `meshbatch top` show rates and windowed percentiles from their first poll: requests per
route, a batching route's items, upstream calls, queue and latency (`batch_reading`), an ingest route's events
accepted, delivered, retried and dead-lettered and its log's backlog (meshbatch.admin.ingest_feed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

import orjson

from meshbatch.admin.ingest_feed import ingest_entry, ingest_reading
from meshbatch.admin.target import SnapshotView
from meshbatch.config.redact import scrub
from meshbatch.errors import NoRoute
from meshbatch.http.message import Request, Response
from meshbatch.telemetry.metrics import Histogram
from meshbatch.telemetry.requests import RequestStats
from meshbatch.telemetry.series import Hist, Reading, Series

if TYPE_CHECKING:
    from meshbatch.batching.handler import BatchHandler

STATIC = Path(__file__).parent / "static"
ASSETS = {
    b"/dashboard": ("dashboard.html", b"text/html; charset=utf-8"),
    b"/dashboard/charts.js": ("charts.js", b"text/javascript; charset=utf-8"),
    b"/dashboard/app.js": ("dashboard.js", b"text/javascript; charset=utf-8"),
    b"/dashboard/style.css": ("dashboard.css", b"text/css; charset=utf-8"),
}
SAMPLE_EVERY = 1.0
HISTORY = 300  # points: five minutes at one a second
SIZE_WINDOW = 60.0  # seconds of batch sizes in the distribution


class DashboardTarget(Protocol):
    @property
    def snapshot(self) -> SnapshotView: ...

    @property
    def draining(self) -> bool: ...

    def listeners_summary(self) -> list[dict[str, Any]]: ...

    def request_stats(self) -> dict[str, RequestStats]: ...


def _hist(hist: Histogram, scale: float = 1.0) -> Hist:
    return Hist(hist.bounds, tuple(hist.counts), hist.sum, scale)


def _json(payload: Any) -> Response:
    """JSON with every string scrubbed of credentials (a discovery or sink error may quote a URL)."""
    return Response(200, [(b"content-type", b"application/json"), (b"cache-control", b"no-store")],
                    orjson.dumps(scrub(payload), option=orjson.OPT_NON_STR_KEYS))


def batch_reading(batcher: BatchHandler, reading: Reading) -> None:
    """Add a batching route's figures to `reading`."""
    metrics, dispatcher = batcher.metrics, batcher.dispatcher
    counters = reading.counters
    counters["items"] = dispatcher.completed.total
    counters["batches"] = metrics.size.count
    counters["calls"] = upstream_calls(batcher)
    calls = metrics.calls
    counters["batch_errors"] = calls.get(metrics.call_labels["error"]) + calls.get(metrics.call_labels["bad_answer"])
    counters["rejected"] = sum(metrics.rejection_counts().values())
    for reason, n in metrics.flush_counts().items():
        counters[f"flush_{reason}"] = n
    reading.hists["size"] = _hist(metrics.size)
    reading.hists["queue_ms"] = _hist(metrics.queue, 1000.0)
    reading.hists["upstream_ms"] = _hist(metrics.upstream, 1000.0)
    reading.gauges["queued"] = batcher.accumulator.queued
    reading.gauges["in_flight"] = dispatcher.in_flight


def upstream_calls(batcher: BatchHandler) -> int:
    """Upstream batch calls made so far, whatever their outcome (retries and isolation calls included)."""
    metrics = batcher.metrics
    return int(sum(metrics.calls.get(labels) for labels in metrics.call_labels.values()))


class Dashboard:
    def __init__(self, target: DashboardTarget) -> None:
        self.target = target
        self.series = Series(HISTORY)
        self.started = time.time()
        self._timer: asyncio.TimerHandle | None = None
        self._assets: dict[bytes, bytes] = {}

    def routes(self) -> dict[bytes, Callable[[Request], Response]]:
        out: dict[bytes, Callable[[Request], Response]] = {path: self.asset for path in ASSETS}
        out[b"/dashboard/feed"] = self.feed
        out[b"/recorder"] = self.recorder
        return out

    # -- sampling -------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.sample()
        self._timer = asyncio.get_running_loop().call_later(SAMPLE_EVERY, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self.sample()
        self._timer = asyncio.get_running_loop().call_later(SAMPLE_EVERY, self._tick)

    def sample(self, now: float | None = None) -> None:
        self.series.sample(time.monotonic() if now is None else now, self.readings())

    def readings(self) -> dict[str, Reading]:
        snapshot = self.target.snapshot
        out: dict[str, Reading] = {}
        for stats in self.target.request_stats().values():
            for route, (statuses, durations) in stats.by_route().items():
                reading = out.setdefault(route, Reading())
                reading.counters["requests"] = reading.counters.get("requests", 0) + sum(statuses.values())
                errors = sum(n for status, n in statuses.items() if status >= 500)
                reading.counters["errors_5xx"] = reading.counters.get("errors_5xx", 0) + errors
                if durations is not None:
                    reading.hists["request_ms"] = _hist(durations, 1000.0)
        for name, batcher in snapshot.batchers.items():
            batch_reading(batcher, out.setdefault(name, Reading()))
        for name, ingest in snapshot.ingest.items():
            ingest_reading(ingest, out.setdefault(name, Reading()))
        return out

    # -- endpoints ------------------------------------------------------------------------------------------

    def asset(self, request: Request) -> Response:
        name, content_type = ASSETS[request.path]
        body = self._assets.get(request.path)
        if body is None:
            body = self._assets[request.path] = (STATIC / name).read_bytes()
        return Response(200, [(b"content-type", content_type), (b"cache-control", b"no-cache")], body)

    def feed(self, request: Request) -> Response:
        query = parse_qs(request.query.decode("latin-1"))
        try:
            since = int(query.get("since", ["0"])[-1])
        except ValueError:
            since = 0
        target = self.target
        snapshot = target.snapshot
        points = self.series.points
        latest: dict[str, Any] = points[-1]["routes"] if points else {}
        routes: list[dict[str, Any]] = []
        for listener in snapshot.config.listeners:
            for route in listener.routes:
                entry: dict[str, Any] = {
                    "name": route.name, "listener": listener.name, "cluster": route.cluster or None,
                    "kind": route.kind,
                    "latest": latest.get(route.name, {}),
                }
                batcher = snapshot.batchers.get(route.name)
                if batcher is not None:
                    entry["batcher"] = batcher.summary()
                    entry["upstream_calls_total"] = upstream_calls(batcher)
                    window = self.series.window(route.name, "size", SIZE_WINDOW)
                    size = batcher.metrics.size
                    entry["sizes"] = {"bounds": list(size.bounds), "window_s": SIZE_WINDOW,
                                      "counts": window[1] if window is not None else list(size.counts),
                                      "total": list(size.counts)}
                ingest = snapshot.ingest.get(route.name)
                if ingest is not None:
                    entry["ingest"] = ingest_entry(ingest)
                routes.append(entry)
        statuses: dict[str, dict[int, int]] = {}
        for stats in target.request_stats().values():
            for route_name, (by_status, _) in stats.by_route().items():
                merged = statuses.setdefault(route_name, {})
                for status, n in by_status.items():
                    merged[status] = merged.get(status, 0) + n
        for entry in routes:
            entry["statuses"] = statuses.get(entry["name"], {})
        return _json({
            "now": time.time(), "started": self.started, "version": snapshot.version,
            "loaded_at": snapshot.loaded_at, "draining": target.draining, "seq": self.series.seq,
            "routes": routes,
            "clusters": [cluster.summary() for cluster in snapshot.clusters.values()],
            "listeners": target.listeners_summary(),
            "history": self.series.since(since),
        })

    def recorder(self, request: Request) -> Response:
        query = parse_qs(request.query.decode("latin-1"))
        batchers = self.target.snapshot.batchers
        names = query.get("route")
        if not names:
            return _json({"routes": {name: _recorder_state(b) for name, b in batchers.items()}})
        batcher = batchers.get(names[-1])
        if batcher is None:
            raise NoRoute("no_batching_route", f"no batching route {names[-1]!r}; known: {', '.join(batchers)}")
        return _json(recorder_document(batcher))


def recorder_document(batcher: BatchHandler) -> dict[str, object]:
    """`GET /recorder?route=NAME`'s document: the route's policy now and its recorded batches (what `tune` reads)."""
    from meshbatch.batching.canary_shell import CanaryDispatcher  # (a batcher: the batching package is in)

    config = batcher.config
    recorder = batcher.dispatcher.recorder
    policy = {"max_items": config.max_items, "max_wait_ms": config.max_wait_ms,
              "min_wait_ms": config.min_wait_ms, "max_in_flight": batcher.dispatcher.max_in_flight}
    canary = batcher.dispatcher.canary_summary() if isinstance(batcher.dispatcher, CanaryDispatcher) else None
    setting = canary["setting"] if canary is not None else None
    if isinstance(setting, dict):  # the route's setting outside candidate batches: a promoted one included
        policy.update({k: v for k, v in setting.items() if v is not None})
    return {
        "route": batcher.route, "clock": "monotonic seconds", "now": batcher.dispatcher.clock.now(),
        "policy": {**policy, "max_queue": config.max_queue, "timeout_ms": round(batcher.timeout * 1000, 3),
                   "adaptive": config.adaptive is not None and config.adaptive.target_p99_ms is not None,
                   "canary": None if canary is None else canary["state"]},
        "model": batcher.model.summary(),
        **_recorder_state(batcher),
        "batches": recorder.export() if recorder is not None else [],
    }


def _recorder_state(batcher: BatchHandler) -> dict[str, object]:
    recorder = batcher.dispatcher.recorder
    if recorder is None:
        return {"recording": False, "recorded": 0, "items": 0}
    return {"recording": True, "recorded": recorder.recorded, "items": recorder.items,
            "max_items": recorder.max_items}


__all__ = ["Dashboard", "DashboardTarget", "batch_reading", "recorder_document"]
