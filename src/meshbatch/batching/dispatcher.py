"""The asyncio shell around the accumulator: timers, in-flight slots, upstream calls and the fan-out of results.

One timer mechanism: `loop.call_soon` for the end-of-tick flush and one `loop.call_at` for the next deadline the
accumulator reports; no per-request timers or `wait_for`. Self-clocking: whenever an in-flight slot is free and
an item is queued, a flush is scheduled for the end of the current event-loop tick, so an idle upstream never
waits for a timer; while every slot is busy, queues grow into bigger batches. A task per batch calls the
upstream; when it ends, results fan out to every waiting caller and the freed slot triggers the next flush.
What a batch sends and how its answer is split per item is batching/upstream_call.py; a batch the upstream
refuses for something in its request is split to isolate the items at fault, on its own slot (batching/isolate.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import TYPE_CHECKING

from meshbatch.batching.accumulator import Accumulator
from meshbatch.batching.batch import ANSWERED, IN_FLIGHT, QUEUED, REMOVED, SEALED, Batch, Item, Key, Outcome, Waiter
from meshbatch.batching.bisection import Bisection
from meshbatch.batching.codecs.base import Codec, ItemResult
from meshbatch.batching.isolate import IsolatePolicy
from meshbatch.batching.model import LatencyModel
from meshbatch.batching.replay import ReplayCache
from meshbatch.batching.retry import RetryRules, send_with_retries
from meshbatch.batching.stats import BatchMetrics, RateMeter
from meshbatch.batching.streaming import Position
from meshbatch.batching.upstream_call import Sender, exchange, upstream_request
from meshbatch.clock import Clock, LoopClock
from meshbatch.errors import DeadlineExceeded, Draining, GatewayTimeout, ProxyError
from meshbatch.upstream.exchange import ATTEMPT, Attempt

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from meshbatch.batching.observers import BatchRecording, BatchTracing

log = logging.getLogger("meshbatch.batching")
INF = float("inf")


class Dispatcher:
    def __init__(self, route: str, accumulator: Accumulator, codec: Codec, send: Sender, *, method: bytes,
                 path: bytes, key_headers: list[tuple[int, bytes]], key_queries: list[tuple[int, bytes]],
                 max_in_flight: int, metrics: BatchMetrics, model: LatencyModel,
                 on_batch: Callable[[Batch, float, float], None] | None = None, clock: Clock | None = None,
                 retry: RetryRules | None = None, isolate: IsolatePolicy | None = None,
                 stream_results: bool = False) -> None:
        self.route = route
        self.acc = accumulator
        self.codec = codec
        self.send = send
        self.method, self.path = method, path
        self.key_headers, self.key_queries = key_headers, key_queries
        self.max_in_flight = max_in_flight
        self.metrics = metrics
        self.model = model
        self.on_batch = on_batch  # (batch, upstream seconds, now): the adaptive controller's hook
        self.retry = retry  # the route's retry policy: failed items are sent again (batching/retry.py)
        self.isolate = isolate  # None: a refused batch is every caller's answer (batching/isolate.py)
        self.stream_results = stream_results  # answer each caller as its line streams in (batching/streaming.py)
        self.stream_position: Position | None = None  # lines matched by the position they name, not in order
        # The loop's clock (clock.py); injected clocks (tests) are trusted for `now` only, the loop's also for timers
        # firing on time.
        self.clock: Clock = clock if clock is not None else LoopClock()
        self._real_time = clock is None
        self.stopwatch: Callable[[], float] = perf_counter if clock is None else self.clock.now  # durations only
        self.in_flight = 0
        self.in_flight_by_key: dict[Key, int] = {}
        self.dedup: dict[tuple[Key, bytes], Item] = {}
        self.replay: ReplayCache | None = None  # answers kept for `dedup_window_ms` (batching/replay.py)
        self.completed = RateMeter()
        self.tasks: dict[asyncio.Task[None], Batch] = {}  # the batches in flight
        self.loop: asyncio.AbstractEventLoop | None = None
        self._kicked = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = INF
        self._idle: asyncio.Event | None = None
        # Observability, set by meshbatch.runtime.observability (None = off; checked once per batch, not per request).
        self.tracing: BatchTracing | None = None
        self.spans: dict[Batch, Span] = {}  # the spans of the batches in flight (tracing on): joiners link to them
        self.recorder: BatchRecording | None = None

    # -- time -----------------------------------------------------------------------------------------------

    def bind(self) -> None:
        """Attach to the running loop (on the first request)."""
        self.loop = asyncio.get_running_loop()
        if self._real_time:
            self.clock = LoopClock(self.loop)

    def _call_at(self, when: float, callback: Callable[..., object], *args: object) -> asyncio.TimerHandle:
        """A loop timer for `when` on our clock (the loop's own, or a test's fake one)."""
        loop = self.loop
        assert loop is not None
        return loop.call_at(loop.time() + max(0.0, when - self.clock.now()), callback, *args)

    def _arm(self, when: float) -> None:
        if when >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._call_at(when, self._on_timer, when)

    def _kick(self) -> None:
        if not self._kicked:
            self._kicked = True
            assert self.loop is not None
            self.loop.call_soon(self._on_kick)

    def _on_kick(self) -> None:
        self._kicked = False
        self.pump()

    def _on_timer(self, when: float) -> None:
        self._timer = None
        self._timer_at = INF
        # A loop timer may fire a fraction of its resolution early: it is due, so act as at `when`.
        self.pump(max(self.clock.now(), when) if self._real_time else None)

    # -- callers --------------------------------------------------------------------------------------------

    def enqueue(self, item: Item, waiter: Waiter, now: float) -> None:
        item.waiters.append(waiter)
        acc = self.acc
        queue = acc.add(item, now)
        if item.dedup_key is not None:
            self.dedup[item.dedup_key] = item
        if self.in_flight < self.max_in_flight:
            if acc.hold <= 0 or acc.ready_at(queue) <= now:
                self._kick()
            else:
                self._arm(min(acc.ready_at(queue), acc.trigger_at(item)))
        else:
            self._arm(acc.expire_at(item))

    def join(self, item: Item, waiter: Waiter) -> None:
        """A caller with the idempotency key of a queued or in-flight item shares it."""
        item.waiters.append(waiter)
        self.metrics.dedup.inc(self.metrics.labels)
        if item.state == QUEUED and waiter.deadline < item.deadline:
            self.acc.tighten(item, waiter.deadline)
            self._arm(self.acc.trigger_at(item) if self.in_flight < self.max_in_flight
                      else self.acc.expire_at(item))
        elif item.state != QUEUED and item.batch is not None and item.batch.state == IN_FLIGHT:
            self._call_at(waiter.deadline, self._expire_in_flight, item.batch)
            span = self.spans.get(item.batch) if waiter.trace is not None else None
            if span is not None and self.tracing is not None:
                self.tracing.link_joiner(span, waiter.trace, item.batch.items.index(item))

    def leave(self, waiter: Waiter) -> None:
        """The caller's task was cancelled (client gone): before sealing its item leaves the queue."""
        item = waiter.item
        try:
            item.waiters.remove(waiter)
        except ValueError:
            return
        if item.state == QUEUED:
            self.metrics.cancelled.inc(self.metrics.cancel_labels["queued"])
            if not item.waiters:
                self.acc.remove(item)
                self._forget(item)
        else:
            self.metrics.cancelled.inc(self.metrics.cancel_labels["in_flight"])

    def _forget(self, item: Item) -> None:
        if item.dedup_key is not None and self.dedup.get(item.dedup_key) is item:
            del self.dedup[item.dedup_key]

    def _answer_expired(self, waiters: list[Waiter]) -> None:
        for waiter in waiters:
            waiter.resolve(DeadlineExceeded("deadline_exceeded", "the caller's deadline cannot be met"))
            self.metrics.reject("deadline_exceeded")
            item = waiter.item
            if item.state == REMOVED:
                self._forget(item)
                item.waiters = []  # unsent and answered: break the waiter <-> item cycle (see _settle)

    # -- flushing -------------------------------------------------------------------------------------------

    def pump(self, now: float | None = None) -> None:
        """Answer expired callers, start every batch a free slot can take, set the timer for the next due time."""
        if now is None:
            now = self.clock.now()
        acc = self.acc
        if acc.queued:
            expired = acc.expire(now)
            if expired:
                self._answer_expired(expired)
            free = self.max_in_flight - self.in_flight
            if free > 0 and acc.queued:
                batches, expired = acc.drain_ready(now, free)
                if expired:
                    self._answer_expired(expired)
                for batch in batches:
                    self._start(batch, now)
        due = acc.next_deadline(self.in_flight < self.max_in_flight)
        if due is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer, self._timer_at = None, INF
        elif due <= now:
            self._kick()
        elif due != self._timer_at:
            self._timer_at = INF
            self._arm(due)
        if self._idle is not None and not acc.queued and not self.in_flight:
            self._idle.set()

    def _start(self, batch: Batch, now: float) -> None:
        self.in_flight += 1
        key = batch.key
        self.in_flight_by_key[key] = self.in_flight_by_key.get(key, 0) + 1
        self.metrics.started(batch, now)
        assert self.loop is not None
        task = self.loop.create_task(self._run(batch))
        self.tasks[task] = batch
        task.add_done_callback(functools.partial(self._task_done, batch))

    def _task_done(self, batch: Batch, task: asyncio.Task[None]) -> None:
        self.tasks.pop(task, None)
        # A task cancelled before its first step never ran `_run`'s cleanup: settle its batch here.
        self._settle(batch, None, GatewayTimeout("drain_timeout", "the proxy stopped before the batch was sent"))

    async def _run(self, batch: Batch) -> None:
        items = batch.items
        results: Sequence[Outcome] | None = None
        error: Outcome = ProxyError("internal_error", "the batch ended without a result")
        watch: asyncio.TimerHandle | None = None
        clock = self.clock
        tracing, recorder = self.tracing, self.recorder
        span: Span | None = None
        status = 0
        started = 0.0
        bisection = Bisection(self.isolate.budget(len(items))) if self.isolate is not None else None
        if bisection is not None and self.retry is None:
            ATTEMPT.set(Attempt())  # keeps the target the batch went to for its parts (this task's context only)
        try:
            if self.codec.forwards_headers:  # the envelope matches answers by id: number the items
                for number, item in enumerate(items, 1):
                    item.id = str(number)
            body = self.codec.encode(items)
            path, headers = upstream_request(self, batch.key)
            if tracing is not None:
                span = self.spans[batch] = tracing.start(self.route, batch, headers)
            now = clock.now()
            deadlines = [w.deadline for item in items for w in item.waiters]
            batch.send(now)
            started = self.stopwatch()
            if deadlines:  # no caller waits past its own deadline, whatever the sender does with `timeout`
                watch = self._call_at(min(deadlines), self._expire_in_flight, batch)
            send = functools.partial(exchange, self, batch, path, headers, bisection)
            if self.retry is None:
                status, results, _ = await send(items, body)
            else:  # the items that failed go again, alone, to another endpoint (batching/retry.py)
                status, results = await send_with_retries(items, body, send, self.codec.encode, self.retry,
                                                          clock.now)
                if all(isinstance(outcome, ProxyError) for outcome in results):
                    error, results = results[0], None
        except ProxyError as exc:
            error = exc
        except asyncio.CancelledError:
            error = GatewayTimeout("drain_timeout", "the proxy stopped before the upstream answered")
            raise
        except Exception:
            log.exception("batch %s on route %s failed", batch.id, self.route)
            error = ProxyError("internal_error", "the batch failed inside the proxy")
        finally:
            if watch is not None:
                watch.cancel()
            failed = error if results is None and isinstance(error, ProxyError) else None
            if bisection is not None and bisection.active:
                self.metrics.isolation(bisection)
                if span is not None:
                    span.set_attribute("meshbatch.batch.splits", bisection.splits)
            if span is not None and tracing is not None:
                self.spans.pop(batch, None)
                tracing.finish(span, batch, status, failed)
            if recorder is not None and batch.sent_at:
                # a time point on the clock of the arrivals and `sent`, its distance from `sent` a duration
                # (the loop clock ticks in whole milliseconds under uvloop)
                done = batch.sent_at + (self.stopwatch() - started)
                recorder.add(batch, done, results is not None and 200 <= status < 300)
            self._settle(batch, results, error)

    def _settle(self, batch: Batch, results: Sequence[Outcome] | None, error: Outcome) -> None:
        """Give every caller of `batch` its outcome, once; free the slot."""
        if batch.state != SEALED and batch.state != IN_FLIGHT:
            return
        now = self.clock.now()
        sent = batch.state == IN_FLIGHT
        if results is not None:
            batch.finish(now)
        else:
            if sent:
                self.metrics.calls.inc(self.metrics.call_labels["error"])
            batch.fail(now)
        callers = 0
        dedup, replay = self.dedup, self.replay
        for index, item in enumerate(batch.items):
            outcome: Outcome = results[index] if results is not None else error
            item.state = ANSWERED
            for waiter in item.waiters:
                future = waiter.future
                if not future.done():
                    future.set_result(outcome)
            callers += len(item.waiters)
            # Nobody reads an answered item's waiters again: dropping them (and the batch's item list below)
            # breaks the waiter <-> item <-> batch reference cycles, so reference counting frees a request's
            # objects when its caller is done instead of leaving them to the cyclic collector, whose full
            # collections would otherwise grow with the traffic and stall the loop for milliseconds.
            item.waiters = []
            if item.dedup_key is not None:
                if dedup.get(item.dedup_key) is item:
                    del dedup[item.dedup_key]
                if replay is not None and isinstance(outcome, ItemResult) and replay.keeps(outcome):
                    replay.put(item.dedup_key, item.body, outcome, batch.reply_headers, now)
        size = len(batch.items)
        batch.items = []
        if sent:
            self.metrics.items.inc(self.metrics.labels, size)
            self.metrics.callers.observe(callers)
            self.completed.add(size, now)
        self.in_flight -= 1
        left = self.in_flight_by_key.get(batch.key, 1) - 1
        if left:
            self.in_flight_by_key[batch.key] = left
        else:
            self.in_flight_by_key.pop(batch.key, None)
        if self.loop is not None and not self.loop.is_closed():
            self._kick()

    def _expire_in_flight(self, batch: Batch) -> None:
        """Callers of an in-flight batch whose own deadline passed get 504; the batch goes on for the others."""
        if batch.state != IN_FLIGHT:
            return
        now = self.clock.now()
        upcoming = INF
        for item in batch.items:
            for waiter in item.waiters:
                if waiter.future.done():
                    continue
                if waiter.deadline <= now:
                    waiter.resolve(GatewayTimeout("upstream_timeout", "the batch outlived the caller's deadline"))
                elif waiter.deadline < upcoming:
                    upcoming = waiter.deadline
        if upcoming < INF:
            self._call_at(upcoming, self._expire_in_flight, batch)

    def isolation_summary(self) -> dict[str, object]:
        """`batch.isolate` and what it did, for /batchers."""
        policy = self.isolate
        summary = {"mode": "off"} if policy is None else policy.summary()
        return {**summary, **self.metrics.isolation_counts()}

    # -- drain ----------------------------------------------------------------------------------------------

    async def drain(self, timeout: float) -> None:
        """Flush everything queued now (reason `drain`), wait for in-flight batches up to `timeout`; then answer
        what is left: queued callers 503 `draining` (never sent), in-flight ones 504 `drain_timeout`."""
        if self.loop is None:
            return
        self.acc.draining = True
        self._idle = asyncio.Event()
        self.pump()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            for item in self.acc.items():
                self.acc.remove(item)
                self._forget(item)
                for waiter in item.waiters:
                    waiter.resolve(Draining("draining", "the route was drained before this request was sent"))
                    self.metrics.reject("draining")
            tasks = list(self.tasks)
            for task in tasks:
                task.cancel()
            await _settled(tasks)
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, INF


async def _settled(tasks: list[asyncio.Task[None]]) -> None:
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["Dispatcher", "Sender"]
