"""Isolating the items at fault of a refused batch: the pure plan, then the dispatcher on a fake clock with a
scripted upstream that refuses any batch holding a poisoned item, as a real one refuses a body it cannot read."""

from __future__ import annotations

import asyncio
import math
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from batching_support import Call, Upstream, header, make_handler, request, settle, submit

from meshbatch.batching.bisection import ALONE, SPLIT, UNRESOLVED, Bisection
from meshbatch.batching.isolate import IsolatePolicy
from meshbatch.http.message import Response
from meshbatch.telemetry.metrics import Registry

sys.path.insert(0, str(Path(__file__).parents[1] / "layers"))

REFUSAL = b'{"error": "item cannot be read"}'
PROBLEM = [(b"content-type", b"application/problem+json"), (b"x-upstream-secret", b"not for callers")]


def poisoned(item: Any) -> bool:
    return isinstance(item, dict) and item.get("poison") is True


def refuse_poison(call: Call, status: int = 400) -> None:
    """The upstream's rule: a batch holding a poisoned item is refused as a whole; any other is echoed."""
    if any(poisoned(item) for item in call.items):
        call.reply(status, REFUSAL, list(PROBLEM))
    else:
        call.echo()


async def drive(upstream: Upstream, tasks: list[asyncio.Task[Response]], answer: Any = refuse_poison,
                limit: int = 200) -> list[Response]:
    """Answer every pending call by `answer` until every caller has its response."""
    for _ in range(limit):
        if all(task.done() for task in tasks):
            return [task.result() for task in tasks]
        for call in upstream.pending():
            answer(call)
        await settle()
    raise AssertionError("the callers were not all answered")


def bodies(n: int, poison: set[int]) -> list[dict[str, Any]]:
    return [{"n": i, "poison": True} if i in poison else {"n": i} for i in range(n)]


# -- the plan, pure -------------------------------------------------------------------------------------------

def test_one_bad_item_among_eight_is_found_in_two_calls_per_level():
    plan = Bisection(IsolatePolicy([400]).budget(8))
    assert plan.calls_left == 12
    bad = 5
    assert plan.refused(list(range(8))) == SPLIT
    verdicts = []
    while (group := plan.next()) is not None:
        if bad in group:
            verdicts.append(plan.refused(group))
    assert verdicts == [SPLIT, SPLIT, ALONE]
    assert plan.calls == 6 == 2 * math.log2(8) and plan.splits == 3 and plan.isolated == 1


def test_the_budget_stops_splitting_and_leaves_the_rest_unresolved():
    plan = Bisection(2)
    assert plan.refused(list(range(8))) == SPLIT
    first = plan.next()
    assert first == [0, 1, 2, 3]
    assert plan.refused(first) == UNRESOLVED and plan.unresolved == 4
    assert plan.next() == [4, 5, 6, 7] and plan.next() is None
    assert plan.calls == 2 and plan.calls_left == 0


def test_a_part_not_sent_gives_its_call_back():
    plan = Bisection(2)
    plan.refused([0, 1])
    assert plan.next() == [0]
    plan.unused()
    assert plan.calls == 0 and plan.calls_left == 1


def test_the_default_budget_isolates_two_items():
    policy = IsolatePolicy([400])
    assert [policy.budget(n) for n in (1, 2, 3, 32, 64, 1000)] == [0, 4, 8, 20, 24, 40]
    assert IsolatePolicy([400], max_calls=3).budget(64) == 3


# -- the dispatcher -------------------------------------------------------------------------------------------

async def test_one_poisoned_caller_among_32_gets_the_refusal_the_others_their_answers():
    registry = Registry()
    handler, upstream, _ = make_handler(max_items=32, registry=registry)
    tasks = [submit(handler, request(body)) for body in bodies(32, {13})]
    responses = await drive(upstream, tasks)
    for i, response in enumerate(responses):
        if i == 13:
            continue
        assert response.status == 200 and orjson.loads(response.body) == {"echo": {"n": i}}
        assert header(response, b"x-meshbatch-isolated") is None
    refused = responses[13]
    assert refused.status == 400 and refused.body == REFUSAL and refused.reason == ""  # the upstream's own
    assert header(refused, b"content-type") == b"application/problem+json"
    assert header(refused, b"x-meshbatch-isolated") == b"true"
    assert header(refused, b"x-upstream-secret") is None
    assert header(refused, b"x-meshbatch-batch-size") == b"32"
    assert len(upstream.calls) == 1 + 2 * 5  # the batch, then two calls per halving
    assert upstream.calls[0].items == bodies(32, {13})
    text = registry.render().decode()
    assert 'meshbatch_batch_splits_total{route="orders"} 5.0' in text
    assert 'meshbatch_batch_isolated_total{route="orders"} 1.0' in text
    assert 'meshbatch_batch_isolation_calls_total{route="orders"} 10.0' in text
    summary = handler.summary()["isolation"]
    assert summary == {"mode": "bisect", "statuses": [400, 413, 415, 422], "max_calls": "auto", "calls": 10,
                       "splits": 5, "isolated": 1, "unresolved": 0}
    assert handler.dispatcher.in_flight == 0


async def test_two_poisoned_callers_within_the_bound():
    handler, upstream, _ = make_handler(max_items=32)
    tasks = [submit(handler, request(body)) for body in bodies(32, {3, 29})]
    responses = await drive(upstream, tasks)
    assert [i for i, r in enumerate(responses) if r.status == 400] == [3, 29]
    assert all(r.status == 200 for i, r in enumerate(responses) if i not in (3, 29))
    assert len(upstream.calls) - 1 <= 2 * 2 * 5


@pytest.mark.parametrize("status", [413, 415, 422])
async def test_every_status_that_blames_the_request_isolates(status):
    handler, upstream, _ = make_handler()
    tasks = [submit(handler, request(body)) for body in bodies(4, {0})]
    responses = await drive(upstream, tasks, lambda call: refuse_poison(call, status))
    assert [r.status for r in responses] == [status, 200, 200, 200]


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_busy_or_broken_upstream_statuses_are_not_split(status):
    handler, upstream, _ = make_handler()
    tasks = [submit(handler, request(body)) for body in bodies(4, {0})]
    responses = await drive(upstream, tasks, lambda call: refuse_poison(call, status))
    assert len(upstream.calls) == 1
    assert {(r.status, r.reason) for r in responses} == {(502, f"upstream_status_{status}")}


async def test_a_single_item_batch_refused_is_simply_its_callers_answer():
    handler, upstream, _ = make_handler()
    (response,) = await drive(upstream, [submit(handler, request({"poison": True}))])
    assert response.status == 400 and response.body == REFUSAL and len(upstream.calls) == 1
    assert handler.summary()["isolation"]["isolated"] == 1


async def test_isolate_off_keeps_the_refusal_for_every_caller():
    handler, upstream, _ = make_handler(isolate="off")
    tasks = [submit(handler, request(body)) for body in bodies(8, {2})]
    responses = await drive(upstream, tasks)
    assert len(upstream.calls) == 1
    for response in responses:
        payload = orjson.loads(response.body)
        assert response.status == 502 and payload["reason"] == "upstream_status_400"
        assert payload["upstream_status"] == 400 and REFUSAL not in response.body
    assert handler.summary()["isolation"]["mode"] == "off"


async def test_a_spent_budget_leaves_the_unresolved_callers_with_the_batch_refusal():
    handler, upstream, _ = make_handler(isolate={"max_calls": 2})
    tasks = [submit(handler, request(body)) for body in bodies(8, {1})]
    responses = await drive(upstream, tasks)
    assert len(upstream.calls) == 3
    assert [r.status for r in responses[4:]] == [200] * 4  # the clean half
    for response in responses[:4]:  # the refused half could not be split again: nobody there is blamed alone
        assert response.status == 502 and orjson.loads(response.body)["reason"] == "upstream_status_400"
        assert REFUSAL not in response.body
    assert handler.summary()["isolation"]["unresolved"] == 4


async def test_parts_use_the_batch_slot_and_the_clean_half_is_answered_at_once():
    handler, upstream, _ = make_handler(max_items=8, max_in_flight=1)
    tasks = [submit(handler, request(body)) for body in bodies(8, {6})]
    await settle()
    first = upstream.calls[0]
    refuse_poison(first)
    await settle()
    later = [submit(handler, request({"n": 100 + i})) for i in range(3)]  # queue behind the busy slot
    await settle()
    left, = upstream.pending()
    assert left.items == bodies(8, {6})[:4]
    left.echo()
    await settle()
    assert all(task.done() for task in tasks[:4])  # answered while the search goes on
    assert not any(task.done() for task in tasks[4:])
    while not all(task.done() for task in tasks):
        pending = upstream.pending()
        assert len(pending) == 1 and pending[0].items != [{"n": 100}, {"n": 101}, {"n": 102}]  # one call at a time
        assert handler.dispatcher.in_flight == 1 and handler.accumulator.queued == 3
        refuse_poison(pending[0])
        await settle()
    assert [t.result().status for t in tasks] == [200] * 6 + [400, 200]
    await settle()
    (after,) = upstream.pending()
    assert after.items == [{"n": 100}, {"n": 101}, {"n": 102}]  # the freed slot takes the queue
    after.echo()
    assert [(await t).status for t in later] == [200] * 3
    assert handler.dispatcher.in_flight == 0


async def test_a_caller_whose_deadline_passes_during_the_search_gets_504_and_is_never_sent_late():
    handler, upstream, clock = make_handler(max_items=4)
    tasks = [submit(handler, request(body)) for body in bodies(2, {0})]
    tasks += [submit(handler, request({"n": 2}, [(b"x-meshbatch-deadline-ms", b"50")], received_at=clock.now())),
              submit(handler, request({"n": 3}))]
    await settle()
    refuse_poison(upstream.calls[0])
    await settle()
    left, = upstream.pending()
    assert left.items == [{"n": 0, "poison": True}, {"n": 1}]
    clock.advance(0.060)  # the third caller's deadline passes while the left half is out
    refuse_poison(left)
    responses = await drive(upstream, tasks)
    assert responses[2].status == 504 and responses[2].reason == "upstream_timeout"
    assert [r.status for r in responses] == [400, 200, 504, 200]
    assert all({"n": 2} not in call.items for call in upstream.calls[2:])
    assert upstream.calls[-1].items == [{"n": 3}]


async def test_envelope_parts_keep_their_ids():
    handler, upstream, _ = make_handler(codec="envelope")

    def answer(call: Call) -> None:
        requests = orjson.loads(call.body)["requests"]
        if any(poisoned(r.get("body")) for r in requests):
            call.reply(422, REFUSAL, list(PROBLEM))
        else:
            call.reply_json({"responses": [{"id": r["id"], "status": 201, "body": r["body"]} for r in requests]})

    tasks = [submit(handler, request(body)) for body in bodies(4, {3})]
    responses = await drive(upstream, tasks, answer)
    assert [r.status for r in responses] == [201, 201, 201, 422]
    assert [orjson.loads(r.body) for r in responses[:3]] == bodies(3, set())
    assert [r["id"] for r in orjson.loads(upstream.calls[-1].body)["requests"]] == ["4"]


async def test_a_part_refused_with_503_goes_to_the_retry_policy_not_to_the_split():
    from layers_support import cluster, draws, target

    from meshbatch.batching.handler import BatchHandler
    from meshbatch.config.model import Batch, Retry
    from meshbatch.layers.retry import RetryPolicy
    from meshbatch.upstream.exchange import ATTEMPT

    chosen = target(cluster())
    numbers: list[int] = []

    class Routed(Upstream):
        async def __call__(self, *args: Any) -> Response:
            attempt = ATTEMPT.get()
            assert attempt is not None
            assert attempt.target in (None, chosen)  # a part goes to the target its batch went to
            attempt.target = chosen
            numbers.append(attempt.number)
            return await super().__call__(*args)

    upstream = Routed()
    rules = RetryPolicy("orders", Retry(retry_on=["5xx"], num_retries=2, backoff={"base_ms": 1}), None, draws(0.0))
    handler = BatchHandler("orders", Batch(), upstream, timeout=2.0, metrics=Registry(), retry=rules)
    tasks = [submit(handler, request(body)) for body in bodies(4, {0})]
    await settle()
    refuse_poison(upstream.calls[0])
    await settle(20)
    refuse_poison(upstream.calls[1])  # [0, 1]: refused, split
    await settle(20)
    refuse_poison(upstream.calls[2])  # [0] alone: refused, its caller's answer
    await settle(20)
    assert upstream.calls[3].items == [{"n": 1}]
    upstream.calls[3].reply(503, b"busy")  # [1] alone: the upstream is busy, not refusing the item
    await settle(20)
    assert upstream.calls[4].items == [{"n": 2}, {"n": 3}]
    upstream.calls[4].echo()
    await settle(20)  # the retry's backoff is jittered down to 0 by draws(0.0)
    assert len(upstream.calls) == 6 and upstream.calls[5].items == [{"n": 1}]  # retried, not split
    upstream.calls[5].echo()
    responses = [await task for task in tasks]
    assert [r.status for r in responses] == [400, 200, 200, 200]
    assert numbers[0] == 0 and all(n >= 1 for n in numbers[1:])


async def test_each_part_is_a_call_with_its_own_span_under_the_batch_span():
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from meshbatch.config.model import Tracing as TracingConfig
    from meshbatch.telemetry.spans import BatchSpans, format_traceparent
    from meshbatch.telemetry.tracing import Tracing

    exporter = InMemorySpanExporter()
    tracing = Tracing(TracingConfig(exporter="console", sample=1.0), exporter, synchronous=True)
    handler, upstream, _ = make_handler()
    handler.dispatcher.tracing = BatchSpans(tracing)
    caller = [(b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    tasks = [submit(handler, request(body, caller)) for body in bodies(4, {0})]
    assert [r.status for r in await drive(upstream, tasks)] == [400, 200, 200, 200]
    spans = exporter.get_finished_spans()
    (batch,) = [s for s in spans if s.name == "batch orders"]
    parts = [s for s in spans if s.name == "batch orders part"]
    assert len(parts) == len(upstream.calls) - 1 == 4
    assert batch.attributes is not None and batch.attributes["meshbatch.batch.splits"] == 2
    for part, call in zip(parts, upstream.calls[1:], strict=True):
        assert part.parent is not None and part.parent.span_id == batch.context.span_id
        assert part.attributes is not None and part.attributes["meshbatch.batch.size"] == len(call.items)
        assert header(Response(0, call.headers), b"traceparent") == format_traceparent(part.context)
    assert header(Response(0, upstream.calls[0].headers), b"traceparent") == format_traceparent(batch.context)


@pytest.mark.parametrize(("text", "mode", "max_calls"), [
    ("off", "off", None), ("bisect", "bisect", None), ("{mode: off}", "off", None), ("{max_calls: 5}", "bisect", 5),
])
def test_config_short_and_long_forms(text, mode, max_calls):
    from meshbatch.config.load import parse

    config = parse(CONFIG % text)
    isolate = config.listeners[0].routes[0].batch.isolate
    assert (isolate.mode, isolate.max_calls) == (mode, max_calls)


@pytest.mark.parametrize(("text", "error"), [
    ("{statuses: [429]}", "batch.isolate.statuses: 429 says the upstream is busy"),
    ("{statuses: [503]}", "batch.isolate.statuses[0]: must be <= 499"),
    ("sometimes", "batch.isolate.mode: must be 'bisect' or 'off'"),
])
def test_config_refuses_statuses_that_do_not_blame_the_request(text, error):
    from meshbatch.config.load import parse

    with pytest.raises(Exception, match=error.replace("[", r"\[").replace("]", r"\]")):
        parse(CONFIG % text)


CONFIG = """
listeners:
  - name: main
    listen: 127.0.0.1:0
    routes:
      - name: r
        match: {path_prefix: /}
        cluster: c
        batch: {isolate: %s}
clusters:
  - name: c
    endpoints: [127.0.0.1:1]
"""
