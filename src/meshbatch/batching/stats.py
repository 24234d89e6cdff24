"""The batcher's metrics (registered once per route) and the drain-rate meter behind Retry-After."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from meshbatch.batching.batch import FLUSH_REASONS
from meshbatch.telemetry.metrics import SIZE_BUCKETS, Gauge, Metric, Registry

if TYPE_CHECKING:
    from meshbatch.batching.batch import Batch
    from meshbatch.batching.bisection import Bisection


COST_BUCKETS = tuple(float(2**n) for n in range(21))  # 1 to ~1M: token counts, node counts, bytes


class RateMeter:
    """Events per second, smoothed: each period of at least `period` seconds blends in with weight growing with
    its length, so an idle spell pulls the rate towards zero."""

    __slots__ = ("_count", "_start", "period", "rate", "total")

    def __init__(self, period: float = 1.0) -> None:
        self.period = period
        self.rate = 0.0
        self.total = 0
        self._count = 0
        self._start: float | None = None

    def add(self, n: int, now: float) -> None:
        self.total += n
        if self._start is None:
            self._start = now  # the first events mark the start: the span they took is unknown
            return
        self._count += n
        if now - self._start >= self.period:
            self.rate = self.value(now)
            self._count = 0
            self._start = now

    def value(self, now: float) -> float:
        """The rate now."""
        if self._start is None:
            return 0.0
        elapsed = now - self._start
        if elapsed < self.period:
            return self.rate if self.rate or elapsed <= 0 else self._count / elapsed
        current = self._count / elapsed
        if not self.rate:
            return current
        keep: float = 0.5 ** (elapsed / self.period)
        return keep * self.rate + (1 - keep) * current


class BatchMetrics:
    """Every batching metric carries the `route` label; label tuples are built once here, not per request."""

    def __init__(self, registry: Registry, route: str, *, cost: bool = False,
                 buckets: list[str] | None = None) -> None:
        self.route = route
        self.labels = (route,)
        self.size = registry.histogram(
            "meshbatch_batch_size_items", "Items per upstream batch call (unit: items)", ["route"],
            SIZE_BUCKETS).labels(self.labels)
        self.callers = registry.histogram(
            "meshbatch_batch_size_callers", "Callers answered per upstream batch call, dedup included (unit: callers)",
            ["route"], SIZE_BUCKETS).labels(self.labels)
        self.queue = registry.histogram(
            "meshbatch_batch_queue_seconds", "Seconds an item waited in the batch queue before its batch was sent",
            ["route"]).labels(self.labels)
        self.upstream = registry.histogram(
            "meshbatch_batch_upstream_seconds", "Seconds an upstream batch call took", ["route"]).labels(self.labels)
        self.flushes = registry.counter("meshbatch_batch_flushes_total", "Batches flushed, by reason",
                                        ["route", "reason"])
        self.rejections = registry.counter(
            "meshbatch_batch_rejections_total", "Requests the batcher answered itself without an upstream result, "
            "by reason", ["route", "reason"])
        self.items = registry.counter("meshbatch_batch_items_total", "Items sent upstream in batches", ["route"])
        self.calls = registry.counter("meshbatch_batch_upstream_calls_total", "Upstream batch calls, by outcome",
                                      ["route", "outcome"])
        self.dedup = registry.counter("meshbatch_batch_dedup_total",
                                      "Callers that shared an item queued or in flight (idempotency-key)", ["route"])
        self.replayed = registry.counter("meshbatch_batch_replayed_total", "Callers answered from the idempotency "
                                         "replay window (dedup_window_ms), without an upstream call", ["route"])
        self.cancelled = registry.counter("meshbatch_batch_cancelled_total", "Callers that left before their answer, "
                                          "by stage (queued items are removed, in-flight ones are not)",
                                          ["route", "stage"])
        self.splits = registry.counter(
            "meshbatch_batch_splits_total", "Batches, or parts of one, that the upstream refused with a status blaming "
            "the request, split in halves to isolate the items at fault (batch.isolate)", ["route"])
        self.isolated = registry.counter(
            "meshbatch_batch_isolated_total", "Items the upstream refused alone: their callers got its refusal, "
            "the other callers of their batch their own answers", ["route"])
        self.unresolved = registry.counter(
            "meshbatch_batch_isolation_unresolved_total", "Items of a refused batch still unresolved when its "
            "isolation budget (batch.isolate.max_calls) ran out: their callers got the batch's refusal (502)",
            ["route"])
        self.isolation_calls = registry.counter(
            "meshbatch_batch_isolation_calls_total", "Upstream calls made to isolate the items at fault of refused "
            "batches (beyond each batch's first call)", ["route"])
        # with batch.max_cost: the summed cost of each batch (the budget's use)
        self.cost = registry.histogram(
            "meshbatch_batch_cost", "Summed item cost per upstream batch call (batch.cost; routes with max_cost)",
            ["route"], COST_BUCKETS).labels(self.labels) if cost else None
        # with batch.bucket_by: the items admitted into each shape bucket
        self.bucket_items = registry.counter(
            "meshbatch_batch_bucket_items_total", "Items admitted into each shape bucket (batch.bucket_by)",
            ["route", "bucket"])
        self.bucket_labels = [(route, name) for name in buckets or []]
        self.padding = registry.counter(
            "meshbatch_batch_padding_items_total", "Padding items added to reach a preferred batch size "
            "(batch.pad_to_preferred); their answers are dropped", ["route"])
        self.streamed = registry.counter(
            "meshbatch_batch_streamed_items_total", "Items answered from their own line of a streamed batch answer, "
            "as it arrived (batch.stream_results)", ["route"])
        self.stream_broken = registry.counter(
            "meshbatch_batch_stream_broken_total", "Streamed batch answers that broke off before their last line: "
            "the items without a line got the batch's error", ["route"])
        self.flush_labels = {reason: (route, reason) for reason in FLUSH_REASONS}
        self.call_labels = {outcome: (route, outcome) for outcome in ("ok", "error", "bad_answer")}
        self.cancel_labels = {stage: (route, stage) for stage in ("queued", "in_flight")}

    def started(self, batch: Batch, now: float) -> None:
        """A batch leaves for its upstream: its flush reason, size, cost, padding and each item's time queued."""
        self.flushes.inc(self.flush_labels[batch.reason])
        self.size.observe(len(batch.items))
        if self.cost is not None:
            self.cost.observe(batch.cost)
        if batch.padding:
            self.padding.inc(self.labels, batch.padding)
        queue_hist = self.queue
        for item in batch.items:
            queue_hist.observe(now - item.arrived)

    def isolation(self, bisection: Bisection) -> None:
        """Count what a batch's isolation did (once per batch, when it ends)."""
        labels = self.labels
        self.isolation_calls.inc(labels, bisection.calls)
        if bisection.splits:
            self.splits.inc(labels, bisection.splits)
        if bisection.isolated:
            self.isolated.inc(labels, bisection.isolated)
        if bisection.unresolved:
            self.unresolved.inc(labels, bisection.unresolved)

    def isolation_counts(self) -> dict[str, int]:
        labels = self.labels
        return {"calls": int(self.isolation_calls.get(labels)), "splits": int(self.splits.get(labels)),
                "isolated": int(self.isolated.get(labels)), "unresolved": int(self.unresolved.get(labels))}

    def bucket_counts(self) -> list[int]:
        return [int(self.bucket_items.get(labels)) for labels in self.bucket_labels]

    def reject(self, reason: str) -> None:
        self.rejections.inc((self.route, reason))

    def flush_counts(self) -> dict[str, int]:
        return {reason: int(self.flushes.get(labels)) for reason, labels in self.flush_labels.items()}

    def rejection_counts(self) -> dict[str, int]:
        return {labels[1]: int(value) for labels, value in self.rejections.values.items() if labels[0] == self.route}


GaugeRead = Callable[[Any], Iterable[tuple[str, str, float]]]


class _GaugeSource:
    """One per registry: sums, per route, the gauges of the live batchers. A route being replaced on reload has
    two batchers for a while (the old one draining): they report as one series, never as duplicates."""

    def __init__(self) -> None:
        self.owners: weakref.WeakKeyDictionary[Any, GaugeRead] = weakref.WeakKeyDictionary()

    def __call__(self) -> Iterable[Metric]:
        docs: dict[str, str] = {}
        sums: dict[str, dict[str, float]] = {}
        for owner, read in list(self.owners.items()):
            route = getattr(owner, "route", "")
            for name, doc, value in read(owner):
                docs[name] = doc
                per_route = sums.setdefault(name, {})
                per_route[route] = per_route.get(route, 0.0) + value
        return [Gauge(name, docs[name], ["route"], _constant([((r,), v) for r, v in values.items()]))
                for name, values in sums.items()]


def _constant(samples: list[tuple[tuple[str, ...], float]]) -> Callable[[], Iterable[tuple[tuple[str, ...], float]]]:
    return lambda: samples


_SOURCES: weakref.WeakKeyDictionary[Registry, _GaugeSource] = weakref.WeakKeyDictionary()


def register_gauges(registry: Registry, owner: Any, read: GaugeRead) -> None:
    """Report `read(owner)` -> (metric name, help, value) with owner.route as the `route` label at scrape time.
    The owner is held weakly; `unregister_gauges` stops the reporting (a drained batcher)."""
    source = _SOURCES.get(registry)
    if source is None:
        source = _SOURCES[registry] = _GaugeSource()
        registry.add_source(source)
    source.owners[owner] = read


def unregister_gauges(registry: Registry, owner: Any) -> None:
    source = _SOURCES.get(registry)
    if source is not None:
        source.owners.pop(owner, None)


__all__ = ["BatchMetrics", "RateMeter", "register_gauges", "unregister_gauges"]
