"""`BatchHandler`: a route's batcher as a `Handler`. Admission, waiting, the caller's own response.

A request is checked and admitted here (or answered at once: 400 bad control header or body, 429 queue full with
Retry-After from the drain rate, 504 budget already spent), queued in the accumulator through the dispatcher,
and answered from its item's outcome with the batch headers. An `idempotency-key` is the caller's: dedup and the
replay window key it by the caller's scope (`batch.idempotency_scope`, meshbatch.security.scope), so a caller
of another scope never shares an item, never gets a kept answer, never hears `idempotency_key_reused`. Every
admitted request gets exactly one response; a cancelled caller (client gone) leaves its queue if its batch is
not sealed yet.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Iterable

import orjson

from meshbatch.batching.accumulator import Accumulator
from meshbatch.batching.adaptive import AdaptiveController
from meshbatch.batching.admission import Controls
from meshbatch.batching.batch import BATCHED, PRIORITY_NAMES, QUEUED, Batch, Item, Key, Outcome, Waiter, dedup_key
from meshbatch.batching.buckets import Buckets
from meshbatch.batching.canary_shell import CanaryDispatcher, attach_canary
from meshbatch.batching.codecs import CODECS, ItemResult
from meshbatch.batching.codecs.base import Replies, refusal_reason
from meshbatch.batching.codecs.envelope import end_to_end
from meshbatch.batching.cost import CostReader
from meshbatch.batching.dispatcher import Dispatcher, Sender
from meshbatch.batching.fairness import FairShare
from meshbatch.batching.isolate import IsolatePolicy
from meshbatch.batching.model import LatencyModel
from meshbatch.batching.preferred import PreferredSizes
from meshbatch.batching.replay import Replay, ReplayCache
from meshbatch.batching.retry import RetryRules
from meshbatch.batching.slots import AutoSlots
from meshbatch.batching.stats import BatchMetrics, register_gauges, unregister_gauges
from meshbatch.batching.streaming import index_reader
from meshbatch.clock import Clock
from meshbatch.config.plain import Batch as BatchConfig
from meshbatch.errors import BadRequest, DeadlineExceeded, Draining, Overloaded, PayloadTooLarge, ProxyError
from meshbatch.http.message import Headers, Request, Response
from meshbatch.security.scope import IdempotencyScope
from meshbatch.service import Call
from meshbatch.telemetry.metrics import Registry
from meshbatch.upstream.headers import VIA

log = logging.getLogger("meshbatch.batching")
_NO_HEADERS: Headers = []  # shared, never mutated: items of codecs that do not forward headers
ADAPT_EVERY = 0.1  # seconds between adaptive decisions
_REPLAYED = (b"idempotent-replayed", b"true")


def _ms(seconds: float) -> bytes:
    return b"%.3f" % (seconds * 1000 if seconds > 0 else 0.0)


class BatchHandler:
    def __init__(self, route: str, config: BatchConfig, send: Sender, *, timeout: float, metrics: Registry,
                 clock: Clock | None = None, retry: RetryRules | None = None, via: bool = False) -> None:
        self.route = route
        self.via = via  # the listener's `via`: answers relayed from the upstream carry `via: 1.1 meshbatch`
        self.config = config
        self.timeout = timeout
        self.codec = CODECS.get(config.codec)(config)
        self.replies: Replies = self.codec.replies
        self.controls = Controls(config.key, grpc_timeout=config.grpc is not None)
        bucket_by = config.bucket_by
        self.buckets = Buckets(bucket_by, len(config.key)) if bucket_by is not None else None
        self.metrics = BatchMetrics(metrics, route, cost=config.max_cost is not None,
                                    buckets=self.buckets.names if self.buckets is not None else None)
        self.cost = CostReader(config.cost) if config.cost is not None else None
        # the bucket's own cost reader, when it reads another cost than max_cost's (None: the same value)
        self.bucket_cost = CostReader(bucket_by.cost) if bucket_by is not None and bucket_by.cost is not None \
            and bucket_by.cost != config.cost else None
        self.dedup = config.dedup
        self.scope = IdempotencyScope(config.idempotency_scope)
        self.max_queue = config.max_queue
        self._forwards = self.codec.forwards_headers
        adaptive = config.adaptive
        self.model = LatencyModel(window=adaptive.window if adaptive is not None else 256)
        self.controller = None if adaptive is None or adaptive.target_p99_ms is None else AdaptiveController(
            self.model, target=adaptive.target_p99_ms / 1000, window=adaptive.window,
            min_wait=config.min_wait_ms / 1000, max_wait=config.max_wait_ms / 1000,
            max_items=config.max_items, max_in_flight=config.in_flight_cap)
        self._next_adapt = 0.0
        prefix, counter = secrets.token_hex(3), itertools.count(1)
        self.accumulator = Accumulator(
            max_items=config.max_items, max_bytes=config.max_bytes, hold=config.min_wait_ms / 1000,
            expected=self.model.expected, tail=self.model.tail, trusted=lambda: self.model.ready,
            new_id=lambda: f"{prefix}-{next(counter)}",
            max_cost=config.max_cost if config.max_cost is not None else float("inf"),
            hold_bounds=self.buckets.holds if self.buckets is not None else None,
            fair=None if config.fairness is None else FairShare(
                config.fairness.weights, config.fairness.default_weight, config.max_items, len(config.key)),
            preferred=None if not config.preferred_sizes else PreferredSizes(
                config.preferred_sizes, config.max_wait_ms / 1000,
                None if config.pad_to_preferred is None else orjson.dumps(config.pad_to_preferred.item)))
        canary = adaptive is not None and adaptive.canary is not None
        self.dispatcher = (CanaryDispatcher if canary else Dispatcher)(
            route, self.accumulator, self.codec, send, method=config.upstream_method.encode(),
            path=config.upstream_path.encode(), key_headers=self.controls.key_headers,
            key_queries=self.controls.key_queries, max_in_flight=config.in_flight_cap, metrics=self.metrics,
            model=self.model, clock=clock,
            retry=retry, isolate=IsolatePolicy.from_config(config.isolate), stream_results=config.stream_results)
        auto = config.max_in_flight
        self.slots = None if isinstance(auto, int) else AutoSlots(auto.auto, self.model, self.dispatcher.clock.now())
        if self.slots is not None:
            self.dispatcher.max_in_flight = self.slots.limit
        if isinstance(self.dispatcher, CanaryDispatcher):
            attach_canary(self.dispatcher, config, metrics)
        if self.controller is not None or self.slots is not None:
            self.dispatcher.on_batch = self._on_batch
        if config.stream_index_field is not None:
            self.dispatcher.stream_position = index_reader(config.stream_index_field)
        if config.dedup and config.dedup_window_ms > 0:
            self.dispatcher.replay = ReplayCache(config.dedup_window_ms / 1000, config.dedup_max_keys)
        self._bound = False
        self._draining = False
        self._closed = False
        self._registry = metrics
        register_gauges(metrics, self, _gauge_values)

    # -- the handler ----------------------------------------------------------------------------------------

    async def __call__(self, call: Call) -> Response:
        if not self._bound:
            self.dispatcher.bind()
            self._bound = True
        if self._closed:
            self.metrics.reject("draining")
            return self.replies.refuse(Draining("draining", "this route's batcher has been drained"))
        try:
            admitted = self._admit(call.request, call.principal)
        except ProxyError as exc:
            self.metrics.reject(exc.reason)
            return self.replies.refuse(exc)
        except Exception:
            log.exception("batch admission failed on route %s", self.route)
            return self.replies.refuse(ProxyError("internal_error", "the request could not be queued"))
        if isinstance(admitted, Response):
            return admitted
        try:
            outcome = await admitted.future
        except asyncio.CancelledError:
            self.dispatcher.leave(admitted)
            raise
        try:
            return self._respond(admitted, outcome)
        except Exception:
            log.exception("building a batched response failed on route %s", self.route)
            return self.replies.refuse(ProxyError("internal_error", "the batched answer could not be built"))

    def _admit(self, request: Request, principal: str | None) -> Waiter | Response:
        dispatcher = self.dispatcher
        assert dispatcher.loop is not None
        now = dispatcher.clock.now()
        key, priority, budget, idempotency = self.controls.read(request)
        cost = self._cost(request) if self.cost is not None else 0.0
        base = request.received_at or now
        deadline = base + self.timeout
        if budget is not None and base + budget < deadline:
            deadline = base + budget
        if deadline <= now:
            self.metrics.reject("deadline_exceeded")
            return self.replies.refuse(DeadlineExceeded("deadline_exceeded", "the caller's budget is already spent"))
        shared_key = None
        if idempotency is not None and self.dedup:
            shared_key = dedup_key(self.scope.digest(request, principal), key, idempotency)
            replay = dispatcher.replay
            if replay is not None:
                kept = replay.get(shared_key, now)
                if kept is not None:
                    return self._replayed(kept, request)
            shared = dispatcher.dedup.get(shared_key)
            if shared is not None and (shared.state == QUEUED or shared.state == BATCHED):
                if shared.body != request.body:
                    raise BadRequest("idempotency_key_reused",
                                     "this idempotency-key is in use by a request with a different body")
                trace = request.header(b"traceparent") if dispatcher.tracing is not None else None
                waiter = Waiter(dispatcher.loop.create_future(), now, deadline, shared, trace)
                dispatcher.join(shared, waiter)
                return waiter
        accumulator = self.accumulator
        if accumulator.queued >= self.max_queue:
            self.metrics.reject("queue_full")
            return self.replies.refuse(Overloaded("queue_full", f"{accumulator.queued} items are queued",
                                                  retry_after=self._retry_after(now)))
        headers = end_to_end(request.headers) if self._forwards else \
            _NO_HEADERS if dispatcher.tracing is None else dispatcher.tracing.item_headers(request)
        queue_key = key if self.buckets is None else self._bucket(request, key, cost)
        item = Item(request.body, request.method, request.target, headers, key=queue_key, priority=priority,
                    arrived=now, deadline=deadline, dedup_key=shared_key, cost=cost)
        problem = self.codec.check_item(item)
        if problem is not None:
            raise BadRequest(refusal_reason(problem), problem)
        waiter = Waiter(dispatcher.loop.create_future(), now, deadline, item)
        dispatcher.enqueue(item, waiter, now)
        return waiter

    def _cost(self, request: Request) -> float:
        """The item's cost (batch.cost); 413 `over_budget` when it exceeds max_cost and over_budget is refuse."""
        assert self.cost is not None
        cost = self.cost.read(request)
        budget = self.config.max_cost
        if budget is not None and cost > budget and self.config.over_budget == "refuse":
            raise PayloadTooLarge("over_budget", f"this item costs {cost:g} ({self.cost.spec}), more than a whole "
                                  f"batch may cost (max_cost {budget:g})")
        return cost

    def _bucket(self, request: Request, key: Key, cost: float) -> Key:
        """The queue key of the shape bucket the item's cost falls in (batch.bucket_by)."""
        buckets = self.buckets
        assert buckets is not None
        index = buckets.index(self.bucket_cost.read(request) if self.bucket_cost is not None else cost)
        self.metrics.bucket_items.inc(self.metrics.bucket_labels[index])
        return (*key, buckets.labels[index])

    def _replayed(self, kept: Replay, request: Request) -> Response:
        """The answer kept for this idempotency key (dedup_window_ms), without an upstream call."""
        if kept.body != request.body:
            raise BadRequest("idempotency_key_reused",
                             "this idempotency-key answered a request with a different body")
        self.metrics.replayed.inc(self.metrics.labels)
        response = self.replies.answer(kept.result, [*kept.batch_headers, _REPLAYED])
        if self.via:
            response.headers.append((b"via", VIA))
        return response

    def _retry_after(self, now: float) -> float:
        """Seconds until the queue ahead is likely drained, from the recent completion rate (1 to 60)."""
        rate = self.dispatcher.completed.value(now)
        if rate <= 0:
            return min(60.0, max(1.0, self.timeout))
        return min(60.0, max(1.0, self.accumulator.queued / rate))

    def _respond(self, waiter: Waiter, outcome: Outcome) -> Response:
        batch: Batch | None = waiter.item.batch
        if isinstance(outcome, ItemResult):
            assert batch is not None
            response = self.replies.answer(outcome, [*batch.reply_headers,
                                                     (b"x-meshbatch-queue-ms", _ms(batch.sent_at - waiter.arrived))])
            if self.via:
                response.headers.append((b"via", VIA))
            response.upstream = batch.upstream
            return response
        extra: Headers | None = None
        if batch is not None and batch.sent_at:
            extra = [*batch.reply_headers, (b"x-meshbatch-queue-ms", _ms(batch.sent_at - waiter.arrived))]
        response = self.replies.refuse(outcome, extra)
        if batch is not None:
            response.upstream = batch.upstream
        return response

    # -- adaptive control -----------------------------------------------------------------------------------

    def _on_batch(self, batch: Batch, elapsed: float, now: float) -> None:
        """A batch got a 2xx answer after `elapsed` seconds: the adaptive hold and the auto slots learn from it."""
        if self.controller is not None:
            self._adapt(self.controller, batch, elapsed, now)
        if self.slots is not None:
            self.dispatcher.max_in_flight = self.slots.observe(len(batch.items), elapsed, now)

    def _adapt(self, controller: AdaptiveController, batch: Batch, elapsed: float, now: float) -> None:
        oldest = min(item.arrived for item in batch.items)
        controller.observe_added(batch.sent_at - oldest + max(0.0, elapsed - self.model.expected(1)))
        if now >= self._next_adapt:
            self._next_adapt = now + ADAPT_EVERY
            controller.update(now, self.accumulator.added)
            self.accumulator.hold = controller.hold
            self.accumulator.cap = controller.cap

    # -- lifecycle and state --------------------------------------------------------------------------------

    async def drain(self, timeout: float) -> None:
        """Flush everything queued (reason `drain`), wait for in-flight batches up to `timeout`, then refuse new
        requests with 503 `draining`. Requests arriving during the drain are still batched and flushed."""
        self._draining = True
        try:
            await self.dispatcher.drain(timeout)
        finally:
            self._closed = True
            self._draining = False
            unregister_gauges(self._registry, self)

    def summary(self) -> dict[str, object]:
        dispatcher, acc, config = self.dispatcher, self.accumulator, self.config
        replay = dispatcher.replay
        now = dispatcher.clock.now()
        keys: list[dict[str, object]] = []
        for key in sorted(set(acc.queues) | set(dispatcher.in_flight_by_key)):
            queue = acc.queues.get(key)
            front = queue.front() if queue is not None else None
            counts = queue.lane_counts() if queue is not None else [0, 0, 0]
            parts, bucket = self.buckets.split(key) if self.buckets is not None else (key, None)
            keys.append({
                "key": [part.decode("latin-1") for part in parts],
                "bucket": bucket,
                "queued": queue.count if queue is not None else 0,
                "bytes": queue.bytes if queue is not None else 0,
                "cost": round(queue.cost, 3) if queue is not None else 0.0,
                "oldest_ms": round((now - front.arrived) * 1000, 3) if front is not None else 0.0,
                "in_flight": dispatcher.in_flight_by_key.get(key, 0),
                "by_priority": dict(zip(PRIORITY_NAMES, counts, strict=True)),
            })
        return {
            "route": self.route,
            "codec": self.codec.name,
            "state": "closed" if self._closed else "draining" if self._draining else "serving",
            "queued": acc.queued,
            "max_queue": self.max_queue,
            "in_flight": dispatcher.in_flight,
            "max_in_flight": dispatcher.max_in_flight,
            "in_flight_auto": self.slots.summary() if self.slots is not None else None,
            "items_per_s": round(dispatcher.completed.value(now), 1),
            "items_total": dispatcher.completed.total,
            "dedup_shared": int(self.metrics.dedup.get(self.metrics.labels)),
            "replay": None if replay is None else {
                "keys": len(replay), "max_keys": replay.max_keys, "window_ms": config.dedup_window_ms,
                "replayed": int(self.metrics.replayed.get(self.metrics.labels)), "evicted": replay.evicted},
            "policy": {
                "max_items": config.max_items, "size_cap": acc.cap, "max_bytes": config.max_bytes,
                "max_wait_ms": config.max_wait_ms, "min_wait_ms": config.min_wait_ms,
                "hold_ms": round(acc.hold * 1000, 3), "dedup": self.dedup, "key": list(config.key),
                "idempotency_scope": self.scope.spec, "max_cost": config.max_cost, "cost": config.cost,
                "over_budget": config.over_budget,
            },
            "buckets": None if self.buckets is None else self.buckets.summary(self.metrics.bucket_counts()),
            "fairness": None if acc.fair is None else acc.fair.summary(),
            "preferred": None if acc.preferred is None else {
                **acc.preferred.summary(), "padding_items": int(self.metrics.padding.get(self.metrics.labels))},
            "isolation": dispatcher.isolation_summary(),
            "streaming": {"stream_results": dispatcher.stream_results, "index_field": config.stream_index_field,
                          "streamed_items": int(self.metrics.streamed.get(self.metrics.labels)),
                          "broken_streams": int(self.metrics.stream_broken.get(self.metrics.labels))},
            "flushes": self.metrics.flush_counts(),
            "rejections": self.metrics.rejection_counts(),
            "keys": keys,
            "model": self.model.summary() if self.model.samples else None,
            "adaptive": self.controller.summary() if self.controller is not None else None,
            "canary": dispatcher.canary_summary() if isinstance(dispatcher, CanaryDispatcher) else None,
        }

    def __repr__(self) -> str:
        return (f"<BatchHandler {self.route} codec={self.codec.name} queued={self.accumulator.queued} "
                f"in_flight={self.dispatcher.in_flight}/{self.dispatcher.max_in_flight}>")


def _gauge_values(handler: object) -> Iterable[tuple[str, str, float]]:
    assert isinstance(handler, BatchHandler)
    yield "meshbatch_batch_queue_depth", "Items queued in the batcher", handler.accumulator.queued
    yield "meshbatch_batch_in_flight", "Batches in flight to the upstream", handler.dispatcher.in_flight
    yield ("meshbatch_batch_in_flight_limit", "Batches allowed in flight: max_in_flight, or its current value "
           "under max_in_flight: auto", handler.dispatcher.max_in_flight)


__all__ = ["BatchHandler", "Sender"]
