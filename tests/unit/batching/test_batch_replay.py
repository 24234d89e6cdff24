"""The idempotency replay window (`dedup_window_ms`): the cache on a fake clock, and the handler answering from it."""

import asyncio

import orjson
import pytest
from batching_support import header, make_handler, request, settle, submit
from pydantic import ValidationError

from meshbatch.batching.batch import dedup_key
from meshbatch.batching.codecs.base import ItemResult
from meshbatch.batching.replay import ReplayCache
from meshbatch.config.model import Batch

BATCH = [(b"x-meshbatch-batch-id", b"b-1")]


def idem(key: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"idempotency-key", key)]


def ok(body: bytes = b"1") -> ItemResult:
    return ItemResult(200, body)


# -- the cache ------------------------------------------------------------------------------------------------

def test_kept_for_the_window_then_gone():
    cache = ReplayCache(window=10.0, max_keys=100)
    cache.put(((), b"k"), b"body", ok(), BATCH, now=0.0)
    kept = cache.get(((), b"k"), now=9.999)
    assert kept is not None and kept.body == b"body" and kept.batch_headers == BATCH
    assert cache.get(((), b"k"), now=10.0) is None
    assert len(cache) == 0


def test_keys_are_scoped_by_batch_key():
    cache = ReplayCache(window=10.0, max_keys=100)
    cache.put(((b"a",), b"k"), b"1", ok(), BATCH, now=0.0)
    assert cache.get(((b"b",), b"k"), now=1.0) is None
    assert cache.get(((b"a",), b"k"), now=1.0) is not None


def test_keys_are_scoped_by_caller_first():
    cache = ReplayCache(window=10.0, max_keys=100)
    cache.put(dedup_key(b"spiffe:1:a;", (b"t",), b"k"), b"1", ok(), BATCH, now=0.0)
    assert cache.get(dedup_key(b"spiffe:1:b;", (b"t",), b"k"), now=1.0) is None
    assert cache.get(dedup_key(b"", (b"t",), b"k"), now=1.0) is None
    assert cache.get(dedup_key(b"spiffe:1:a;", (b"t",), b"k"), now=1.0) is not None
    # a batch key part cannot stand in for the scope: the parts are as many on every request of a route
    assert dedup_key(b"a", (b"b",), b"k") != dedup_key(b"", (b"a", b"b"), b"k")


def test_oldest_keys_leave_first_beyond_max_keys():
    cache = ReplayCache(window=100.0, max_keys=3)
    for i in range(5):
        cache.put(((), b"%d" % i), b"", ok(), BATCH, now=float(i))
    assert len(cache) == 3 and cache.evicted == 2
    assert [cache.get(((), b"%d" % i), now=5.0) is not None for i in range(5)] == [False, False, True, True, True]


def test_a_key_given_again_restarts_its_window_and_expiry_stays_in_order():
    cache = ReplayCache(window=10.0, max_keys=100)
    cache.put(((), b"a"), b"", ok(b"old"), BATCH, now=0.0)
    cache.put(((), b"b"), b"", ok(), BATCH, now=1.0)
    cache.put(((), b"a"), b"", ok(b"new"), BATCH, now=2.0)
    assert cache.get(((), b"b"), now=11.0) is None  # b expired at 11 although a was put first
    kept = cache.get(((), b"a"), now=11.0)
    assert kept is not None and kept.result.body == b"new"


def test_only_the_upstreams_own_answers_below_500_are_kept():
    assert ReplayCache.keeps(ItemResult(200, b""))
    assert ReplayCache.keeps(ItemResult(409, b""))  # a per-item upstream answer (envelope) is definitive
    assert not ReplayCache.keeps(ItemResult(503, b""))
    assert not ReplayCache.keeps(ItemResult(502, b"", reason="upstream_status_503"))


def test_the_window_needs_dedup():
    with pytest.raises(ValidationError, match="dedup_window_ms"):
        Batch(dedup=False, dedup_window_ms=1000)
    with pytest.raises(ValidationError):
        Batch(dedup_window_ms=-1)
    assert Batch().dedup_window_ms == 0


# -- the handler ----------------------------------------------------------------------------------------------

async def answered_once(handler, upstream, body=1, key=b"k"):
    first = submit(handler, request(body, idem(key)))
    await settle()
    upstream.calls[-1].echo()
    return await first


async def test_a_repeat_within_the_window_is_answered_without_an_upstream_call():
    handler, upstream, clock = make_handler(dedup_window_ms=60_000)
    first = await answered_once(handler, upstream)
    clock.advance(30)
    again = await handler(request(1, idem(b"k")))
    assert len(upstream.calls) == 1
    assert again.status == 200 and again.body == first.body == b'{"echo":1}'
    assert header(again, b"idempotent-replayed") == b"true"
    assert header(again, b"x-meshbatch-batch-id") == header(first, b"x-meshbatch-batch-id")
    assert header(first, b"idempotent-replayed") is None
    summary = handler.summary()["replay"]
    assert summary == {"keys": 1, "max_keys": 10_000, "window_ms": 60_000, "replayed": 1, "evicted": 0}


async def test_after_the_window_the_key_is_sent_again():
    handler, upstream, clock = make_handler(dedup_window_ms=1000)
    await answered_once(handler, upstream)
    clock.advance(1.0)
    again = submit(handler, request(1, idem(b"k")))
    await settle()
    assert len(upstream.calls) == 2
    upstream.calls[1].echo()
    assert header(await again, b"idempotent-replayed") is None


async def test_a_kept_key_with_another_body_is_refused():
    handler, upstream, _ = make_handler(dedup_window_ms=60_000)
    await answered_once(handler, upstream)
    other = await handler(request(2, idem(b"k")))
    assert other.status == 400 and other.reason == "idempotency_key_reused"
    assert len(upstream.calls) == 1


async def test_failures_are_not_kept_so_a_retry_goes_upstream():
    handler, upstream, _ = make_handler(dedup_window_ms=60_000)
    first = submit(handler, request(1, idem(b"k")))
    await settle()
    upstream.calls[0].reply(503, b"busy")
    assert (await first).status >= 500
    retry = submit(handler, request(1, idem(b"k")))
    await settle()
    assert len(upstream.calls) == 2
    upstream.calls[1].echo()
    assert (await retry).status == 200
    assert len(handler.dispatcher.replay or []) == 1


async def test_every_caller_of_a_shared_item_keeps_one_entry_and_without_window_nothing_is_kept():
    handler, upstream, _ = make_handler(dedup_window_ms=60_000)
    tasks = [submit(handler, request(1, idem(b"k"))) for _ in range(3)]
    await settle()
    upstream.calls[0].echo()
    assert {r.body for r in await asyncio.gather(*tasks)} == {b'{"echo":1}'}
    assert len(handler.dispatcher.replay or []) == 1
    plain, plain_upstream, _ = make_handler()
    assert plain.dispatcher.replay is None and plain.summary()["replay"] is None
    await answered_once(plain, plain_upstream)
    again = submit(plain, request(1, idem(b"k")))
    await settle()
    assert len(plain_upstream.calls) == 2
    plain_upstream.calls[1].echo()
    assert orjson.loads((await again).body) == {"echo": 1}


def from_caller(body, key=b"k", *, client="10.0.0.1", peer=None, jwt=None, extra=()):
    req = request(body, [*idem(key), *extra])
    req.request.client = client
    req.request.identity = peer
    req.principal = jwt
    return req


@pytest.mark.parametrize(("owner", "other"), [
    ({"peer": "spiffe://td/ns/x/sa/a"}, {"peer": "spiffe://td/ns/x/sa/b"}),
    ({"jwt": "iss/alice"}, {"jwt": "iss/bob"}),
    ({"client": "10.0.0.1"}, {"client": "10.0.0.2"}),
    ({"jwt": "iss/alice"}, {}),  # no credential at all, from the owner's address
])
async def test_a_kept_answer_is_only_replayed_to_its_own_scope(owner, other):
    handler, upstream, _ = make_handler(dedup_window_ms=60_000, key=["header:x-tenant"])
    tenant = [(b"x-tenant", b"acme")]
    first = submit(handler, from_caller({"card": "4242"}, extra=tenant, **owner))
    await settle()
    upstream.calls[0].echo()
    assert (await first).status == 200
    spoofed = submit(handler, from_caller({"card": "4242"}, extra=tenant, **other))  # same key, body, tenant
    await settle()
    assert len(upstream.calls) == 2, "another scope's request goes upstream as its own item"
    upstream.calls[1].reply_json([{"mine": True}])
    answer = await spoofed
    assert header(answer, b"idempotent-replayed") is None and orjson.loads(answer.body) == {"mine": True}
    probe = submit(handler, from_caller({"guess": 1}, extra=tenant, client="10.0.0.3"))  # a third caller
    await settle()
    upstream.calls[2].echo()  # another body under the key, from another scope: sent, not refused
    assert (await probe).status == 200
    mine = await handler(from_caller({"card": "4242"}, extra=tenant, **owner))
    assert header(mine, b"idempotent-replayed") == b"true" and orjson.loads(mine.body) == {"echo": {"card": "4242"}}
    reused = await handler(from_caller({"card": "0000"}, extra=tenant, **owner))
    assert reused.status == 400 and reused.reason == "idempotency_key_reused"  # within the scope, as before
