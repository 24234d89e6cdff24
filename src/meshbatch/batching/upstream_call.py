"""One batch's exchange with the upstream: the request of a batch key, one call with its answer split into a
result per item, and the parts of a batch split to isolate the items at fault (batching/isolate.py).

The dispatcher (batching/dispatcher.py) decides when a batch goes and hands each caller its outcome; what a
batch sends and how its answer is read is here. The functions read what they need of the route's batcher through
`BatchRoute` (the dispatcher is one).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote_from_bytes

from meshbatch.batching.batch import Batch, Item, Key
from meshbatch.batching.bisection import Bisection
from meshbatch.batching.codecs.base import Codec, ItemResult
from meshbatch.batching.codecs.failures import failure, naming_target
from meshbatch.batching.isolate import IsolatePolicy, answer_final, bisect, part_attempt, still_waiting
from meshbatch.batching.model import LatencyModel
from meshbatch.batching.retry import Answer, RetryRules
from meshbatch.batching.stats import BatchMetrics
from meshbatch.clock import Clock
from meshbatch.errors import ProxyError
from meshbatch.http.message import Headers, Response
from meshbatch.upstream.exchange import ATTEMPT

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from meshbatch.batching.observers import BatchTracing

log = logging.getLogger("meshbatch.batching")


class Sender(Protocol):
    async def __call__(self, method: bytes, path: bytes, headers: Headers, body: bytes,
                       timeout: float, key: tuple[bytes, ...]) -> Response: ...


class BatchRoute(Protocol):
    """What a batch's exchange reads of its route's batcher."""

    route: str
    codec: Codec
    send: Sender
    method: bytes
    path: bytes
    key_headers: list[tuple[int, bytes]]
    key_queries: list[tuple[int, bytes]]
    metrics: BatchMetrics
    model: LatencyModel
    on_batch: Callable[[Batch, float, float], None] | None
    retry: RetryRules | None
    isolate: IsolatePolicy | None
    clock: Clock
    stopwatch: Callable[[], float]  # durations: perf_counter, or a test's fake clock (clock.py)
    tracing: BatchTracing | None
    spans: dict[Batch, Span]


def upstream_request(site: BatchRoute, key: Key) -> tuple[bytes, Headers]:
    """The path and headers of a batch of `key`: the key's headers and query parameters, as configured."""
    headers: Headers = [(b"content-type", site.codec.content_type), *site.codec.request_headers]
    for index, name in site.key_headers:
        if key[index]:
            headers.append((name, key[index]))
    path = site.path
    if site.key_queries:
        params = b"&".join(name + b"=" + quote_from_bytes(key[index]).encode()
                           for index, name in site.key_queries if key[index])
        if params:
            path += (b"&" if b"?" in path else b"?") + params
    return path, headers


async def exchange(site: BatchRoute, batch: Batch, path: bytes, headers: Headers, bisection: Bisection | None,
                   items: list[Item], body: bytes) -> Answer:
    """`items` (the batch, or the part of it sent again) to the upstream: a result each; a refusal that
    blames the request is split to find the items at fault (batching/isolate.py)."""
    response, results = await call(site, batch, path, headers, items, body)
    isolate = site.isolate
    if bisection is None or isolate is None or response.status not in isolate.statuses:
        return Answer(response.status, results)
    return await bisect(items, response, results, bisection, isolate,
                        functools.partial(part, site, batch, path, headers), site.codec.encode,
                        lambda item: still_waiting(item, site.clock.now()),
                        functools.partial(answer_final, site.retry))


async def call(site: BatchRoute, batch: Batch, path: bytes, headers: Headers, items: list[Item],
               body: bytes) -> tuple[Response, list[ItemResult]]:
    """One upstream call for `items`: the response, and a result each."""
    clock = site.clock
    now = clock.now()
    deadlines = [w.deadline for item in items for w in item.waiters if not w.future.done()]
    last = max(deadlines) if deadlines else now
    stopwatch = site.stopwatch
    started = stopwatch()
    timeout = max(last - now, 0.001)
    timed = site.codec.call_headers(timeout)
    response = site.codec.replies.upstream(
        await site.send(site.method, path, [*headers, *timed] if timed else headers, body, timeout, batch.key))
    elapsed = stopwatch() - started
    batch.upstream = response.upstream
    site.metrics.upstream.observe(elapsed)
    results = decode(site, response, items)
    if response.status == 404:  # the path called is the first thing to check: say which it was
        results = naming_target(results, response.status, site.method, path)
    if 200 <= response.status < 300:
        site.model.observe(len(items), elapsed)
        if site.on_batch is not None:
            site.on_batch(batch, elapsed, clock.now())
    return response, results


async def part(site: BatchRoute, batch: Batch, path: bytes, headers: Headers, items: list[Item],
               body: bytes) -> tuple[Response, list[ItemResult]]:
    """A part of a split batch: a call of its own (its own span when tracing), to the batch's target."""
    parent_attempt = ATTEMPT.get()
    attempt = part_attempt(parent_attempt)
    token = ATTEMPT.set(attempt)
    tracing = site.tracing
    parent = site.spans.get(batch) if tracing is not None else None
    span: Span | None = None
    if parent is not None and tracing is not None:
        span, headers = tracing.start_part(site.route, parent, len(items), headers)
    status, error = 0, None
    try:
        response, results = await call(site, batch, path, headers, items, body)
        status = response.status
        return response, results
    except ProxyError as exc:
        error = exc
        raise
    finally:
        ATTEMPT.reset(token)
        if parent_attempt is not None and (error is not None or status >= 500):
            parent_attempt.tried.extend(attempt.tried)  # a retry of these items avoids where the part failed
        if span is not None and tracing is not None:
            tracing.finish(span, batch, status, error)


def decode(site: BatchRoute, response: Response, items: list[Item]) -> list[ItemResult]:
    """The upstream's answer split by the codec, a result per item (each a 502 when it cannot be split)."""
    try:
        fields = response.headers if not response.trailers else [*response.headers, *response.trailers]
        results = site.codec.decode(response.status, fields, response.body, items)
        if len(results) != len(items):
            raise ValueError(f"codec {site.codec.name} returned {len(results)} results for {len(items)} items")
    except Exception:
        log.exception("codec %s could not split a batch answer on route %s", site.codec.name, site.route)
        site.metrics.calls.inc(site.metrics.call_labels["bad_answer"])
        return [failure("codec_error", "the batch answer could not be split")] * len(items)
    outcome = "ok" if 200 <= response.status < 300 else "error"
    site.metrics.calls.inc(site.metrics.call_labels[outcome])
    return results


__all__ = ["BatchRoute", "Sender", "call", "decode", "exchange", "part", "upstream_request"]
