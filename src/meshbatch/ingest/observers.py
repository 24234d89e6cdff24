"""What the ingest route reports: its metrics (`IngestMetrics`), and what the flusher asks of the tracing passed
in to it (runtime/observability.py attaches it): a span per delivery of events to the sink, linked to the
requests that brought them. telemetry/spans.py provides it.

The counters follow an event's life, one counter per transition, so that each sums over its labels and over
routes, and the log's contents follow from them:

    request --accepted--> log --delivered--> sink  (deduplicated: delivered, but the sink already held the id)
       |                  ^ |  \\--retries{cause}: back to the log for another delivery (failed | outage)
       |                  | \\--dead_lettered{stage="delivery"}--> dead letters
       \\--dead_lettered{stage="pipeline"}--> dead letters --replayed--> log

    backlog change = accepted + replayed - delivered - dead_lettered{stage="delivery"}

`meshbatch_ingest_delivery_latency_seconds` is each delivered event's time from acceptance (its receive time,
wall clock, so it holds across a restart of the proxy) to the sink's confirmation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from meshbatch.ingest.record import Record
from meshbatch.telemetry.histogram import DELIVERY_BUCKETS
from meshbatch.telemetry.metrics import Counter, Registry

if TYPE_CHECKING:
    from opentelemetry.trace import Span


class DeliveryTracing(Protocol):
    def start_delivery(self, route: str, records: Sequence[Record]) -> Span: ...
    def finish_delivery(self, span: Span, stored: int, failed: int, error: str) -> None: ...


STAGES = ("pipeline", "delivery")
CAUSES = ("failed", "outage")


class IngestMetrics:
    """One route's ingest counters and delivery-latency histogram; label tuples built once."""

    def __init__(self, registry: Registry | None, route: str, wall_clock: Callable[[], float] = time.time) -> None:
        registry = registry if registry is not None else Registry()
        self.route = route
        self.labels = (route,)
        self.wall_clock = wall_clock
        self.accepted_total = registry.counter(
            "meshbatch_ingest_events_accepted_total",
            "Events taken into the ingest log (answered 202), dead-letter replays excluded.", ["route"])
        self.delivered_total = registry.counter(
            "meshbatch_ingest_events_delivered_total",
            "Events the sink confirmed and that left the log (deduplicated ones included).", ["route"])
        self.dead_lettered_total = registry.counter(
            "meshbatch_ingest_events_dead_lettered_total",
            "Events parked in dead letters, by stage: pipeline (refused by validate on arrival, never in the log) "
            "or delivery (out of the log after max_attempts failed deliveries).", ["route", "stage"])
        self.replayed_total = registry.counter(
            "meshbatch_ingest_events_replayed_total", "Dead letters moved back into the log by a replay.", ["route"])
        self.retries_total = registry.counter(
            "meshbatch_ingest_delivery_retries_total",
            "Events returned to the log for another delivery, by cause: failed (the event failed; an attempt "
            "counted) or outage (the sink was unreachable; held, no attempt counted).", ["route", "cause"])
        self.latency = registry.histogram(
            "meshbatch_ingest_delivery_latency_seconds",
            "Seconds from an event's acceptance to the sink's confirmation of its delivery.", ["route"],
            DELIVERY_BUCKETS).labels(self.labels)
        self._stage = {stage: (route, stage) for stage in STAGES}
        self._cause = {cause: (route, cause) for cause in CAUSES}
        self._counts: dict[str, tuple[Counter, tuple[str, ...]]] = {
            "accepted": (self.accepted_total, self.labels), "delivered": (self.delivered_total, self.labels),
            "replayed": (self.replayed_total, self.labels),
            "retried": (self.retries_total, self._cause["failed"]), "held": (self.retries_total, self._cause["outage"]),
            "dead_lettered": (self.dead_lettered_total, self._stage["delivery"]),
            "refused": (self.dead_lettered_total, self._stage["pipeline"]),
        }

    # transitions ---------------------------------------------------------------------------------------------
    def accepted(self, n: int) -> None:
        self.accepted_total.inc(self.labels, n)

    def delivered(self, records: Sequence[Record]) -> None:
        self.delivered_total.inc(self.labels, len(records))
        now = self.wall_clock()
        observe = self.latency.observe_many
        last = -1.0
        same = 0
        for record in records:  # one observation a receive time: the events of one request share theirs
            received = record.received
            if received != last:
                if same:
                    observe(max(0.0, now - last), same)
                last, same = received, 0
            same += 1
        if same:
            observe(max(0.0, now - last), same)

    def dead_lettered(self, stage: str, n: int = 1) -> None:
        self.dead_lettered_total.inc(self._stage[stage], n)

    def replayed(self, n: int) -> None:
        self.replayed_total.inc(self.labels, n)

    def retried(self, cause: str, n: int = 1) -> None:
        self.retries_total.inc(self._cause[cause], n)

    # what the summaries show -----------------------------------------------------------------------------------
    def count(self, name: str) -> int:
        """One count of the summaries: accepted, delivered, replayed, retried (cause failed), held (cause
        outage), dead_lettered (at delivery), refused (dead-lettered by the pipeline)."""
        counter, labels = self._counts[name]
        return int(counter.get(labels))


__all__ = ["CAUSES", "STAGES", "DeliveryTracing", "IngestMetrics"]
