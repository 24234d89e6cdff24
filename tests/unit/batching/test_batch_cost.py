"""The cost budget per batch (batch.max_cost, batch.cost, batch.over_budget): the config, reading an item's cost
from hostile requests, the accumulator's cut on explicit times, and the handler on a fake clock."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from batching_support import header, item, make_handler, request, settle, submit

from meshbatch.batching.accumulator import Accumulator
from meshbatch.batching.cost import CostReader
from meshbatch.config import ConfigError, parse
from meshbatch.errors import BadRequest
from meshbatch.http.message import Request
from meshbatch.telemetry.metrics import Registry

ROUTE = ("listeners: [{name: l, listen: '127.0.0.1:0', routes: [{name: r, cluster: c, batch: {%s}}]}]\n"
         "clusters: [{name: c, endpoints: ['127.0.0.1:1']}]\n")
AT = "listeners[0].routes[0].batch"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


# config -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("keys", "expected"), [
    ("max_cost: 10", "max_cost needs cost"),
    ("cost: bytes", "cost is read for max_cost or bucket_by: set max_cost too"),
    ("max_cost: 10, cost: tokens", f"{AT}.cost"),
    ("max_cost: 10, cost: 'json:'", "must be 'bytes', 'header:NAME' or 'json:PATH'"),
    ("max_cost: 10, cost: 'json:a..b'", "json:PATH"),
    ("max_cost: 10, cost: 'header:bad name'", "header:NAME"),
    ("max_cost: 0, cost: bytes", f"{AT}.max_cost"),
    ("max_cost: -3, cost: bytes", f"{AT}.max_cost"),
    ("max_cost: 10, cost: bytes, over_budget: drop", f"{AT}.over_budget"),
])
def test_bad_cost_config_names_its_path(keys: str, expected: str) -> None:
    found = problems(ROUTE % keys)
    assert any(expected in p for p in found), found
    assert all(p.startswith(AT) for p in found), found


def test_a_good_cost_config_loads() -> None:
    config = parse(ROUTE % "max_cost: 512, cost: 'json:inputs', over_budget: alone")
    batch = config.listeners[0].routes[0].batch  # type: ignore[union-attr]
    assert (batch.max_cost, batch.cost, batch.over_budget) == (512, "json:inputs", "alone")


# reading the cost -------------------------------------------------------------------------------------------
def req(body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> Request:
    return Request(b"POST", b"/x", headers or [], body)


@pytest.mark.parametrize(("spec", "body", "cost"), [
    ("bytes", b"12345", 5),
    ("json:n", b'{"n": 7}', 7),
    ("json:n", b'{"n": 2.5}', 2.5),
    ("json:inputs", b'{"inputs": [1, 2, 3]}', 3),
    ("json:text", b'{"text": "abcd"}', 4),
    ("json:inputs.1.tokens", b'{"inputs": [{"tokens": 1}, {"tokens": [5, 6]}]}', 2),
    ("json:0", b"[9]", 9),
])
def test_cost_from_the_body(spec: str, body: bytes, cost: float) -> None:
    assert CostReader(spec).read(req(body)) == cost


def test_cost_from_a_header() -> None:
    assert CostReader("header:X-Cost").read(req(b"", [(b"x-cost", b"12")])) == 12


@pytest.mark.parametrize(("spec", "body", "headers", "says"), [
    ("json:n", b"not json", [], "not JSON"),
    ("json:n", b'{"m": 1}', [], "has no json:n"),
    ("json:n.x", b'{"n": 3}', [], "has no json:n.x"),
    ("json:a.5", b'{"a": [1]}', [], "has no json:a.5"),
    ("json:a.-1", b'{"a": [1]}', [], "has no json:a.-1"),
    ("json:n", b'{"n": -1}', [], "non-negative finite"),
    ("json:n", b'{"n": true}', [], "must be a number"),
    ("json:n", b'{"n": null}', [], "must be a number"),
    ("json:n", b'{"n": 1e999}', [], "not JSON"),
    ("json:n", b"\xff\xfe", [], "not JSON"),
    ("header:x-cost", b"", [], "missing"),
    ("header:x-cost", b"", [(b"x-cost", b"nan")], "non-negative finite"),
    ("header:x-cost", b"", [(b"x-cost", b"inf")], "non-negative finite"),
    ("header:x-cost", b"", [(b"x-cost", b"-2")], "non-negative finite"),
    ("header:x-cost", b"", [(b"x-cost", b"\xff12")], "non-negative finite"),
    ("header:x-cost", b"", [(b"x-cost", b"")], "non-negative finite"),
])
def test_a_cost_that_cannot_be_read_is_a_400(spec: str, body: bytes, headers: list[tuple[bytes, bytes]],
                                             says: str) -> None:
    with pytest.raises(BadRequest) as info:
        CostReader(spec).read(req(body, headers))
    assert info.value.reason == "bad_cost" and says in str(info.value), str(info.value)


# the accumulator ----------------------------------------------------------------------------------------------
def costed(cost: float, name: bytes) -> object:
    it = item(name)
    it.cost = cost
    return it


def test_the_budget_cuts_batches_and_names_cost_as_reason() -> None:
    acc = Accumulator(max_items=100, max_bytes=10_000, max_cost=10, hold=1.0)
    for n, cost in enumerate([4, 4, 3, 2, 30, 1]):
        acc.add(costed(cost, str(n).encode()), 0.0)  # type: ignore[arg-type]
    assert acc.next_deadline(slots_free=True) == -float("inf"), "a queue over its budget is ready at once"
    batches, _ = acc.drain_ready(0.0, limit=10)
    assert [[it.body for it in b.items] for b in batches][:3] == [[b"0", b"1"], [b"2", b"3"], [b"4"]]
    assert [b.cost for b in batches[:3]] == [8, 5, 30]
    assert [b.reason for b in batches[:3]] == ["cost", "cost", "cost"]
    assert acc.queued == 1 and acc.queues[()].cost == 1  # the last one waits for its hold


def test_under_the_budget_a_queue_waits_for_its_hold() -> None:
    acc = Accumulator(max_items=100, max_bytes=10_000, max_cost=10, hold=0.005)
    acc.add(costed(9, b"a"), 0.0)  # type: ignore[arg-type]
    assert acc.drain_ready(0.001, limit=1)[0] == []
    assert acc.next_deadline(slots_free=True) == pytest.approx(0.005)
    acc.add(costed(1, b"b"), 0.002)  # type: ignore[arg-type]
    (batch,), _ = acc.drain_ready(0.002, limit=1)
    assert batch.reason == "cost" and batch.cost == 10


def test_a_removed_item_gives_its_cost_back() -> None:
    acc = Accumulator(max_items=100, max_bytes=10_000, max_cost=10, hold=1.0)
    first = costed(6, b"a")
    acc.add(first, 0.0)  # type: ignore[arg-type]
    acc.add(costed(3, b"b"), 0.0)  # type: ignore[arg-type]
    assert acc.remove(first)  # type: ignore[arg-type]
    assert acc.queues[()].cost == 3
    acc.add(costed(7, b"c"), 0.0)  # type: ignore[arg-type]
    (batch,), _ = acc.drain_ready(0.0, limit=1)
    assert batch.reason == "cost" and [it.body for it in batch.items] == [b"b", b"c"]


# the handler ----------------------------------------------------------------------------------------------
async def test_over_budget_refuse_is_a_413_with_the_reason() -> None:
    registry = Registry()
    handler, upstream, clock = make_handler(registry=registry, max_cost=10, cost="json:n")
    response = await handler(request({"n": 11}, received_at=clock.now()))
    assert response.status == 413
    body = orjson.loads(response.body)
    assert body["reason"] == "over_budget" and "costs 11" in body["detail"] and "max_cost 10" in body["detail"]
    bad = await handler(request({"m": 1}, received_at=clock.now()))
    assert bad.status == 400 and orjson.loads(bad.body)["reason"] == "bad_cost"
    assert upstream.calls == []
    assert handler.summary()["rejections"] == {"over_budget": 1, "bad_cost": 1}


async def test_over_budget_alone_goes_alone_and_budgets_cut_batches() -> None:
    registry = Registry()
    handler, upstream, clock = make_handler(registry=registry, max_cost=10, cost="json:n", over_budget="alone",
                                            max_in_flight=1)
    first = submit(handler, request({"n": 1}, received_at=clock.now()))
    await settle()
    assert len(upstream.calls) == 1  # the slot is busy from now on: the others queue
    rest = [submit(handler, request({"n": n}, received_at=clock.now())) for n in (6, 3, 4, 25, 2)]
    await settle()
    summary = handler.summary()
    assert summary["keys"][0]["cost"] == 40  # type: ignore[index]
    assert summary["policy"]["max_cost"] == 10 and summary["policy"]["over_budget"] == "alone"  # type: ignore[index]
    for expected in ([1], [6, 3], [4], [25], [2]):
        call = upstream.pending()[0]
        assert [i["n"] for i in call.items] == expected
        call.echo()
        await settle()
    responses = await asyncio.gather(first, *rest)
    assert [header(r, b"x-meshbatch-flush") for r in responses] == [b"wait", b"cost", b"cost", b"cost", b"cost",
                                                                    b"wait"]
    flushes = handler.summary()["flushes"]
    assert flushes["cost"] == 3 and flushes["wait"] == 2  # type: ignore[index]
    text = registry.render().decode()
    assert 'meshbatch_batch_flushes_total{reason="cost",route="orders"} 3.0' in text
    assert 'meshbatch_batch_cost_count{route="orders"} 5.0' in text
    assert 'meshbatch_batch_cost_sum{route="orders"} 41.0' in text
