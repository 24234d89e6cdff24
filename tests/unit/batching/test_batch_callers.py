"""Dedup, cancellation and drain: every admitted caller gets exactly one answer, and leaving never wedges."""

import asyncio

import orjson
import pytest
from batching_support import header, make_handler, request, settle, submit


def idem(key):
    return [(b"idempotency-key", key)]


async def test_duplicates_share_one_item_and_do_not_count_against_max_items():
    handler, upstream, _ = make_handler(max_items=3, min_wait_ms=10, max_wait_ms=20)
    tasks = [submit(handler, request({"o": 1}, idem(b"k1"))) for _ in range(5)]
    tasks.append(submit(handler, request({"o": 2})))
    await settle()
    assert upstream.calls == []  # 6 callers, 2 items: the batch of 3 is not full
    assert handler.accumulator.queued == 2
    tasks.append(submit(handler, request({"o": 3})))
    await settle()
    (call,) = upstream.calls
    assert call.items == [{"o": 1}, {"o": 2}, {"o": 3}]
    call.echo()
    responses = await asyncio.gather(*tasks)
    assert [orjson.loads(r.body) for r in responses[:5]] == [{"echo": {"o": 1}}] * 5
    assert {header(r, b"x-meshbatch-batch-size") for r in responses} == {b"3"}
    assert {header(r, b"x-meshbatch-flush") for r in responses} == {b"items"}
    assert len({id(r) for r in responses}) == 7 and len({id(r.headers) for r in responses[:5]}) == 5
    assert handler.summary()["dedup_shared"] == 4


async def test_a_duplicate_joins_an_item_in_flight():
    handler, upstream, _ = make_handler()
    first = submit(handler, request(1, idem(b"k")))
    await settle()
    assert len(upstream.calls) == 1
    second = submit(handler, request(1, idem(b"k")))
    await settle()
    assert len(upstream.calls) == 1 and handler.accumulator.queued == 0
    upstream.calls[0].echo()
    a, b = await asyncio.gather(first, second)
    assert a.body == b.body == b'{"echo":1}'
    assert header(b, b"x-meshbatch-queue-ms") == b"0.000"


async def test_after_completion_the_key_is_free_again():
    handler, upstream, _ = make_handler()
    first = submit(handler, request(1, idem(b"k")))
    await settle()
    upstream.calls[0].echo()
    await first
    again = submit(handler, request(1, idem(b"k")))
    await settle()
    assert len(upstream.calls) == 2
    upstream.calls[1].echo()
    assert (await again).status == 200


async def test_same_key_with_another_body_is_refused():
    handler, upstream, _ = make_handler()
    first = submit(handler, request(1, idem(b"k")))
    await settle()
    other = await handler(request(2, idem(b"k")))
    assert other.status == 400 and other.reason == "idempotency_key_reused"
    await settle()
    upstream.calls[0].echo()
    await first


async def test_dedup_is_scoped_by_batch_key_and_can_be_turned_off():
    handler, upstream, _ = make_handler(key=["header:x-tenant"])
    a = submit(handler, request(1, [*idem(b"k"), (b"x-tenant", b"a")]))
    b = submit(handler, request(1, [*idem(b"k"), (b"x-tenant", b"b")]))
    await settle()
    assert len(upstream.calls) == 2
    for call in upstream.calls:
        call.echo()
    await asyncio.gather(a, b)
    handler, upstream, _ = make_handler(dedup=False)
    tasks = [submit(handler, request(1, idem(b"k"))) for _ in range(3)]
    await settle()
    assert upstream.calls[0].items == [1, 1, 1]
    upstream.calls[0].echo()
    await asyncio.gather(*tasks)


def caller(body, key, *, client="10.0.0.1", peer=None, jwt=None, extra=()):
    """A request with `idempotency-key: key` from one caller: its address, mTLS identity, JWT principal."""
    req = request(body, [*idem(key), *extra])
    req.request.client = client
    req.request.identity = peer
    req.principal = jwt
    return req


SCOPES = pytest.mark.parametrize(("a", "b"), [
    ({"peer": "spiffe://td/ns/x/sa/a"}, {"peer": "spiffe://td/ns/x/sa/b"}),
    ({"jwt": "iss/alice"}, {"jwt": "iss/bob"}),
    ({"client": "10.0.0.1"}, {"client": "10.0.0.2"}),
    ({"peer": "spiffe://td/ns/x/sa/a"}, {"client": "10.0.0.1"}),  # the same address, without the certificate
])
TENANT = [(b"x-tenant", b"acme")]  # the same batch key for both callers: it is the caller's to choose


@SCOPES
async def test_a_key_in_use_by_another_scope_is_neither_shared_nor_refused(a, b):
    handler, upstream, _ = make_handler(max_in_flight=1, key=["header:x-tenant"])
    blocker = submit(handler, request("block"))
    await settle()
    first = submit(handler, caller({"secret": "a"}, b"k", extra=TENANT, **a))
    await settle()
    other = submit(handler, caller({"other": "b"}, b"k", extra=TENANT, **b))  # no 400: b never learns of a's key
    again = submit(handler, caller({"other": "b"}, b"k", extra=TENANT, **b))  # b's own retry shares b's item
    await settle()
    assert handler.accumulator.queued == 2 and handler.summary()["dedup_shared"] == 1
    upstream.calls[0].echo()
    await settle()
    assert upstream.calls[1].items == [{"secret": "a"}, {"other": "b"}]
    upstream.calls[1].echo()
    answers = [orjson.loads((await t).body) for t in (first, other, again)]
    assert answers == [{"echo": {"secret": "a"}}, {"echo": {"other": "b"}}, {"echo": {"other": "b"}}]
    await blocker


@SCOPES
async def test_the_same_key_and_body_from_another_scope_is_its_own_item(a, b):
    handler, upstream, _ = make_handler(max_in_flight=1, key=["header:x-tenant"])
    blocker = submit(handler, request("block"))
    await settle()
    first = submit(handler, caller({"n": 1}, b"k", extra=TENANT, **a))
    copy = submit(handler, caller({"n": 1}, b"k", extra=TENANT, **b))
    await settle()
    assert handler.accumulator.queued == 2 and handler.summary()["dedup_shared"] == 0
    upstream.calls[0].echo()
    await settle()
    upstream.calls[1].reply_json([{"for": "a"}, {"for": "b"}])
    assert [orjson.loads((await t).body) for t in (first, copy)] == [{"for": "a"}, {"for": "b"}]
    await blocker


async def test_the_same_caller_shares_whatever_its_address():
    handler, upstream, _ = make_handler()
    first = submit(handler, caller(1, b"k", client="10.0.0.1", peer="spiffe://td/ns/x/sa/a"))
    await settle()
    again = submit(handler, caller(1, b"k", client="10.0.0.9", peer="spiffe://td/ns/x/sa/a"))
    await settle()
    assert len(upstream.calls) == 1 and handler.summary()["dedup_shared"] == 1
    upstream.calls[0].echo()
    assert (await first).body == (await again).body


async def test_the_global_scope_shares_between_callers():
    handler, upstream, _ = make_handler(idempotency_scope="global")
    first = submit(handler, caller(1, b"k", peer="spiffe://td/ns/x/sa/a"))
    await settle()
    again = submit(handler, caller(1, b"k", client="10.0.0.2"))
    await settle()
    assert handler.summary()["dedup_shared"] == 1 and handler.summary()["policy"]["idempotency_scope"] == "global"
    upstream.calls[0].echo()
    assert (await first).body == (await again).body


async def test_cancel_before_sealing_removes_the_item():
    handler, upstream, clock = make_handler(min_wait_ms=5, max_wait_ms=10)
    keep = submit(handler, request("keep"))
    gone = submit(handler, request("gone"))
    await settle()
    gone.cancel()
    await settle()
    assert gone.cancelled() and handler.accumulator.queued == 1
    clock.advance(0.005)
    handler.dispatcher.pump()
    await settle()
    (call,) = upstream.calls
    assert call.items == ["keep"]
    call.echo()
    assert (await keep).status == 200
    assert handler.metrics.cancelled.get(("orders", "queued")) == 1


async def test_last_caller_of_a_shared_item_leaving_removes_it_others_keep_it():
    handler, upstream, clock = make_handler(min_wait_ms=5, max_wait_ms=10)
    a = submit(handler, request(1, idem(b"k")))
    b = submit(handler, request(1, idem(b"k")))
    await settle()
    a.cancel()
    await settle()
    assert handler.accumulator.queued == 1
    b.cancel()
    await settle()
    assert handler.accumulator.queued == 0 and handler.dispatcher.dedup == {}
    clock.advance(1)
    handler.dispatcher.pump()
    await settle()
    assert upstream.calls == []


async def test_cancel_after_sealing_does_not_disturb_the_others():
    handler, upstream, _ = make_handler()
    tasks = [submit(handler, request(n)) for n in range(3)]
    await settle()
    (call,) = upstream.calls
    tasks[1].cancel()
    await settle()
    call.echo()
    first, third = await tasks[0], await tasks[2]
    assert orjson.loads(first.body) == {"echo": 0} and orjson.loads(third.body) == {"echo": 2}
    assert tasks[1].cancelled()
    assert handler.metrics.cancelled.get(("orders", "in_flight")) == 1
    assert handler.dispatcher.in_flight == 0


async def test_cancelling_everything_never_wedges_the_batcher():
    handler, upstream, _ = make_handler(max_in_flight=1)
    for _ in range(3):
        tasks = [submit(handler, request(n)) for n in range(4)]
        await settle()
        for task in tasks:
            task.cancel()
        await settle()
        for call in upstream.pending():
            call.echo()
        await settle()
    fine = submit(handler, request("after"))
    await settle()
    upstream.pending()[0].echo()
    assert (await fine).status == 200 and handler.dispatcher.in_flight == 0


async def test_drain_flushes_queued_items_with_reason_drain_and_then_refuses():
    handler, upstream, _ = make_handler(max_in_flight=1, min_wait_ms=100, max_wait_ms=200, max_items=2)
    tasks = [submit(handler, request(n)) for n in range(5)]
    await settle()
    assert len(upstream.calls) == 1 and handler.accumulator.queued == 3  # one slot: the rest waits
    drain = asyncio.get_running_loop().create_task(handler.drain(5.0))
    await settle()
    assert handler.summary()["state"] == "draining"
    for _ in range(4):
        for call in upstream.pending():
            call.echo()
        await settle()
    await drain
    responses = await asyncio.gather(*tasks)
    assert [r.status for r in responses] == [200] * 5
    assert [header(r, b"x-meshbatch-flush") for r in responses] == [b"items"] * 2 + [b"drain"] * 3
    assert [c.items for c in upstream.calls] == [[0, 1], [2, 3], [4]]
    after = await handler(request(9))
    assert after.status == 503 and after.reason == "draining"
    assert handler.summary()["state"] == "closed"


async def test_drain_timeout_answers_everyone_left():
    handler, upstream, _ = make_handler(max_in_flight=1)
    in_flight = submit(handler, request(0))
    await settle()
    queued = submit(handler, request(1))
    await settle()
    await handler.drain(0.01)  # the upstream never answers
    sent, unsent = await in_flight, await queued
    assert sent.status == 504 and sent.reason == "drain_timeout"
    assert unsent.status == 503 and unsent.reason == "draining"
    assert handler.dispatcher.in_flight == 0 and handler.accumulator.queued == 0
    assert upstream.calls[0].items == [0] and len(upstream.calls) == 1


async def test_drain_of_an_unused_handler_returns_at_once():
    handler, _, _ = make_handler()
    await asyncio.wait_for(handler.drain(1.0), 0.5)
    assert (await handler(request(1))).status == 503


@pytest.mark.parametrize("codec", ["json-array", "ndjson"])
async def test_ndjson_and_json_array_end_to_end(codec):
    handler, upstream, _ = make_handler(codec=codec)
    tasks = [submit(handler, request({"n": n})) for n in range(3)]
    await settle()
    (call,) = upstream.calls
    if codec == "ndjson":
        assert call.body == b'{"n":0}\n{"n":1}\n{"n":2}\n'
        assert (b"content-type", b"application/x-ndjson") in call.headers
        call.reply(200, b'{"r":0}\n{"r":1}\n{"r":2}\n')
    else:
        call.reply_json([{"r": 0}, {"r": 1}, {"r": 2}])
    assert [orjson.loads(r.body) for r in await asyncio.gather(*tasks)] == [{"r": n} for n in range(3)]


async def test_a_replaced_batcher_and_its_successor_report_one_gauge_series():
    from meshbatch.telemetry.metrics import Registry

    registry = Registry()
    old, old_upstream, _ = make_handler(registry=registry, max_in_flight=1)
    new, _, _ = make_handler(registry=registry)
    submit(old, request(1))
    await settle()
    submit(old, request(2))
    await settle()
    text = registry.render().decode()
    assert text.count('meshbatch_batch_queue_depth{route="orders"}') == 1
    assert 'meshbatch_batch_queue_depth{route="orders"} 1.0' in text
    assert 'meshbatch_batch_in_flight{route="orders"} 1.0' in text
    drain = asyncio.get_running_loop().create_task(old.drain(5))
    for _ in range(3):
        for call in old_upstream.pending():
            call.echo()
        await settle()
    await drain
    text = registry.render().decode()
    assert 'meshbatch_batch_queue_depth{route="orders"} 0.0' in text
    del new
    import gc

    gc.collect()
    assert "meshbatch_batch_queue_depth{" not in registry.render().decode()
