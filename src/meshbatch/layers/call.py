"""The innermost service of a route: one attempt with the upstream (upstream/exchange.py), for a plain request or
for a batch.

`UpstreamService` is the bottom of a plain route's stack: the request's headers as sent upstream (built once
for all its attempts), its target (a split chose it, else the route's cluster), its deadline (the route's, or
sooner per the caller's `x-meshbatch-deadline-ms`, and at most `per_try_timeout_ms` after the attempt starts).
Its `fast` method is the same attempt over an idle connection, driven by callbacks (no task): the route's fast
path when no layer above it has to await.

`BatchSender` is the same for the batches of a batching route (the batcher's `Sender`) and for an ingest route's
deliveries to a cluster: it picks the batch's target (a weighted split picks per batch; a batch's retries stay
on it), and sends a copy to the shadow cluster on a batch's first attempt.
"""

from __future__ import annotations

import asyncio

from meshbatch.errors import DeadlineExceeded, ProxyError
from meshbatch.http.message import Headers, Response
from meshbatch.http.serialize import local_reply
from meshbatch.layers.metrics import LayerMetrics
from meshbatch.layers.mirror import Mirror
from meshbatch.layers.split import Split
from meshbatch.layers.timeout import route_deadline, try_deadline, upstream_timeout
from meshbatch.service import Call, Pending, Respond
from meshbatch.upstream import exchange
from meshbatch.upstream.exchange import ATTEMPT, STREAM_LIMIT
from meshbatch.upstream.headers import VIA, batch_headers, request_headers, response_headers
from meshbatch.upstream.target import Target


class _Answered:
    """What a fast path returns when it answered at once: nothing is under way."""

    __slots__ = ()

    def cancel(self) -> None:
        return None


ANSWERED = _Answered()


class UpstreamService:
    __slots__ = ("_via", "default", "loop", "per_try", "stream_limit", "timeout", "via")

    def __init__(self, default: Target, timeout: float, per_try: float | None, via: bool,
                 loop: asyncio.AbstractEventLoop, stream_limit: int = 0) -> None:
        self.default = default
        self.timeout = timeout
        self.per_try = per_try
        self.via = via
        self._via = VIA if via else b""
        self.loop = loop
        self.stream_limit = stream_limit  # answers larger than this stream to the caller (0: read whole)

    def _headers(self, call: Call, target: Target) -> Headers:
        headers = call.upstream_headers
        if headers is None:
            headers = call.upstream_headers = request_headers(call.request, self.via, target.cluster.name)
        return headers

    async def __call__(self, call: Call) -> Response:
        request = call.request
        target = call.target or self.default
        now = self.loop.time()
        deadline = try_deadline(route_deadline(call, self.timeout, now), self.per_try, now)
        attempt = call.attempt
        endpoint, call.endpoint = call.endpoint, None  # picked by the fast path, which found no idle connection
        guard = target.guard
        if guard is not None and endpoint is None and (attempt is None or attempt.number == 0):
            guard.deposit(now, 1)  # (the fast path deposited already for an endpoint it picked)
        hash_header = target.cluster.hash_header
        headers = self._headers(call, target)
        if call.grpc_timeout:
            headers = upstream_timeout(headers, deadline, now)
        response = await exchange.send(
            target, request.method, request.target, headers, request.body, deadline,
            request.header(hash_header) if hash_header is not None else None, self.loop, attempt, endpoint,
            self.stream_limit, request.upload, request.trailers)
        response.headers = response_headers(response, self.via)
        return response

    def fast(self, call: Call, respond: Respond) -> Pending | None:
        """The attempt under way over an idle connection, or None: the general path (`__call__`) answers."""
        request = call.request
        target = self.default
        now = self.loop.time()
        hash_header = target.cluster.hash_header
        try:
            deadline = try_deadline(route_deadline(call, self.timeout, now), self.per_try, now)
            if deadline <= now:
                raise DeadlineExceeded("deadline_exceeded", "the caller's budget is already spent")
            endpoint = exchange.pick(target, request.header(hash_header) if hash_header is not None else None,
                                     (), now)
        except ProxyError as error:  # a bad or spent caller budget, no endpoint, or a threshold crossed
            respond(local_reply(error))
            return ANSWERED
        if target.guard is not None:
            target.guard.deposit(now, 1)
        headers = self._headers(call, target)
        if call.grpc_timeout:
            headers = upstream_timeout(headers, deadline, now)
        started = exchange.start(target, endpoint, request.method, request.target, headers,
                                 request.body, deadline, respond, self.loop, self._via, self.stream_limit)
        if started is None:
            call.endpoint = endpoint  # no idle connection: the general path connects to this endpoint
        return started


class BatchSender:
    """A batching route's sender (the batcher's `Sender` signature), through its targets' guards."""

    __slots__ = ("loop", "metrics", "mirror", "per_try", "route", "split", "via")

    def __init__(self, route: str, split: Split, per_try: float | None, via: bool, loop: asyncio.AbstractEventLoop,
                 mirror: Mirror | None = None, metrics: LayerMetrics | None = None) -> None:
        self.route = route
        self.split = split
        self.per_try = per_try
        self.via = via
        self.loop = loop
        self.mirror = mirror
        self.metrics = metrics

    async def __call__(self, method: bytes, path: bytes, headers: Headers, body: bytes, timeout: float,
                       key: tuple[bytes, ...]) -> Response:
        attempt = ATTEMPT.get()
        hash_key = b"\x00".join(key) if key else None
        target = attempt.target if attempt is not None else None
        if target is None:
            target = self.split.choose(hash_key if self.split.header is not None else None)
            if attempt is not None:
                attempt.target = target
            if len(self.split.targets) > 1 and self.metrics is not None:
                self.metrics.splits.inc((self.route, target.label))
        now = self.loop.time()
        out = batch_headers(target.cluster.name, headers, self.via)
        if attempt is None or attempt.number == 0:
            if target.guard is not None:
                target.guard.deposit(now, attempt.units if attempt is not None else 1)
            if self.mirror is not None and self.mirror.wanted():
                self.mirror.copy(method, path, out, body, key=hash_key)
        if self.per_try is not None and self.per_try < timeout:
            timeout = self.per_try
        return await exchange.send(target, method, path, out, body, now + timeout, hash_key, self.loop, attempt,
                                   stream_limit=STREAM_LIMIT.get())


__all__ = ["BatchSender", "UpstreamService"]
