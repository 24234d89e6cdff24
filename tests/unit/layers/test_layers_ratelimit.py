"""Token buckets per route and per caller, in requests and in items (fake clock; no sleeping)."""

from __future__ import annotations

import asyncio

from layers_support import Script, request

from meshbatch.clock import FakeClock
from meshbatch.config.model import RateLimit
from meshbatch.core.buckets import TokenBucket
from meshbatch.http.message import Request
from meshbatch.layers.metrics import LayerMetrics
from meshbatch.layers.ratelimit import Limit, RateLimitLayer, RateLimits
from meshbatch.telemetry.metrics import Registry


def test_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate=10, burst=2, now=clock.now())
    for _ in range(2):
        assert bucket.wait(clock.now()) == 0
        bucket.take(clock.now())
    assert bucket.wait(clock.now()) == 0.1
    clock.advance(0.05)
    assert abs(bucket.wait(clock.now()) - 0.05) < 1e-9
    clock.advance(10)
    assert bucket.tokens <= 2 and bucket.wait(clock.now()) == 0
    bucket.take(clock.now())
    bucket.take(clock.now())
    assert bucket.wait(clock.now()) > 0


def test_keyed_buckets_are_bounded_lru() -> None:
    limit = Limit(RateLimit(key="header:x-tenant", rate=1, max_keys=2))
    now = 0.0
    reqs = {t: _req([(b"x-tenant", t)]) for t in (b"a", b"b", b"c")}
    limit.bucket(reqs[b"a"], now).take(now)
    limit.bucket(reqs[b"b"], now).take(now)
    limit.bucket(reqs[b"a"], now)  # a is recent now
    limit.bucket(reqs[b"c"], now)  # pushes b out
    assert len(limit) == 2
    assert limit.bucket(reqs[b"a"], now).wait(now) > 0  # a kept its state
    assert limit.bucket(reqs[b"b"], now).wait(now) == 0  # b starts again full


def _req(headers: list[tuple[bytes, bytes]], client: str = "10.0.0.1") -> Request:
    return Request(b"POST", b"/", headers, b"", client=client)


async def test_layer_answers_429_with_retry_after_and_counts() -> None:
    registry = Registry()
    metrics = LayerMetrics.of(registry)
    loop = asyncio.get_running_loop()
    inner = Script([200])
    limits = [Limit(RateLimit(rate=0.5, burst=1)), Limit(RateLimit(name="tenant", key="header:x-t", rate=100))]
    layer = RateLimitLayer(inner, RateLimits(limits, "orders", loop, metrics))
    assert (await layer(request())).status == 200
    refused = await layer(request())
    assert refused.status == 429 and refused.reason == "rate_limited" and refused.flag == "RL"
    assert (b"retry-after", b"2") in refused.headers
    assert len(inner.calls) == 1
    assert metrics.rate_limited.get(("orders", "route")) == 1
    unkeyed = request(headers=[(b"x-t", b"")]).request
    assert limits[1].bucket(unkeyed, loop.time()).tokens > 98  # the refused one took none


async def test_identity_and_client_keys() -> None:
    loop = asyncio.get_running_loop()
    by_identity = RateLimits([Limit(RateLimit(key="identity", rate=0.001, burst=1))], "r", loop)
    layer = RateLimitLayer(Script([200]), by_identity)
    alice, bob = request(), request()
    alice.request.identity = "spiffe://mesh/ns/a/sa/alice"
    bob.request.identity = "spiffe://mesh/ns/a/sa/bob"
    assert (await layer(alice)).status == 200 and (await layer(bob)).status == 200
    again = request()
    again.request.identity = "spiffe://mesh/ns/a/sa/alice"
    assert (await layer(again)).status == 429
    by_client = RateLimitLayer(Script([200]), RateLimits([Limit(RateLimit(key="client", rate=0.001, burst=1))], "r",
                                                         loop))
    assert (await by_client(request(client="10.0.0.1"))).status == 200
    assert (await by_client(request(client="10.0.0.2"))).status == 200
    assert (await by_client(request(client="10.0.0.1"))).status == 429
