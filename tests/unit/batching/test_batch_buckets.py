"""Shape buckets (batch.bucket_by): the config, the accumulator's per-bucket hold bound on explicit times, and the
handler on a fake clock keeping items of different cost apart."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from batching_support import item, make_handler, request, settle, submit

from meshbatch.batching.accumulator import Accumulator
from meshbatch.batching.buckets import Buckets
from meshbatch.config import ConfigError, parse
from meshbatch.config.model import BucketBy
from meshbatch.telemetry.metrics import Registry

ROUTE = ("listeners: [{name: l, listen: '127.0.0.1:0', routes: [{name: r, cluster: c, batch: {%s}}]}]\n"
         "clusters: [{name: c, endpoints: ['127.0.0.1:1']}]\n")
AT = "listeners[0].routes[0].batch"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(("keys", "expected"), [
    ("bucket_by: {boundaries: [8]}", "bucket_by needs a cost"),
    ("bucket_by: {cost: bytes}", f"{AT}.bucket_by.boundaries"),
    ("bucket_by: {cost: bytes, boundaries: []}", f"{AT}.bucket_by.boundaries"),
    ("bucket_by: {cost: bytes, boundaries: [64, 8]}", "boundaries must rise: 8 follows 64"),
    ("bucket_by: {cost: bytes, boundaries: [8, 8]}", "boundaries must rise"),
    ("bucket_by: {cost: bytes, boundaries: [0]}", f"{AT}.bucket_by.boundaries[0]: must be > 0"),
    ("bucket_by: {cost: size, boundaries: [8]}", f"{AT}.bucket_by.cost"),
    ("bucket_by: {cost: bytes, boundaries: [8], max_hold_ms: [1, 2, 3]}", "one per bucket, 2 for 1 boundaries"),
    ("bucket_by: {cost: bytes, boundaries: [8], max_hold_ms: -1}", f"{AT}.bucket_by.max_hold_ms"),
    ("bucket_by: {cost: bytes, boundaries: [8], hold: 1}", f"{AT}.bucket_by.hold"),
])
def test_bad_bucket_config_names_its_path(keys: str, expected: str) -> None:
    found = problems(ROUTE % keys)
    assert any(expected in p for p in found), found
    assert all(p.startswith(AT) for p in found), found


def test_bucket_by_may_share_the_cost_of_max_cost() -> None:
    config = parse(ROUTE % "max_cost: 100, cost: 'json:n', bucket_by: {boundaries: [8, 32]}")
    batch = config.listeners[0].routes[0].batch  # type: ignore[union-attr]
    assert batch.bucket_by is not None and batch.bucket_by.cost is None


def test_bucket_by_reads_batch_cost_without_a_budget() -> None:
    config = parse(ROUTE % "cost: 'header:x-len', bucket_by: {boundaries: [8]}")
    batch = config.listeners[0].routes[0].batch  # type: ignore[union-attr]
    assert batch.max_cost is None and batch.cost == "header:x-len"


def test_bucket_names_and_indexes() -> None:
    buckets = Buckets(BucketBy(cost="bytes", boundaries=[8, 32], max_hold_ms=[5, 5, 1]), key_parts=1)
    assert buckets.names == ["0-8", "8-32", "32+"]
    assert [buckets.index(c) for c in (0, 7.9, 8, 31, 32, 1e9)] == [0, 0, 1, 1, 2, 2]
    assert buckets.holds == {b"0-8": 0.005, b"8-32": 0.005, b"32+": 0.001}
    assert buckets.split((b"acme", b"8-32")) == ((b"acme",), "8-32")


def test_a_bucket_is_held_at_most_its_own_bound() -> None:
    acc = Accumulator(max_items=100, max_bytes=10_000, hold=0.020, hold_bounds={b"rare": 0.002})
    acc.add(item(b"a", key=(b"common",), arrived=0.0), 0.0)
    acc.add(item(b"b", key=(b"rare",), arrived=0.0), 0.0)
    assert acc.next_deadline(slots_free=True) == pytest.approx(0.002)
    assert acc.drain_ready(0.001, limit=4)[0] == []
    (batch,), _ = acc.drain_ready(0.002, limit=4)
    assert batch.key == (b"rare",) and batch.reason == "wait"
    assert acc.next_deadline(slots_free=True) == pytest.approx(0.020)
    assert acc.drain_ready(0.019, limit=4)[0] == []
    (batch,), _ = acc.drain_ready(0.020, limit=4)
    assert batch.key == (b"common",)


def test_a_lower_route_hold_wins_over_the_bound() -> None:
    acc = Accumulator(max_items=100, max_bytes=10_000, hold=0.001, hold_bounds={b"b": 0.010})
    acc.add(item(b"x", key=(b"b",), arrived=0.0), 0.0)
    assert acc.next_deadline(slots_free=True) == pytest.approx(0.001)


async def test_items_of_different_cost_never_share_a_batch() -> None:
    registry = Registry()
    handler, upstream, _clock = make_handler(registry=registry, key=["header:x-tenant"], max_in_flight=1,
                                            bucket_by={"cost": "json:text", "boundaries": [8]})
    tenant = [(b"x-tenant", b"acme")]
    first = submit(handler, request({"text": "a"}, tenant))
    await settle()
    texts = ["ab", "a long sentence", "abc", "another long one", "x"]
    rest = [submit(handler, request({"text": t}, tenant)) for t in texts]
    await settle()
    summary = handler.summary()
    keys = {k["bucket"]: k for k in summary["keys"]}  # type: ignore[attr-defined, index]
    assert keys["0-8"]["key"] == ["acme"] and keys["0-8"]["queued"] == 3 and keys["0-8"]["in_flight"] == 1
    assert keys["8+"]["queued"] == 2
    assert summary["buckets"] == [{"bucket": "0-8", "max_hold_ms": None, "items": 4},
                                  {"bucket": "8+", "max_hold_ms": None, "items": 2}]
    upstream.calls[0].echo()
    await first
    await settle()
    upstream.pending()[0].echo()  # the oldest queue first: the short ones
    await settle()
    upstream.pending()[0].echo()
    responses = await asyncio.gather(*rest)
    sent = [[i["text"] for i in call.items] for call in upstream.calls]
    assert sent == [["a"], ["ab", "abc", "x"], ["a long sentence", "another long one"]]
    assert (b"x-tenant", b"acme") in upstream.calls[2].headers
    assert [orjson.loads(r.body)["echo"]["text"] for r in responses] == texts
    text = registry.render().decode()
    assert 'meshbatch_batch_bucket_items_total{bucket="8+",route="orders"} 2.0' in text


async def test_a_rare_bucket_goes_at_its_bound_while_the_common_one_holds() -> None:
    handler, upstream, clock = make_handler(min_wait_ms=20, max_wait_ms=20, max_in_flight=4,
                                            bucket_by={"cost": "bytes", "boundaries": [10], "max_hold_ms": [20, 2]})
    common = [submit(handler, request("c")) for _ in range(3)]
    rare = submit(handler, request("r" * 20))
    await settle()
    assert upstream.calls == []
    clock.advance(0.002)
    handler.dispatcher.pump()
    await settle()
    assert [len(call.items) for call in upstream.calls] == [1] and upstream.calls[0].items == ["r" * 20]
    clock.advance(0.018)
    handler.dispatcher.pump()
    await settle()
    assert [len(call.items) for call in upstream.calls] == [1, 3]
    for call in upstream.calls:
        call.echo()
    assert all(r.status == 200 for r in await asyncio.gather(rare, *common))


async def test_buckets_by_the_batch_cost_without_a_budget() -> None:
    handler, upstream, _clock = make_handler(cost="header:x-len", bucket_by={"boundaries": [8]})
    tasks = [submit(handler, request(n, [(b"x-len", length)])) for n, length in enumerate([b"3", b"30", b"4"])]
    bad = await handler(request(9, [(b"x-len", b"lots")]))
    assert bad.status == 400 and orjson.loads(bad.body)["reason"] == "bad_cost"
    await settle()
    assert sorted(call.items for call in upstream.calls) == [[0, 2], [1]]
    for call in upstream.calls:
        call.echo()
    assert all(r.status == 200 for r in await asyncio.gather(*tasks))
