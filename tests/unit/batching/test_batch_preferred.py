"""Preferred batch sizes (batch.preferred_sizes, batch.pad_to_preferred): the config, the sizes alone, the
accumulator's hold and cut on explicit times, and padding through the handler on a fake clock."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from batching_support import header, item, make_handler, request, settle, submit

from meshbatch.batching.accumulator import Accumulator
from meshbatch.batching.preferred import PreferredSizes
from meshbatch.config import ConfigError, parse
from meshbatch.telemetry.metrics import Registry

ROUTE = ("listeners: [{name: l, listen: '127.0.0.1:0', routes: [{name: r, cluster: c, batch: {%s}}]}]\n"
         "clusters: [{name: c, endpoints: ['127.0.0.1:1']}]\n")
AT = "listeners[0].routes[0].batch"


@pytest.mark.parametrize(("keys", "expected"), [
    ("preferred_sizes: [8, 4]", "preferred_sizes must rise: 4 follows 8"),
    ("preferred_sizes: [0, 4]", f"{AT}.preferred_sizes[0]"),
    ("max_items: 16, preferred_sizes: [8, 32]", "preferred_sizes: 32 is more than max_items (16)"),
    ("pad_to_preferred: {item: 0}", "pad_to_preferred pads to preferred_sizes: set them"),
    ("max_items: 64, preferred_sizes: [8], pad_to_preferred: {item: 0}",
     "the largest preferred size must be max_items"),
    ("max_items: 8, preferred_sizes: [8], pad_to_preferred: {}", f"{AT}.pad_to_preferred.item"),
    ("max_items: 8, preferred_sizes: [8], pad_to_preferred: {item: 0, items: 1}", f"{AT}.pad_to_preferred.items"),
    ("max_items: 8, preferred_sizes: [8], codec: grpc, pad_to_preferred: {item: 0}", "not with codec: grpc"),
    ("preferred_sizes: 8", f"{AT}.preferred_sizes"),
    ("max_items: 8, preferred_sizes: [8], pad_to_preferred: {item: {1: 2}}", "must be a JSON value"),
])
def test_bad_preferred_config_names_its_path(keys: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(ROUTE % keys)
    found = [str(p) for p in info.value.problems]
    assert any(expected in p for p in found), found
    assert all(p.startswith(AT) for p in found), found


def test_sizes_cut_and_pad() -> None:
    sizes = PreferredSizes([4, 8, 16], max_wait=0.005)
    assert sizes.short(3) and not sizes.short(4)
    assert [sizes.cut(n, 16) for n in (3, 4, 7, 8, 15, 16, 40)] == [3, 4, 4, 8, 8, 16, 16]
    assert sizes.cut(40, 12) == 8
    assert [sizes.pad_to(n) for n in (1, 4, 5, 9, 16, 17)] == [4, 4, 8, 16, 16, 17]
    assert sizes.padding([item()], (), 0.0) == [], "no padding without pad_to_preferred"


def test_a_short_queue_holds_up_to_the_wait_bound() -> None:
    acc = Accumulator(max_items=16, max_bytes=10_000, preferred=PreferredSizes([4, 8], max_wait=0.005))
    for n in range(3):
        acc.add(item(b"%d" % n, arrived=0.0), 0.0)
    assert acc.drain_ready(0.0, limit=1)[0] == [], "short of 4: holds"
    assert acc.next_deadline(slots_free=True) == pytest.approx(0.005)
    acc.add(item(b"3", arrived=0.001), 0.001)
    (batch,), _ = acc.drain_ready(0.001, limit=1)
    assert len(batch.items) == 4 and batch.reason == "wait", "reached 4: goes"
    for _ in range(2):
        acc.add(item(b"x", arrived=0.002), 0.002)
    assert acc.drain_ready(0.0069, limit=1)[0] == []
    (batch,), _ = acc.drain_ready(0.007, limit=1)
    assert len(batch.items) == 2 and batch.padding == 0, "the wait bound passed: it goes as it is"


def test_a_queue_past_a_preferred_size_is_cut_at_it() -> None:
    acc = Accumulator(max_items=16, max_bytes=10_000, preferred=PreferredSizes([4, 8], max_wait=0.005))
    for n in range(11):
        acc.add(item(b"%d" % n, arrived=0.0), 0.0)
    (batch,), _ = acc.drain_ready(0.0, limit=1)
    assert len(batch.items) == 8 and acc.queued == 3
    assert acc.drain_ready(0.001, limit=1)[0] == [], "the rest is short of 4: it holds"


def test_full_and_draining_queues_are_not_held() -> None:
    acc = Accumulator(max_items=3, max_bytes=10_000, preferred=PreferredSizes([2, 3], max_wait=1.0))
    acc.add(item(b"a"), 0.0)
    acc.draining = True
    (batch,), _ = acc.drain_ready(0.0, limit=1)
    assert batch.reason == "drain" and len(batch.items) == 1


def test_padding_fills_to_the_next_preferred_size() -> None:
    sizes = PreferredSizes([4, 8], max_wait=0.005, pad_body=b'{"pad":true}')
    acc = Accumulator(max_items=8, max_bytes=10_000, preferred=sizes)
    for n in range(5):
        acc.add(item(b"%d" % n, key=(b"k",), arrived=0.0), 0.0)
    (batch,), _ = acc.drain_ready(0.0, limit=1)
    assert len(batch.items) == 4 and batch.padding == 0
    (batch,), _ = acc.drain_ready(0.005, limit=1)
    assert [it.body for it in batch.items] == [b"4", *[b'{"pad":true}'] * 3] and batch.padding == 3
    assert all(not it.waiters and it.key == (b"k",) for it in batch.items[1:])


async def test_padding_answers_are_dropped_and_counted() -> None:
    registry = Registry()
    handler, upstream, clock = make_handler(registry=registry, max_items=4, max_wait_ms=5, preferred_sizes=[2, 4],
                                            pad_to_preferred={"item": {"pad": True}})
    tasks = [submit(handler, request({"n": n})) for n in range(3)]
    await settle()
    (call,) = upstream.calls
    assert call.items == [{"n": 0}, {"n": 1}]
    clock.advance(0.005)
    handler.dispatcher.pump()
    await settle()
    assert upstream.calls[1].items == [{"n": 2}, {"pad": True}]
    for c in upstream.calls:
        c.echo()
    responses = await asyncio.gather(*tasks)
    assert [orjson.loads(r.body)["echo"] for r in responses] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert header(responses[2], b"x-meshbatch-batch-size") == b"2"
    view = handler.summary()["preferred"]
    assert view == {"sizes": [2, 4], "max_wait_ms": 5.0, "pad": True, "padding_items": 1}
    assert 'meshbatch_batch_padding_items_total{route="orders"} 1.0' in registry.render().decode()
