"""One ingest route: its pipeline, durable log, sink, flusher and accepting handler, started and drained together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

from meshbatch.batching.codecs import CODECS
from meshbatch.clock import Clock, LoopClock
from meshbatch.config.plain import Ingest
from meshbatch.config.plain import IngestRoute as Route
from meshbatch.errors import Unavailable
from meshbatch.ingest.flusher import Flusher, FlushPolicy
from meshbatch.ingest.handler import IngestHandler, check_json, closed_error
from meshbatch.ingest.logs import LOGS, EventLog, LogError
from meshbatch.ingest.observers import IngestMetrics
from meshbatch.ingest.record import EventIds
from meshbatch.ingest.replay import ReplayReport, replay
from meshbatch.ingest.sinks import SINKS, EventSink, SinkContext, SinkUnavailable, sink_type
from meshbatch.ingest.waiters import Waiters
from meshbatch.pipeline import Pipeline
from meshbatch.pipeline.stages.compress import Send
from meshbatch.telemetry.metrics import Counter, Gauge, Metric, Registry

log = logging.getLogger("meshbatch.ingest")


DEFAULT_LINGER_MS: Final = 10.0
RETRY_AFTER_FOR: Final = 0.25  # seconds a full log's Retry-After is answered as computed, before it is again


def linger_ms(route: Route) -> float:
    """How long a delivery slot waits for its batch to fill: `ingest.delivery.linger_ms` when given; else none
    with `ack: delivered` (its producers wait for the delivery: self-clocking batches, no added latency), and
    DEFAULT_LINGER_MS with the other acks. There nobody waits for a delivery, and the delivery's per-batch work
    (the log's read and acknowledgement, the sink's transaction and fsync) is spread over hundreds of events
    instead of one group commit's (about 64 from 64 single-event producers): docs/performance.md, "A delivery
    batch waits for its events"."""
    given = route.ingest.delivery.linger_ms
    if given is not None:
        return given
    return 0.0 if route.ingest.ack == "delivered" else DEFAULT_LINGER_MS


def flush_policy(route: Route) -> FlushPolicy:
    """Delivery sizes from `ingest.delivery` (its own defaults: meshbatch.config.model.ingest.Delivery)."""
    d = route.ingest.delivery
    return FlushPolicy(
        max_items=d.max_items,
        max_bytes=d.max_bytes,
        # The sqlite sink writes on one thread: a second batch in flight would only queue there, while one at a
        # time lets the next batch grow (fewer transactions and fsyncs per event).
        max_in_flight=d.max_in_flight or (1 if sink_type(route) == "sqlite" else 2),
        linger=linger_ms(route) / 1000,
        max_attempts=d.max_attempts,
        backoff_initial=d.backoff_initial_ms / 1000,
        backoff_max=d.backoff_max_ms / 1000,
    )


class IngestRoute:
    def __init__(self, route: Route, *, send: Send | None, pipeline: Pipeline | None, metrics: Registry,
                 clock: Clock | None = None) -> None:
        assert route.ingest is not None
        self.name = route.name
        self.route = route
        self.config: Ingest = route.ingest
        self.clock = clock or LoopClock()
        self.timeout = route.timeout_ms / 1000
        self.pipeline = pipeline if pipeline else None
        self.log: EventLog = LOGS.get(self.config.log.backend)(self.config.log, route.name, self.clock)
        delivery = self.config.delivery
        context = SinkContext(route, send, delivery.timeout_ms / 1000, self.clock)
        self.sink: EventSink = SINKS.get(sink_type(route))(context)
        self.waiters = Waiters() if self.config.ack == "delivered" else None
        self.metrics = IngestMetrics(metrics, route.name)
        self.flusher = Flusher(route.name, self.log, self.sink, flush_policy(route), self.clock, self.waiters,
                               self.metrics)
        check = check_json
        if sink_type(route) == "cluster":
            codec = getattr(self.sink, "codec", None) or CODECS.get("json-array")(None)
            check = _codec_check(codec)
        self.handler = IngestHandler(self, check)
        self.new_id = EventIds()
        self._since = self.clock.now()
        self._retry_after = (0.0, -1.0)  # the last Retry-After, and until when it is answered again
        self.serving = False
        self.closed = False
        self._started: asyncio.Future[None] | None = None
        self._metrics = metrics
        metrics.add_source(self._gauges)

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the log (recovering what a previous run left) and start delivering. Raises LogError."""
        loop = asyncio.get_running_loop()
        if self._started is None:
            self._started = loop.create_future()
        try:
            await self.log.open()
        except LogError as exc:
            self._started.set_exception(exc)
            self._started.exception()
            raise
        try:
            await self.sink.open()
        except SinkUnavailable as exc:  # the log takes events meanwhile; the flusher keeps trying
            log.warning("ingest route %s: sink not available yet: %s", self.name, exc)
        self.flusher.start()
        self.serving = True
        self._started.set_result(None)

    async def wait_started(self) -> None:
        if self.closed or self._started is None:
            raise closed_error() if self.closed else Unavailable("ingest_starting", "the ingest route is starting")
        try:
            await asyncio.shield(self._started)
        except LogError as exc:
            raise Unavailable("ingest_log_unavailable", str(exc)) from None
        if self.closed:
            raise closed_error()

    async def drain(self, timeout: float) -> None:
        """Refuse new events, let deliveries in flight finish, commit what is pending, close."""
        if self.closed:
            return
        self.closed = True
        self.serving = False
        self._metrics.remove_source(self._gauges)
        await self.flusher.stop(timeout)
        if self._started is not None and self._started.done() and self._started.exception() is None:
            try:
                await self.log.close()
            except Exception:
                log.exception("ingest route %s: closing the log failed", self.name)
        await self.sink.close()

    # -- accounting -----------------------------------------------------------------------------------------

    def accepted(self, n: int) -> None:
        self.metrics.accepted(n)

    def refused(self, n: int) -> None:
        self.metrics.dead_lettered("pipeline", n)

    def retry_after(self) -> float:
        """Seconds until the backlog is likely to have drained by a tenth, from the delivery rate so far (1 to 60).
        Computed at most every RETRY_AFTER_FOR seconds: the log's statistics cost about as much as the rest of a
        refusal, and producers that send again at once after a 429 make refusals by the thousand a second."""
        now = self.clock.now()
        value, until = self._retry_after
        if now < until:
            return value
        rate = self.metrics.count("delivered") / max(1.0, now - self._since)
        backlog = float(self.log.stats().get("backlog") or 0)
        value = min(60.0, max(1.0, backlog / 10 / rate)) if rate > 0 else 5.0
        self._retry_after = (value, now + RETRY_AFTER_FOR)
        return value

    async def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        return await self.log.dead_letters(limit)

    async def replay(self, ids: Sequence[str] | None, limit: int, raw: bool = False) -> ReplayReport:
        """Dead letters back into the log, through the route's pipeline unless `raw` (ingest/replay.py)."""
        report = await replay(self.log, self.pipeline, ids, limit, raw)
        self.metrics.replayed(report.replayed)
        return report

    def summary(self) -> dict[str, Any]:
        return {
            "route": self.name,
            "state": "closed" if self.closed else "serving" if self.serving else "starting",
            "ack": self.config.ack,
            "accepted": self.metrics.count("accepted"),
            "dead_lettered_on_arrival": self.metrics.count("refused"),
            "replayed": self.metrics.count("replayed"),
            "log": self.log.stats(),
            "delivery": self.flusher.summary(),
            "sink": self.sink.summary(),
            "waiting_callers": len(self.waiters) if self.waiters is not None else 0,
            "pipeline": self.pipeline.counts() if self.pipeline is not None else {},
        }

    def _gauges(self) -> Iterator[Metric]:
        stats = self.log.stats()
        labels = (self.name,)
        for name, doc, key in (
            ("meshbatch_ingest_backlog", "Events in the ingest log not yet delivered.", "backlog"),
            ("meshbatch_ingest_backlog_bytes", "Bytes of events in the ingest log.", "bytes"),
            ("meshbatch_ingest_oldest_age_seconds", "Age of the oldest undelivered event.", "oldest_age_s"),
            ("meshbatch_ingest_dead_letters", "Events parked in dead letters.", "dead_letters"),
        ):
            yield Gauge(name, doc, ["route"], _constant(labels, float(stats.get(key) or 0)))
        duplicates = Counter("meshbatch_ingest_events_deduplicated_total",
                             "Delivered events whose id the sink already held (a producer's retry, a redelivery "
                             "after a crash): stored once. A part of delivered, not added to it; database sinks.",
                             ["route"])
        duplicates.inc(labels, float(self.sink.summary().get("duplicates_ignored") or 0))
        yield duplicates


def _constant(labels: tuple[str, ...], value: float) -> Callable[[], list[tuple[tuple[str, ...], float]]]:
    return lambda: [(labels, value)]


def _codec_check(codec: Any) -> Any:
    from meshbatch.batching.codecs import ItemRequest

    def check(body: bytes) -> str | None:
        problem: str | None = check_json(body) or codec.check_item(ItemRequest("", body))
        return problem

    return check


__all__ = ["DEFAULT_LINGER_MS", "IngestRoute", "flush_policy", "linger_ms"]
