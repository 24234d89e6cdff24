"""Local rate limits: token buckets per route, or per caller (a header's value, the mTLS identity, the
client address), counted in requests or in items.

Scope: one meshbatch process. A bucket belongs to one route of one process; it is not shared between
routes, listeners, processes or replicas (Envoy's "local" rate limit, per process by default). `rate` tokens
are added each second, at most `burst` are saved up (core/buckets.py); a request takes one token from each of
its route's limits, or is answered 429 with Retry-After (the time until a token is there) and takes none. Per-caller
buckets live in a bounded LRU table (`max_keys`): a key pushed out starts again with a full bucket.
Requests without the header or identity share the bucket of the empty key.

`requests` limits are checked once per caller request, in front of everything else of the route (a `Check`,
`RateLimitCheck`, so a plain route keeps its fast path); `items` limits in front of the batcher, once per item
queued (a request that the pipeline splits into several events counts each: `RateLimitLayer`, whose 429 is one
item's answer, not the request's), and for a plain route once per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from meshbatch.config.plain import RateLimit
from meshbatch.core.buckets import KeyedBuckets, TokenBucket
from meshbatch.errors import RateLimited
from meshbatch.http.message import Request, Response
from meshbatch.http.serialize import local_reply
from meshbatch.layers.metrics import LayerMetrics
from meshbatch.service import Call, Service

KeyOf = Callable[[Request], bytes]


def key_function(key: str | None) -> KeyOf:
    if key is None:
        return lambda request: b""
    if key == "identity":
        return lambda request: (request.identity or "").encode()
    if key == "client":
        return lambda request: request.client.encode()
    name = key.partition(":")[2].lower().encode()
    return lambda request: request.header(name) or b""


class Limit:
    """One configured limit of a route: its buckets by key (an LRU table of at most `max_keys`)."""

    __slots__ = ("_buckets", "burst", "config", "key_of", "max_keys", "name", "rate")

    def __init__(self, config: RateLimit) -> None:
        self.config = config
        self.name = config.label
        self.rate = config.rate
        self.burst = float(config.burst if config.burst is not None else max(1.0, config.rate))
        self.max_keys = config.max_keys
        self.key_of = key_function(config.key)
        self._buckets: KeyedBuckets[bytes] = KeyedBuckets(self.rate, self.burst, self.max_keys)

    def bucket(self, request: Request, now: float) -> TokenBucket:
        return self._buckets.bucket(self.key_of(request), now)

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimits:
    """The limits of one route, taken together: a request takes a token from each, or from none."""

    __slots__ = ("limits", "loop", "metrics", "route")

    def __init__(self, limits: Sequence[Limit], route: str, loop: asyncio.AbstractEventLoop,
                 metrics: LayerMetrics | None = None) -> None:
        self.limits = list(limits)
        self.route = route
        self.loop = loop
        self.metrics = metrics

    def take(self, request: Request) -> RateLimited | None:
        """None (a token taken from every limit), or the 429 to answer (no token taken)."""
        now = self.loop.time()
        if len(self.limits) == 1:
            limit = self.limits[0]
            bucket = limit.bucket(request, now)
            wait = bucket.wait(now)
            if wait > 0:
                return self._refuse(limit, wait)
            bucket.take(now)
            return None
        buckets = [(limit, limit.bucket(request, now)) for limit in self.limits]
        worst, refused = 0.0, None
        for limit, bucket in buckets:
            wait = bucket.wait(now)
            if wait > worst:
                worst, refused = wait, limit
        if refused is not None:
            return self._refuse(refused, worst)
        for _, bucket in buckets:
            bucket.take(now)
        return None

    def _refuse(self, limit: Limit, wait: float) -> RateLimited:
        if self.metrics is not None:
            self.metrics.rate_limited.inc((self.route, limit.name))
        return RateLimited("rate_limited", f"rate limit {limit.name!r} of route {self.route!r}", retry_after=wait)


class RateLimitCheck:
    """A route's request limits, before anything else of the route (the 429 is the request's answer)."""

    __slots__ = ("limits",)

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits

    def __call__(self, call: Call) -> RateLimited | None:
        return self.limits.take(call.request)


class RateLimitLayer:
    """A route's item limits, in front of the batcher: the 429 is an answer, not an exception, so that under
    the pipeline one refused item of a request that carries several does not fail the others."""

    __slots__ = ("inner", "limits")

    def __init__(self, inner: Service, limits: RateLimits) -> None:
        self.inner = inner
        self.limits = limits

    async def __call__(self, call: Call) -> Response:
        refused = self.limits.take(call.request)
        if refused is not None:
            return local_reply(refused)
        return await self.inner(call)


__all__ = ["Limit", "RateLimitCheck", "RateLimitLayer", "RateLimits", "key_function"]
