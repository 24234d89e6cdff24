"""The stack of a batching route: every stage a batched request crosses, outermost first, and what its batches
cross on their way upstream.

    checks     the route's policies (403), its rate limits in requests (429)       answered here, nothing awaits
    fault      injected delays and aborts
    concurrency  the adaptive concurrency limit
    pipeline   decompress, decode (one request may become several items), validate, filter, transform
    items      the route's rate limits counted in items (429 for that item)
    item cap   one item within the batch's byte cap (413)
    batcher    admission (400, 429 queue full, 504 budget spent), the keyed queue, the caller's own answer
               (batching/handler.py; the queue and its flushes: batching/dispatcher.py)

A batch, once flushed:

    compress   the pipeline's `compress` step, if any
    sender     the batch's target (a weighted split picks per batch), a copy to the mirror on its first attempt,
               the per-try timeout, through the targets' guards
    upstream   one attempt: pick, admit, account, send, observe (upstream/exchange.py)
and the batcher retries failed items (batching/retry.py) and splits a refused batch (batching/isolate.py).
"""

from __future__ import annotations

from meshbatch.batching.handler import BatchHandler
from meshbatch.config import plain
from meshbatch.layers.authz import ItemCapCheck
from meshbatch.layers.call import BatchSender
from meshbatch.layers.check import CheckLayer
from meshbatch.layers.ratelimit import RateLimitLayer
from meshbatch.runtime.pipelines import with_pipeline, wrap_send
from meshbatch.runtime.stacks.parts import Parts
from meshbatch.service import RouteStack, Service


def batch_sender(listener: plain.Listener, route: plain.BatchRoute | plain.IngestRoute, parts: Parts) -> BatchSender:
    """Where a batch route's batches, or an ingest route's deliveries to its cluster, are sent."""
    per_try = parts.per_try_timeout(route)
    return BatchSender(route.name, parts.split(route), per_try, listener.via, parts.loop, parts.mirror(route),
                       parts.metrics)


def batch_stack(listener: plain.Listener, route: plain.BatchRoute, parts: Parts,
                batcher: BatchHandler | None = None) -> tuple[RouteStack, BatchHandler]:
    """The route's stack, and its batcher (`batcher`: the previous snapshot's, kept when nothing it depends on
    changed, with its queue and its batches in flight)."""
    checks = [*parts.policies(listener, route), *parts.request_limits(route)]
    if batcher is None:
        batcher = BatchHandler(route.name, route.batch, wrap_send(route, batch_sender(listener, route, parts)),
                               timeout=route.timeout_ms / 1000, metrics=parts.registry,
                               retry=parts.retry_policy(route), via=listener.via)
    batcher.via = listener.via  # a kept batcher follows the listener's current setting
    service: Service = CheckLayer(batcher, ItemCapCheck(route.batch.max_bytes))
    limits = parts.rate_limits(route, "items")
    if limits is not None:
        service = RateLimitLayer(service, limits)
    service = with_pipeline(route, service, parts.registry)
    service = parts.front(route, service)
    return RouteStack(route.name, "batch", tuple(checks), service), batcher


__all__ = ["batch_sender", "batch_stack"]
