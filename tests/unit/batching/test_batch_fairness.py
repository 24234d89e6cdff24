"""Weighted fair sharing between batch keys (batch.fairness): the deficit round robin alone, in the accumulator on
explicit times, and the handler on a fake clock with one tenant sending ten times what the others send."""

from __future__ import annotations

import asyncio

import pytest
from batching_support import header, item, make_handler, request, settle, submit

from meshbatch.batching.accumulator import Accumulator
from meshbatch.batching.fairness import FairShare
from meshbatch.config import ConfigError, parse
from meshbatch.http.message import Response

ROUTE = ("listeners: [{name: l, listen: '127.0.0.1:0', routes: [{name: r, cluster: c, batch: {%s}}]}]\n"
         "clusters: [{name: c, endpoints: ['127.0.0.1:1']}]\n")
AT = "listeners[0].routes[0].batch"


@pytest.mark.parametrize(("keys", "expected"), [
    ("fairness: {}", "fairness shares the slots between batch keys: set batch.key"),
    ("key: ['header:x-t'], fairness: {weights: {'a*': 0}}", f"{AT}.fairness.weights.a*"),
    ("key: ['header:x-t'], fairness: {weights: {'a*': many}}", f"{AT}.fairness.weights.a*"),
    ("key: ['header:x-t'], fairness: {weights: {'': 2}}", f"{AT}.fairness.weights"),
    ("key: ['header:x-t'], fairness: {default_weight: -1}", f"{AT}.fairness.default_weight"),
    ("key: ['header:x-t'], fairness: {weight: {}}", f"{AT}.fairness.weight"),
])
def test_bad_fairness_config_names_its_path(keys: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(ROUTE % keys)
    found = [str(p) for p in info.value.problems]
    assert any(expected in p for p in found), found
    assert all(p.startswith(AT) for p in found), found


def test_weights_by_pattern_first_match_wins() -> None:
    fair = FairShare({"tenant-a*": 2, "tenant-*": 0.5}, 1, quantum=8, parts=1)
    assert fair.weight((b"tenant-a1",)) == 2 and fair.weight((b"tenant-b",)) == 0.5 and fair.weight((b"x",)) == 1
    assert FairShare({"acme/big": 3}, 1, quantum=8, parts=2).weight((b"acme", b"big")) == 3
    assert fair.tenant((b"t", b"0-8")) == (b"t",)


def test_deficit_round_robin_shares_items_by_weight() -> None:
    fair = FairShare({"a": 2}, 1, quantum=4, parts=1)
    ready = {(b"a",): 4, (b"b",): 4, (b"c",): 4}
    served: list[bytes] = []
    for _ in range(12):
        key = fair.pick(ready, set(ready))
        fair.charge(key, 4, emptied=False)
        served.append(key[0])
    assert served.count(b"a") == 6 and served.count(b"b") == 3 and served.count(b"c") == 3
    assert all(window.count(b"b") >= 1 for window in (served[0:4], served[4:8], served[8:12]))


def test_light_weights_share_alike_without_spinning_the_ring() -> None:
    fair = FairShare({"light-*": 0.01}, 0.01, quantum=1, parts=1)
    keys = [(b"light-%d" % n,) for n in range(200)]
    ready = dict.fromkeys(keys, 1)
    served = []
    for _ in range(400):
        key = fair.pick(ready, set(keys))
        fair.charge(key, 1, emptied=False)
        served.append(key)
    assert served[:200] == keys and served[200:] == keys, "one batch each, in turn"


def test_a_key_with_nothing_queued_leaves_the_ring_and_its_deficit() -> None:
    fair = FairShare({}, 1, quantum=8, parts=1)
    key = fair.pick({(b"a",): 2}, {(b"a",)})
    fair.charge(key, 2, emptied=False)
    assert fair.ring[(b"a",)] == 6
    fair.pick({(b"b",): 1}, {(b"b",)})
    assert (b"a",) not in fair.ring
    key = fair.pick({(b"b",): 1}, {(b"b",)})
    fair.charge(key, 1, emptied=True)
    assert not fair.ring


def test_a_quiet_key_goes_before_a_flooding_keys_backlog() -> None:
    def order(fair: FairShare | None) -> list[bytes]:
        acc = Accumulator(max_items=4, max_bytes=10_000, fair=fair)
        for n in range(40):
            acc.add(item(b"h%d" % n, key=(b"hot",), arrived=0.0), 0.0)
        acc.add(item(b"q1", key=(b"quiet-1",), arrived=0.001), 0.001)
        acc.add(item(b"q2", key=(b"quiet-2",), arrived=0.001), 0.001)
        served = []
        while acc.queued:
            (batch,), _ = acc.drain_ready(0.002, limit=1)
            served.append(batch.key[0])
        return served

    fair = order(FairShare({}, 1, quantum=4, parts=1))
    assert fair.index(b"quiet-1") <= 2 and fair.index(b"quiet-2") <= 2
    assert order(None)[-2:] == [b"quiet-1", b"quiet-2"], "without fairness: the oldest queue first"


def test_priorities_still_come_before_turns() -> None:
    acc = Accumulator(max_items=4, max_bytes=10_000, fair=FairShare({}, 1, quantum=4, parts=1))
    acc.add(item(b"a", key=(b"a",)), 0.0)
    acc.add(item(b"b", key=(b"b",), priority=0), 0.0)
    (batch,), _ = acc.drain_ready(0.0, limit=1)
    assert batch.key == (b"b",)


async def _flood(fairness: dict[str, object] | None) -> dict[str, list[float]]:
    """60 ticks of 10 ms: `hot` sends 10 requests a tick, `quiet-1` and `quiet-2` one each; one slot, 8 items a
    batch, the upstream answers a batch a tick (8 items a tick: overloaded). Queue waits in ms, by tenant."""
    config: dict[str, object] = {"key": ["header:x-tenant"], "max_items": 8, "max_in_flight": 1}
    if fairness is not None:
        config["fairness"] = fairness
    handler, upstream, clock = make_handler(timeout=30.0, **config)
    tasks: list[tuple[str, asyncio.Task[Response]]] = []
    for tick in range(200):
        if tick < 60:
            for tenant, n in (("hot", 10), ("quiet-1", 1), ("quiet-2", 1)):
                for _ in range(n):
                    tasks.append((tenant, submit(handler, request(tick, [(b"x-tenant", tenant.encode())],
                                                                  received_at=clock.now()))))
        await settle()
        for call in upstream.pending():
            call.echo()
        clock.advance(0.010)
        handler.dispatcher.pump()
        await settle()
        if tick >= 60 and all(task.done() for _, task in tasks):
            break
    waits: dict[str, list[float]] = {}
    for tenant, task in tasks:
        response = task.result()
        assert response.status == 200
        waits.setdefault(tenant, []).append(float(header(response, b"x-meshbatch-queue-ms") or b"nan"))
    return waits


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def test_quiet_tenants_waits_hold_while_one_floods() -> None:
    fair = await _flood({"default_weight": 1})
    unfair = await _flood(None)
    quiet_fair = fair["quiet-1"] + fair["quiet-2"]
    quiet_unfair = unfair["quiet-1"] + unfair["quiet-2"]
    assert p99(quiet_fair) <= 40, f"a quiet tenant waits at most a round of three batches: {p99(quiet_fair)} ms"
    assert p99(quiet_unfair) >= 150, f"without fairness it waits behind the backlog: {p99(quiet_unfair)} ms"
    assert p99(fair["hot"]) > p99(quiet_fair), "the flooding tenant pays for its own backlog"


async def test_fairness_in_the_batchers_view() -> None:
    handler, upstream, _clock = make_handler(key=["header:x-tenant"], max_items=1, max_in_flight=1,
                                             fairness={"weights": {"tenant-a*": 2}})
    first = submit(handler, request(0, [(b"x-tenant", b"tenant-a1")]))
    await settle()
    more = [submit(handler, request(n, [(b"x-tenant", t)])) for n in range(3) for t in (b"tenant-a1", b"other")]
    await settle()
    upstream.calls[0].echo()
    await first
    await settle()
    view = handler.summary()["fairness"]
    assert view["weights"] == {"tenant-a*": 2} and view["default_weight"] == 1  # type: ignore[index]
    assert view["quantum_items"] == 1 and view["keys_in_turn"] == 2  # type: ignore[index]
    turns = {tuple(t["key"]): t for t in view["turns"]}  # type: ignore[index]
    assert turns[("tenant-a1",)]["weight"] == 2 and turns[("other",)]["weight"] == 1
    served = []
    while upstream.pending():
        call = upstream.pending()[0]
        served.append(call.key[0])
        call.echo()
        await settle()
    assert served[:3].count(b"tenant-a1") == 2, served  # weight 2: two batches a turn
    assert all(r.status == 200 for r in await asyncio.gather(*more))
