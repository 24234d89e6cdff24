"""One batch's exchange with the upstream: the request of a batch key, one call with its answer split into a
result per item, and the parts of a batch split to isolate the items at fault (batching/isolate.py).

The dispatcher (batching/dispatcher.py) decides when a batch goes and hands each caller its outcome; what a
batch sends and how its answer is read is here. The functions read what they need of the route's batcher through
`BatchRoute` (the dispatcher is one).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast
from urllib.parse import quote_from_bytes

from meshbatch.batching.batch import Batch, Item, Key, Outcome
from meshbatch.batching.bisection import Bisection
from meshbatch.batching.codecs.base import Codec, ItemResult
from meshbatch.batching.codecs.failures import failure, naming_target
from meshbatch.batching.isolate import IsolatePolicy, answer_final, bisect, part_attempt, still_waiting
from meshbatch.batching.model import LatencyModel
from meshbatch.batching.retry import Answer, RetryRules
from meshbatch.batching.stats import BatchMetrics
from meshbatch.batching.streaming import LineCodec, Position, StreamReader, StreamSplit, streams_lines
from meshbatch.clock import Clock
from meshbatch.errors import ProxyError
from meshbatch.http.message import Headers, Response
from meshbatch.upstream.exchange import ATTEMPT, STREAM_LIMIT

# With `batch.stream_results`, an answer of more than this many bytes comes as a stream (http/client.py): any
# answer with a body, so that the first line is read as soon as it arrives.
STREAM_FROM = 1

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
    stream_results: bool  # read a 2xx answer line by line as it streams in (batching/streaming.py)
    stream_position: Position | None  # lines matched by the item position they name (else in order)
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
    if site.stream_results:
        response, results, streamed = await call_streaming(site, batch, path, headers, items, body)
        if streamed is not None:
            return Answer(response.status, streamed)
    else:
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
    started = site.stopwatch()
    response = await _send(site, batch, path, headers, items, body)
    return response, _results(site, batch, path, response, items, site.stopwatch() - started)


async def _send(site: BatchRoute, batch: Batch, path: bytes, headers: Headers, items: list[Item],
                body: bytes) -> Response:
    now = site.clock.now()
    deadlines = [w.deadline for item in items for w in item.waiters if not w.future.done()]
    last = max(deadlines) if deadlines else now
    timeout = max(last - now, 0.001)
    timed = site.codec.call_headers(timeout)
    response = site.codec.replies.upstream(
        await site.send(site.method, path, [*headers, *timed] if timed else headers, body, timeout, batch.key))
    batch.upstream = response.upstream
    return response


def _results(site: BatchRoute, batch: Batch, path: bytes, response: Response, items: list[Item],
             elapsed: float) -> list[ItemResult]:
    site.metrics.upstream.observe(elapsed)
    results = decode(site, response, items)
    if response.status == 404:  # the path called is the first thing to check: say which it was
        results = naming_target(results, response.status, site.method, path)
    if 200 <= response.status < 300:
        _observed(site, batch, len(items), elapsed)
    return results


def _observed(site: BatchRoute, batch: Batch, size: int, elapsed: float) -> None:
    site.model.observe(size, elapsed)
    if site.on_batch is not None:
        site.on_batch(batch, elapsed, site.clock.now())


async def call_streaming(site: BatchRoute, batch: Batch, path: bytes, headers: Headers, items: list[Item],
                         body: bytes) -> tuple[Response, list[ItemResult], list[Outcome] | None]:
    """One upstream call for `items` whose 2xx answer is read as it streams in (`batch.stream_results`,
    batching/streaming.py): each item's callers are answered when its line arrives. The response and, for an
    answer read whole (not streamed, or not 2xx), a result each; for a streamed one, an outcome each."""
    started = site.stopwatch()
    token = STREAM_LIMIT.set(STREAM_FROM)
    try:
        response = await _send(site, batch, path, headers, items, body)
    finally:
        STREAM_LIMIT.reset(token)
    stream = response.stream
    if stream is None:
        return response, _results(site, batch, path, response, items, site.stopwatch() - started), None
    loop = asyncio.get_running_loop()
    streaming = 200 <= response.status < 300 and streams_lines(site.codec)
    metrics = site.metrics
    split: StreamSplit | None = None
    if streaming:
        def answer(index: int, result: ItemResult) -> None:
            for waiter in items[index].waiters:
                waiter.resolve(result)
            metrics.streamed.inc(metrics.labels)

        split = StreamSplit(cast("LineCodec", site.codec), len(items), answer, site.stream_position)
    reader = StreamReader(split, loop.create_future())
    stream.attach(reader)
    try:
        broken = await reader.done
    except BaseException:
        stream.abandon()  # cancelled (drain): the connection is mid-answer and cannot be reused
        raise
    elapsed = site.stopwatch() - started
    if split is None:
        response.body = b"".join(reader.body) if broken is None else b""
        response.stream = None
        if broken is not None:
            raise broken
        return response, _results(site, batch, path, response, items, elapsed), None
    metrics.upstream.observe(elapsed)
    if broken is not None:
        metrics.calls.inc(metrics.call_labels["error"])
        metrics.stream_broken.inc(metrics.labels)
        return response, [], split.abort(broken)
    outcomes = split.end()
    whole = split.lines == len(items) and not split.extra  # a line per item, no more: as `decode` counts it
    metrics.calls.inc(metrics.call_labels["ok" if whole else "bad_answer"])
    _observed(site, batch, len(items), elapsed)
    return response, [], outcomes


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


__all__ = ["BatchRoute", "Sender", "call", "call_streaming", "decode", "exchange", "part", "upstream_request"]
