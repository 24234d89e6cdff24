"""The handler and dispatcher on a real loop with a scripted upstream and a fake clock: no timer is waited on."""

import asyncio

import orjson
import pytest
from batching_support import Upstream, header, make_handler, request, settle, submit

from meshbatch.batching.admission import Controls
from meshbatch.errors import BadGateway, GatewayTimeout, Unavailable
from meshbatch.telemetry.metrics import Registry


async def test_one_request_round_trip_with_batch_headers():
    handler, upstream, clock = make_handler(key=["header:x-tenant"], upstream_path="/orders/batch")
    task = submit(handler, request({"id": 1}, [(b"x-tenant", b"acme")], received_at=clock.now()))
    await settle()
    (call,) = upstream.calls
    assert call.method == b"POST" and call.path == b"/orders/batch" and call.key == (b"acme",)
    assert (b"content-type", b"application/json") in call.headers and (b"x-tenant", b"acme") in call.headers
    assert call.items == [{"id": 1}] and call.timeout == pytest.approx(2.0)
    clock.advance(0.003)
    call.echo()
    response = await task
    assert response.status == 200 and orjson.loads(response.body) == {"echo": {"id": 1}}
    assert header(response, b"content-type") == b"application/json"
    assert header(response, b"x-meshbatch-batch-size") == b"1"
    assert header(response, b"x-meshbatch-flush") == b"wait"
    assert header(response, b"x-meshbatch-queue-ms") == b"0.000"
    assert header(response, b"x-meshbatch-batch-id")


async def test_query_key_parts_travel_in_the_upstream_path():
    handler, upstream, _clock = make_handler(key=["query:model"], upstream_path="/infer?v=2")
    task = submit(handler, request(1, target=b"/x?model=big%20m"))
    await settle()
    assert upstream.calls[0].path == b"/infer?v=2&model=big%20m"
    upstream.calls[0].echo()
    assert (await task).status == 200


async def test_self_clocking_batches_grow_while_the_slot_is_busy():
    handler, upstream, clock = make_handler(max_in_flight=1, max_items=100, max_wait_ms=5)
    first = submit(handler, request(0))
    await settle()
    assert len(upstream.calls) == 1  # sent at the end of the tick: no timer
    rest = [submit(handler, request(n)) for n in range(1, 8)]
    await settle()
    assert len(upstream.calls) == 1 and handler.accumulator.queued == 7
    clock.advance(0.050)  # far beyond max_wait: nothing can go while the only slot is busy
    handler.dispatcher.pump()
    assert len(upstream.calls) == 1
    upstream.calls[0].echo()
    await first
    await settle()
    assert len(upstream.calls) == 2 and upstream.calls[1].items == list(range(1, 8))
    upstream.calls[1].echo()
    responses = await asyncio.gather(*rest)
    assert [orjson.loads(r.body)["echo"] for r in responses] == list(range(1, 8))
    assert {header(r, b"x-meshbatch-batch-size") for r in responses} == {b"7"}
    assert {header(r, b"x-meshbatch-queue-ms") for r in responses} == {b"50.000"}


async def test_min_wait_holds_the_batch_then_flushes_on_wait():
    handler, upstream, clock = make_handler(min_wait_ms=4, max_wait_ms=10)
    tasks = [submit(handler, request(n)) for n in range(3)]
    await settle()
    assert upstream.calls == []
    assert handler.accumulator.next_deadline(True) == pytest.approx(clock.now() + 0.004)
    clock.advance(0.0039)
    handler.dispatcher.pump()
    await settle()
    assert upstream.calls == []
    clock.advance(0.0001)
    handler.dispatcher.pump()
    await settle()
    (call,) = upstream.calls
    assert call.items == [0, 1, 2]
    call.echo()
    assert {header(r, b"x-meshbatch-flush") for r in await asyncio.gather(*tasks)} == {b"wait"}


async def test_max_items_flushes_a_full_batch_during_the_hold():
    handler, upstream, _clock = make_handler(min_wait_ms=50, max_wait_ms=100, max_items=4)
    tasks = [submit(handler, request(n)) for n in range(6)]
    await settle()
    (call,) = upstream.calls
    assert call.items == [0, 1, 2, 3]
    call.echo()
    done = await asyncio.gather(*tasks[:4])
    assert {header(r, b"x-meshbatch-flush") for r in done} == {b"items"}
    assert handler.accumulator.queued == 2


async def test_full_queue_is_an_immediate_429_with_retry_after():
    handler, upstream, _clock = make_handler(max_in_flight=1, max_queue=2)
    tasks = [submit(handler, request(0))]
    await settle()
    tasks += [submit(handler, request(n)) for n in (1, 2)]  # 1 in flight, 2 queued
    await settle()
    assert handler.accumulator.queued == 2
    rejected = await handler(request(99))
    assert rejected.status == 429 and rejected.reason == "queue_full" and rejected.flag == "UO"
    assert orjson.loads(rejected.body)["reason"] == "queue_full"
    assert int(header(rejected, b"retry-after")) >= 1
    for call in upstream.pending():
        call.echo()
    await settle()
    for call in upstream.pending():
        call.echo()
    assert [r.status for r in await asyncio.gather(*tasks)] == [200, 200, 200]
    assert handler.summary()["rejections"] == {"queue_full": 1}


async def test_retry_after_follows_the_drain_rate():
    handler, upstream, clock = make_handler(max_in_flight=1, max_queue=50, max_items=10)
    dispatcher = handler.dispatcher
    dispatcher.bind()
    dispatcher.completed.add(10, clock.now())
    clock.advance(1.0)
    dispatcher.completed.add(10, clock.now())  # 10 items/s
    tasks = [submit(handler, request(0))]
    await settle()
    tasks += [submit(handler, request(n)) for n in range(1, 51)]
    await settle()
    assert handler.accumulator.queued == 50
    rejected = await handler(request(0))
    assert header(rejected, b"retry-after") == b"5"  # 50 queued at 10/s
    for _ in range(6):
        for call in upstream.pending():
            call.echo()
        await settle()
    await asyncio.gather(*tasks)


@pytest.mark.parametrize(("headers", "status", "reason"), [
    ([(b"x-meshbatch-priority", b"urgent")], 400, "bad_priority"),
    ([(b"x-meshbatch-deadline-ms", b"soon")], 400, "bad_deadline"),
    ([(b"x-meshbatch-deadline-ms", b"0")], 504, "deadline_exceeded"),
])
async def test_bad_or_spent_controls_are_answered_at_once(headers, status, reason):
    handler, upstream, _clock = make_handler()
    response = await handler(request(1, headers))
    assert response.status == status and response.reason == reason
    assert orjson.loads(response.body)["reason"] == reason
    await settle()
    assert upstream.calls == []


async def test_a_bad_json_body_fails_only_its_caller():
    handler, upstream, _clock = make_handler()
    good = submit(handler, request(1))
    bad = await handler(request(raw=b"{oops"))
    assert bad.status == 400 and bad.reason == "invalid_body"
    assert "not valid JSON" in orjson.loads(bad.body)["detail"]
    await settle()
    upstream.calls[0].echo()
    assert (await good).status == 200 and upstream.calls[0].items == [1]


async def test_deadline_is_answered_504_before_sending_never_late():
    handler, upstream, clock = make_handler(max_in_flight=1)
    busy = submit(handler, request(0))
    await settle()
    tight = submit(handler, request(1, [(b"x-meshbatch-deadline-ms", b"20")], received_at=clock.now()))
    relaxed = submit(handler, request(2))
    await settle()
    clock.advance(0.021)
    handler.dispatcher.pump()
    await settle()
    response = await tight
    assert response.status == 504 and response.reason == "deadline_exceeded" and response.flag == "DX"
    upstream.calls[0].echo()
    await busy
    await settle()
    assert upstream.calls[1].items == [2]  # the expired item never went upstream
    upstream.calls[1].echo()
    assert (await relaxed).status == 200


async def test_deadline_flushes_early_during_a_hold():
    # A trusted model (enough batches seen): the queue goes at deadline - predicted tail - the 1 ms margin.
    handler, upstream, clock = make_handler(min_wait_ms=100, max_wait_ms=200)
    for _ in range(8):
        handler.model.observe(1, 0.002)
    task = submit(handler, request(1, [(b"x-meshbatch-deadline-ms", b"30")], received_at=clock.now()))
    await settle()
    due = handler.accumulator.next_deadline(True)
    assert due == pytest.approx(clock.now() + 0.030 - 0.002 - 0.001)
    clock.advance(0.027)
    handler.dispatcher.pump()
    await settle()
    (call,) = upstream.calls
    assert call.timeout == pytest.approx(0.003)
    call.echo()
    assert header(await task, b"x-meshbatch-flush") == b"deadline"


async def test_a_cold_route_does_not_hold_a_caller_past_its_budget():
    # No batch seen yet: the upstream's time is unknown, so a deadline flush reserves the hold as well. A budget
    # shorter than the hold goes at once, all of it left to the upstream (not held until 1 ms before it ends).
    handler, upstream, clock = make_handler(min_wait_ms=100, max_wait_ms=200)
    task = submit(handler, request(1, [(b"x-meshbatch-deadline-ms", b"30")], received_at=clock.now()))
    await settle()
    (call,) = upstream.calls
    assert call.timeout == pytest.approx(0.030)
    call.echo()
    assert header(await task, b"x-meshbatch-flush") == b"deadline"


async def test_route_timeout_caps_the_wait_in_the_queue():
    handler, _upstream, clock = make_handler(max_in_flight=1, timeout=0.5)
    submit(handler, request(0))
    await settle()
    queued = submit(handler, request(1))
    await settle()
    clock.advance(0.5)
    handler.dispatcher.pump()
    response = await queued
    assert response.status == 504 and response.reason == "deadline_exceeded"


async def test_in_flight_callers_past_their_own_deadline_get_504_the_rest_wait():
    handler, upstream, clock = make_handler()
    short = submit(handler, request(1, [(b"x-meshbatch-deadline-ms", b"10")], received_at=clock.now()))
    long = submit(handler, request(2))
    await settle()
    (call,) = upstream.calls
    assert call.timeout == pytest.approx(2.0)  # the batch lives as long as its most patient caller
    clock.advance(0.011)
    [batch] = handler.dispatcher.tasks.values()
    handler.dispatcher._expire_in_flight(batch)  # the watch timer is a real one: fire it by hand
    response = await short
    assert response.status == 504 and response.reason == "upstream_timeout"
    await settle()
    assert not long.done()
    call.echo()
    assert orjson.loads((await long).body) == {"echo": 2}


@pytest.mark.parametrize(("error", "status", "reason"), [
    (GatewayTimeout(), 504, "upstream_timeout"),
    (BadGateway("upstream_reset"), 502, "upstream_reset"),
    (Unavailable(), 503, "no_healthy_upstream"),
    (RuntimeError("bug"), 500, "internal_error"),
])
async def test_sender_errors_reach_every_caller_each_with_a_response(error, status, reason):
    handler, upstream, _clock = make_handler()
    tasks = [submit(handler, request(n)) for n in range(3)]
    await settle()
    upstream.calls[0].fail(error)
    responses = await asyncio.gather(*tasks)
    assert [r.status for r in responses] == [status] * 3
    assert all(orjson.loads(r.body)["reason"] == reason for r in responses)
    assert all(header(r, b"x-meshbatch-batch-size") == b"3" for r in responses)
    assert len({id(r) for r in responses}) == 3 and len({id(r.headers) for r in responses}) == 3


async def test_wrong_result_count_fails_the_whole_batch_with_502():
    handler, upstream, _clock = make_handler()
    tasks = [submit(handler, request(n)) for n in range(3)]
    await settle()
    upstream.calls[0].reply_json([1, 2])
    for response in await asyncio.gather(*tasks):
        assert response.status == 502 and response.reason == "upstream_result_count" and response.flag == "UPE"
        assert "3 items" in orjson.loads(response.body)["detail"]


async def test_upstream_status_maps_to_502_with_the_status_visible():
    handler, upstream, _clock = make_handler()
    tasks = [submit(handler, request(n)) for n in range(2)]
    await settle()
    upstream.calls[0].reply(503, b"overloaded", [(b"retry-after", b"3")])
    for response in await asyncio.gather(*tasks):
        payload = orjson.loads(response.body)
        assert response.status == 502 and payload["reason"] == "upstream_status_503"
        assert payload["upstream_status"] == 503 and header(response, b"retry-after") == b"3"


async def test_a_raising_codec_still_answers_everyone(monkeypatch):
    handler, upstream, _clock = make_handler()

    def explode(*args):
        raise ValueError("codec bug")

    monkeypatch.setattr(handler.codec, "decode", explode)
    tasks = [submit(handler, request(n)) for n in range(2)]
    await settle()
    upstream.calls[0].echo()
    for response in await asyncio.gather(*tasks):
        assert response.status == 502 and response.reason == "codec_error"


async def test_a_raising_encoder_answers_500_without_calling_upstream(monkeypatch):
    handler, upstream, _clock = make_handler()
    monkeypatch.setattr(handler.codec, "encode", lambda items: 1 / 0)
    response = await asyncio.wait_for(handler(request(1)), 1)
    assert response.status == 500 and upstream.calls == []
    assert handler.dispatcher.in_flight == 0


async def test_own_bug_in_admission_is_a_500_not_a_hang(monkeypatch):
    handler, _upstream, _clock = make_handler()
    monkeypatch.setattr(Controls, "read", lambda self, request: 1 / 0)
    response = await handler(request(1))
    assert response.status == 500 and orjson.loads(response.body)["reason"] == "internal_error"


async def test_envelope_gives_each_caller_its_own_status_and_headers():
    handler, upstream, _clock = make_handler(codec="envelope")
    tasks = [submit(handler, request({"n": n}, [(b"content-type", b"application/json"), (b"x-trace", b"t")],
                                     target=f"/orders/{n}".encode())) for n in range(3)]
    await settle()
    (call,) = upstream.calls
    sent = orjson.loads(call.body)["requests"]
    assert [r["url"] for r in sent] == ["/orders/0", "/orders/1", "/orders/2"]
    assert sent[0]["headers"] == {"content-type": "application/json", "x-trace": "t"}
    call.reply_json({"responses": [
        {"id": sent[2]["id"], "status": 409, "body": {"conflict": True}},
        {"id": sent[0]["id"], "status": 201, "headers": {"location": "/orders/0"}, "body": {"ok": 0}},
    ]})
    first, second, third = await asyncio.gather(*tasks)
    assert first.status == 201 and header(first, b"location") == b"/orders/0"
    assert second.status == 502 and second.reason == "missing_item_result"
    assert third.status == 409 and orjson.loads(third.body) == {"conflict": True}


async def test_metrics_count_flushes_sizes_queue_and_rejections():
    registry = Registry()
    handler, upstream, _clock = make_handler(registry=registry, max_items=2)
    tasks = [submit(handler, request(n)) for n in range(3)]
    await settle()
    for call in upstream.calls:
        call.echo()
    await asyncio.gather(*tasks)
    await handler(request(raw=b"nope"))
    text = registry.render().decode()
    assert 'meshbatch_batch_flushes_total{reason="items",route="orders"} 1.0' in text
    assert 'meshbatch_batch_flushes_total{reason="wait",route="orders"} 1.0' in text
    assert 'meshbatch_batch_size_items_count{route="orders"} 2.0' in text
    assert 'meshbatch_batch_size_items_sum{route="orders"} 3.0' in text
    assert 'meshbatch_batch_queue_seconds_count{route="orders"} 3.0' in text
    assert 'meshbatch_batch_upstream_seconds_count{route="orders"} 2.0' in text
    assert 'meshbatch_batch_items_total{route="orders"} 3.0' in text
    assert 'meshbatch_batch_upstream_calls_total{outcome="ok",route="orders"} 2.0' in text
    assert 'meshbatch_batch_rejections_total{reason="invalid_body",route="orders"} 1.0' in text
    assert 'meshbatch_batch_queue_depth{route="orders"} 0.0' in text
    assert 'meshbatch_batch_in_flight{route="orders"} 0.0' in text


async def test_summary_is_json_and_shows_each_key():
    handler, upstream, clock = make_handler(key=["header:x-tenant"], max_in_flight=1)
    submit(handler, request(1, [(b"x-tenant", b"a")]))
    await settle()
    submit(handler, request(2, [(b"x-tenant", b"b"), (b"x-meshbatch-priority", b"high")]))
    await settle()
    clock.advance(0.0125)
    summary = orjson.loads(orjson.dumps(handler.summary()))
    assert summary["route"] == "orders" and summary["queued"] == 1 and summary["in_flight"] == 1
    keys = {tuple(k["key"]): k for k in summary["keys"]}
    assert keys[("a",)]["in_flight"] == 1 and keys[("a",)]["queued"] == 0
    assert keys[("b",)]["queued"] == 1 and keys[("b",)]["oldest_ms"] == pytest.approx(12.5)
    assert keys[("b",)]["by_priority"] == {"high": 1, "normal": 0, "low": 0}
    assert summary["flushes"]["wait"] == 1 and summary["state"] == "serving"
    upstream.calls[0].echo()
    await settle()
    upstream.calls[1].echo()
    await settle()


async def test_real_clock_by_default_and_request_arrival_sets_the_deadline():
    upstream = Upstream(auto=True)
    from meshbatch.batching import BatchHandler
    from meshbatch.config.model import Batch

    handler = BatchHandler("r", Batch(), upstream, timeout=1.0, metrics=Registry())
    loop = asyncio.get_running_loop()
    response = await handler(request(5, received_at=loop.time()))
    assert response.status == 200 and orjson.loads(response.body) == {"echo": 5}
    assert upstream.calls[0].timeout <= 1.0
    stale = await handler(request(5, received_at=loop.time() - 2.0))
    assert stale.status == 504
