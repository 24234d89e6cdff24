"""The flusher: takes ready events from the log in batches and delivers them to the sink.

The log is the durable source of the batching core, the sink its upstream. Per batch: every event the sink
stored is acknowledged in the log (and its `delivered` waiter answered); an event that failed alone is retried
after the shared backoff (core/backoff.py, its one retry decision), and parked in dead letters after
`max_attempts` failures; a batch the sink refused as a whole is split in halves until the event at fault is
alone (the shared plan, batching/bisection.py); an event the sink held (its shard is down: sinks/sharded.py)
goes back to the log until the time the sink gave, with no attempt counted, while the rest of the batch is
settled as usual; one it refused outright is parked at once; a sink that cannot be reached at all puts the
flusher in an outage:
the batch goes back to the log with no attempt counted, and nothing new is taken until the outage backoff has
passed.

Batches are self-clocking: while a delivery slot is free, what is ready goes out, after waiting `linger` for more
when it is short of `max_items` (none with `ack: delivered`, 10 ms with the other acks by default:
meshbatch.ingest.route.linger_ms); while all `max_in_flight` slots are busy, batches grow by themselves up to
`max_items`/`max_bytes`.
`step()` is one take-and-deliver, for tests on a fake clock; `run()` is the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshbatch.batching.bisection import ALONE, Bisection
from meshbatch.clock import Clock
from meshbatch.core.backoff import Backoff
from meshbatch.ingest.logs.base import EventLog
from meshbatch.ingest.observers import IngestMetrics
from meshbatch.ingest.record import Record
from meshbatch.ingest.sinks.base import BatchRejected, EventSink, Held, Outcome, SinkUnavailable, Undeliverable
from meshbatch.ingest.waiters import Waiters

if TYPE_CHECKING:
    from meshbatch.ingest.observers import DeliveryTracing

log = logging.getLogger("meshbatch.ingest")
IDLE_WAIT = 1.0


@dataclass(frozen=True, slots=True)
class FlushPolicy:
    max_items: int = 1000
    max_bytes: int = 4_194_304
    max_in_flight: int = 2
    linger: float = 0.0
    max_attempts: int = 8
    backoff_initial: float = 0.1
    backoff_max: float = 30.0


class Flusher:
    def __init__(self, route: str, event_log: EventLog, sink: EventSink, policy: FlushPolicy, clock: Clock,
                 waiters: Waiters | None = None, metrics: IngestMetrics | None = None,
                 backoff: Backoff | None = None) -> None:
        self.route = route
        self.log = event_log
        self.sink = sink
        self.policy = policy
        self.clock = clock
        self.waiters = waiters
        self.backoff = backoff or Backoff(policy.backoff_initial, policy.backoff_max)
        self.metrics = metrics if metrics is not None else IngestMetrics(None, route)
        self.outage_until = 0.0
        self.outages = 0  # consecutive failed attempts to reach the sink
        self.last_error = ""
        self.batches = self.splits = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self.tracing: DeliveryTracing | None = None  # set by meshbatch.runtime.observability: a span per delivery
        self.error_pause = 1.0  # seconds the loop waits after the log failed to give a batch

    # -- one batch ------------------------------------------------------------------------------------------

    async def step(self) -> int:
        """Take one batch if the sink is not in an outage, deliver it, and settle it; the number of events."""
        if self.outage_until > self.clock.now():
            return 0
        batch = await self.log.take(self.policy.max_items, self.policy.max_bytes)
        if batch:
            await self.deliver(batch)
        return len(batch)

    async def deliver(self, batch: Sequence[Record]) -> None:
        tracing = self.tracing
        if tracing is None:
            await self._deliver(batch)
            return
        span = tracing.start_delivery(self.route, batch)
        stored = failed = 0
        error = "cancelled"
        try:
            stored, failed, error = await self._deliver(batch)
        finally:
            tracing.finish_delivery(span, stored, failed, error)

    async def _deliver(self, batch: Sequence[Record]) -> tuple[int, int, str]:
        """Deliver and settle `batch`: (events stored, events failed, why the whole batch failed or ""). A batch
        the sink refuses as a whole is split by the batching core's plan (batching/bisection.py, unbounded: every
        event ends stored, retried or parked), each part delivered (and traced) on its own."""
        try:
            return await self._send(batch)
        except BatchRejected as exc:
            refusal = str(exc)
        bisection = Bisection(None)
        if bisection.refused(list(range(len(batch)))) == ALONE:
            self._failed([(batch[0], refusal)])
            return 0, 1, "batch_rejected"
        while (group := bisection.next()) is not None:
            part = [batch[i] for i in group]
            try:
                await self._traced(part)
            except BatchRejected as exc:
                if bisection.refused(group) == ALONE:
                    self._failed([(part[0], str(exc))])
        self.splits += bisection.splits
        return 0, len(batch), "batch_rejected"

    async def _traced(self, part: Sequence[Record]) -> None:
        """A part of a split batch, in a delivery span of its own (tracing on); raises BatchRejected."""
        tracing = self.tracing
        if tracing is None:
            await self._send(part)
            return
        span = tracing.start_delivery(self.route, part)
        stored = failed = 0
        error = "cancelled"
        try:
            stored, failed, error = await self._send(part)
        except BatchRejected:
            stored, failed, error = 0, len(part), "batch_rejected"
            raise
        finally:
            tracing.finish_delivery(span, stored, failed, error)

    async def _send(self, batch: Sequence[Record]) -> tuple[int, int, str]:
        """One delivery of `batch` to the sink, settled; raises BatchRejected when refused as a whole."""
        try:
            outcomes = await self.sink.deliver(batch)
        except SinkUnavailable as exc:
            self._outage(batch, str(exc))
            return 0, len(batch), "sink_unavailable"
        except BatchRejected:
            raise
        except Exception as fault:  # a fault in the sink itself: an outage, logged (`exc` is typed above)
            log.exception("ingest route %s: the sink failed unexpectedly", self.route)
            self._outage(batch, f"{type(fault).__name__}: {fault}")
            return 0, len(batch), "sink_error"
        if len(outcomes) != len(batch):
            self._outage(batch, f"the sink gave {len(outcomes)} outcomes for {len(batch)} events")
            return 0, len(batch), "bad_outcomes"
        self.outages = 0
        self.batches += 1
        everything = outcomes.count(None) == len(batch)  # the usual: no event of the batch to settle otherwise
        stored = batch if everything else [r for r, o in zip(batch, outcomes, strict=True) if o is None]
        if stored:
            self.log.ack(stored)
            self.metrics.delivered(stored)
            if self.waiters is not None:
                self.waiters.delivered(stored)
        if not everything:
            self._settle_rest(batch, outcomes)
        return len(stored), len(batch) - len(stored), ""

    def _settle_rest(self, batch: Sequence[Record], outcomes: Sequence[Outcome]) -> None:
        """The events not stored: held ones back to the log until their part of the sink is back (no attempt
        counted), refused ones parked at once, failed ones retried or parked by the retry decision."""
        held: dict[float, list[Record]] = {}
        failed: list[tuple[Record, str]] = []
        for record, outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                continue
            if isinstance(outcome, Held):
                held.setdefault(outcome.until, []).append(record)
                self.last_error = outcome.reason
            elif isinstance(outcome, Undeliverable):
                self._park(record, outcome.reason)
            else:
                failed.append((record, outcome))
        now = self.clock.now()
        for until, records in held.items():
            self.log.retry(records, max(0.0, until - now), count_attempt=False, at=until)
            self.metrics.retried("outage", len(records))
        if failed:
            self._failed(failed)

    def _outage(self, batch: Sequence[Record], reason: str) -> None:
        self.outages += 1
        delay = self.backoff.delay(self.outages - 1)
        self.outage_until = max(self.outage_until, self.clock.now() + delay)
        if self.last_error != reason:
            log.warning("ingest route %s: sink unavailable, retrying in %.2fs: %s", self.route, delay, reason)
        self.last_error = reason
        self.metrics.retried("outage", len(batch))
        self.log.retry(batch, delay, count_attempt=False)

    def _failed(self, failures: Sequence[tuple[Record, str]]) -> None:
        for record, reason in failures:
            self.last_error = reason
            # the shared retry decision: `max_attempts` deliveries in all, so max_attempts - 1 retries
            delay = self.backoff.retry(record.attempts, self.policy.max_attempts - 1)
            if delay is None:
                self._park(record, reason)
            else:
                self.log.retry([record], delay, count_attempt=True)
                self.metrics.retried("failed")

    def _park(self, record: Record, reason: str) -> None:
        record.attempts += 1
        self.last_error = reason
        self.log.dead([record], reason)
        self.metrics.dead_lettered("delivery")
        log.warning("ingest route %s: event %s parked in dead letters after %d attempts: %s",
                    self.route, record.id, record.attempts, reason)
        if self.waiters is not None:
            self.waiters.failed([record], reason)

    # -- the loop -------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self.run(), name=f"ingest-flusher-{self.route}")

    async def run(self) -> None:
        policy = self.policy
        slots = asyncio.Semaphore(policy.max_in_flight)
        while not self._stopping.is_set():
            try:
                wait = self.outage_until - self.clock.now()
                if wait > 0:
                    await self._pause(wait)
                    continue
                await slots.acquire()
                if self._stopping.is_set():
                    slots.release()
                    break
                try:
                    batch = await self.log.take(policy.max_items, policy.max_bytes)
                except BaseException:  # the slot is free again: a failed read must not wedge the loop
                    slots.release()
                    raise
                if not batch:
                    slots.release()
                    await self.log.wait(IDLE_WAIT)
                    continue
                loop = asyncio.get_running_loop()
                lingered = loop.create_future() if policy.linger > 0 and len(batch) < policy.max_items else None
                task = loop.create_task(self._flush(batch, lingered))
                self._tasks.add(task)
                task.add_done_callback(self._finished(slots))
                if lingered is not None:  # the next batch is taken once this one has its events: batches leave in
                    await lingered        # the log's order (a sharded sink keeps each key's order by it)
            except asyncio.CancelledError:
                raise
            except Exception:  # the log failed to read: keep going after a pause
                log.exception("ingest route %s: the flusher loop failed", self.route)
            else:
                continue
            await self._pause(self.error_pause)  # out of the handler: compiled code must not suspend in one

    async def _flush(self, batch: list[Record], lingered: asyncio.Future[None] | None) -> None:
        """One delivery slot's batch, delivered; with `lingered` (it is short of `max_items`), after its linger,
        which `lingered` then reports to the loop."""
        if lingered is not None:
            try:
                batch = await self._linger(batch, self.policy)
            finally:
                if not lingered.done():
                    lingered.set_result(None)
        await self.deliver(batch)

    async def _linger(self, batch: list[Record], policy: FlushPolicy) -> list[Record]:
        """`batch` and what became ready while it waited `linger` for more, within `max_items` and `max_bytes`.
        The wait ends early when the flusher stops (the batch is then delivered within the drain's time).
        Cancelled, the batch goes back to the log as it was, no attempt counted."""
        try:
            await self._pause(policy.linger)
            size = sum(len(record.body) for record in batch)
            if size < policy.max_bytes:
                batch += await self.log.take(policy.max_items - len(batch), policy.max_bytes - size)
        except asyncio.CancelledError:
            self.log.retry(batch, 0.0, count_attempt=False)
            raise
        except Exception:  # the second read failed: what the batch has goes (the loop's reads report failures)
            log.exception("ingest route %s: reading more events for a lingering batch failed", self.route)
        return batch

    def _finished(self, slots: asyncio.Semaphore) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            slots.release()

        return done

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def stop(self, timeout: float) -> None:
        """Take nothing more; let deliveries in flight finish within `timeout` (the rest stays in the log)."""
        self._stopping.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    def summary(self) -> dict[str, Any]:
        return {
            "in_flight": len(self._tasks),
            "batches": self.batches,
            "splits": self.splits,
            "outage": self.outage_until > self.clock.now(),
            "consecutive_outages": self.outages,
            "last_error": self.last_error,
            "delivered": self.metrics.count("delivered"),
            "retried": self.metrics.count("retried"),
            "held": self.metrics.count("held"),
            "dead_lettered": self.metrics.count("dead_lettered"),
        }


__all__ = ["FlushPolicy", "Flusher"]
