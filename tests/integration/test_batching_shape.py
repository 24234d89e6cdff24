"""Batch shape through `meshbatch run` with a real upstream and real sockets: the cost budget per batch
(batch.max_cost) cuts batches by the items' summed cost, refuses or isolates an item costing more than a whole
batch may, and reports the flush reason `cost` in the response header, the metrics and /batchers; shape buckets
(batch.bucket_by) keep short and long items in separate batches, a rare bucket going at its own hold bound while
a common one holds; fair tenants (batch.fairness) keep a quiet tenant's wait bounded while another floods;
preferred sizes (batch.preferred_sizes) hold a lone item up to max_wait_ms and pad batches to exact sizes, the
padding's answers dropped."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from testbed.batch_upstream import BatchUpstream, Callers, Plug, batch_route, serving, wait_until
from testbed.config import cluster, config, listener
from testbed.proxy import MeshbatchProcess

upstream = pytest.fixture(scope="module", name="upstream")(serving)


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstream: BatchUpstream) -> MeshbatchProcess:
    routes = [
        batch_route("tokens", "/tokens/", "/b/json-array/ok", max_cost=10, cost="json:tokens"),
        batch_route("alone", "/alone/", "/b/json-array/ok", max_cost=10, cost="header:x-cost", over_budget="alone"),
        batch_route("shapes", "/shapes/", "/b/json-array/ok", key=["header:x-tenant"],
                    bucket_by={"cost": "bytes", "boundaries": [32]}),
        batch_route("fair", "/fair/", "/b/json-array/ok?ms=10", key=["header:x-tenant"], max_items=4,
                    fairness={"weights": {"quiet-*": 1}, "default_weight": 1}),
        batch_route("pref", "/pref/", "/b/json-array/ok", max_items=4, max_wait_ms=300, max_in_flight=4,
                    preferred_sizes=[2, 4], pad_to_preferred={"item": {"pad": True}}),
        batch_route("rare", "/rare/", "/b/json-array/ok", min_wait_ms=1000, max_wait_ms=1000, max_in_flight=4,
                    bucket_by={"cost": "bytes", "boundaries": [32], "max_hold_ms": [1000, 0]}),
    ]
    process: MeshbatchProcess = module_mesh.start(config([listener("main", routes)],
                                                         [cluster("batch", upstream.address)]))
    return process


@pytest.fixture
def callers(proxy: MeshbatchProcess, upstream: BatchUpstream) -> Iterator[Callers]:
    upstream.reset()
    with Callers(proxy.url("main"), proxy.admin_url) as c:
        yield c
        upstream.release()


def test_the_cost_budget_cuts_batches_by_summed_cost(callers: Callers, upstream: BatchUpstream) -> None:
    costs = [4, 4, 3, 2, 6, 1]
    upstream.hold()  # a first batch held in flight: the others queue behind the only slot
    plug = callers.post("/tokens/plug", {"tokens": 1})
    wait_until(lambda: callers.batcher("tokens")["in_flight"] == 1, 5, "the first batch in flight")
    try:
        futures = []
        for n, tokens in enumerate(costs):  # one at a time, so the queue keeps their order
            futures.append(callers.post("/tokens/x", {"n": n, "tokens": tokens}))
            callers.wait_queued("tokens", n + 1)
        summary = callers.batcher("tokens")
        assert summary["keys"][0]["cost"] == sum(costs)
        assert summary["policy"]["max_cost"] == 10 and summary["policy"]["cost"] == "json:tokens"
    finally:
        upstream.release()
    assert plug.result(10).status_code == 200
    responses = [f.result(10) for f in futures]
    assert all(r.status_code == 200 for r in responses)
    sent = [[item["tokens"] for item in b.items] for b in upstream.snapshot()[1:]]
    assert sent == [[4, 4], [3, 2], [6, 1]]
    assert [r.headers["x-meshbatch-flush"] for r in responses] == ["cost"] * 4 + ["wait"] * 2
    assert callers.batcher("tokens")["flushes"]["cost"] >= 2
    assert callers.metric("meshbatch_batch_flushes_total", route="tokens", reason="cost") >= 2
    assert callers.metric("meshbatch_batch_cost_sum", route="tokens") >= sum(costs)


def test_an_item_over_the_budget_is_refused_with_413(callers: Callers, upstream: BatchUpstream) -> None:
    response = callers.call("/tokens/x", {"tokens": "a string of 27 characters.."})
    assert response.status_code == 413
    assert response.json()["reason"] == "over_budget"
    assert "costs 27" in response.json()["detail"] and "max_cost 10" in response.json()["detail"]
    bad = callers.call("/tokens/x", {"no": "tokens"})
    assert bad.status_code == 400 and bad.json()["reason"] == "bad_cost"
    assert upstream.snapshot() == []
    assert callers.metric("meshbatch_batch_rejections_total", route="tokens", reason="over_budget") >= 1


def test_over_budget_alone_sends_the_item_by_itself(callers: Callers, upstream: BatchUpstream) -> None:
    with Plug(callers, upstream, "/alone/plug", "alone", headers={"x-cost": "1"}):
        futures = []
        for n, cost in enumerate(["2", "50", "3"]):
            futures.append(callers.post("/alone/x", {"n": n}, headers={"x-cost": cost}))
            callers.wait_queued("alone", n + 1)
    responses = [f.result(10) for f in futures]
    assert [r.status_code for r in responses] == [200, 200, 200]
    sent = [[item["n"] for item in b.items] for b in upstream.snapshot()[1:]]
    assert sent == [[0], [1], [2]]
    bad = callers.call("/alone/x", {"n": 9}, headers={"x-cost": "-1"})
    assert bad.status_code == 400 and bad.json()["reason"] == "bad_cost"


def test_shape_buckets_keep_short_and_long_items_apart(callers: Callers, upstream: BatchUpstream) -> None:
    tenant = {"x-tenant": "acme"}
    bodies = ["s1", "L" * 40, "s2", "M" * 50, "s3"]
    with Plug(callers, upstream, "/shapes/plug", "shapes", headers=tenant):
        futures = []
        for n, text in enumerate(bodies):
            futures.append(callers.post("/shapes/x", {"t": text}, headers=tenant))
            callers.wait_queued("shapes", n + 1)
        summary = callers.batcher("shapes")
        queued = {k["bucket"]: k["queued"] for k in summary["keys"]}
        assert queued == {"0-32": 3, "32+": 2}
        assert {k["key"][0] for k in summary["keys"]} == {"acme"}
        assert [b["bucket"] for b in summary["buckets"]] == ["0-32", "32+"]
    assert [f.result(10).json()["echo"]["t"] for f in futures] == bodies
    sent = [[item["t"] for item in b.items] for b in upstream.snapshot()[1:]]
    assert sorted(sent) == sorted([["s1", "s2", "s3"], ["L" * 40, "M" * 50]])
    assert all(b.headers.get("x-tenant") == "acme" for b in upstream.snapshot())
    assert callers.metric("meshbatch_batch_bucket_items_total", route="shapes", bucket="32+") >= 2


def test_a_rare_bucket_goes_at_its_own_bound(callers: Callers, upstream: BatchUpstream) -> None:
    started = time.monotonic()
    short = callers.post("/rare/x", {"t": "s"})
    long = callers.post("/rare/x", {"t": "L" * 60})
    long_response = long.result(10)
    long_took = time.monotonic() - started
    short_response = short.result(10)
    short_took = time.monotonic() - started
    assert long_response.status_code == 200 and short_response.status_code == 200
    assert short_took >= 1.0, "the common bucket holds min_wait_ms"
    assert long_took < 0.8, f"the rare bucket's bound is 0 ms, it took {long_took:.3f}s"
    assert callers.batcher("rare")["buckets"][1]["max_hold_ms"] == 0


def test_quiet_tenants_wait_a_round_while_one_floods(callers: Callers, upstream: BatchUpstream) -> None:
    """`hot` keeps 40 requests in flight, `quiet-1` and `quiet-2` one each (ten times fewer than hot's share of
    the callers, and far fewer items): one slot of 4 items, a 10 ms upstream. Without fairness a quiet request
    waits behind hot's backlog (about 10 batches); with it, at most one round of the three keys."""
    stop = time.monotonic() + 1.5
    sent: dict[str, float] = {}

    def loop(tenant: str, worker: int) -> int:
        n = 0
        while time.monotonic() < stop:
            name = f"{tenant}-{worker}-{n}"
            sent[name] = time.monotonic()
            response = callers.call("/fair/x", {"id": name}, headers={"x-tenant": tenant})
            assert response.status_code == 200, response.text
            n += 1
        return n

    futures = [callers.pool.submit(loop, "hot", w) for w in range(40)]
    futures += [callers.pool.submit(loop, tenant, 0) for tenant in ("quiet-1", "quiet-2")]
    done = [f.result(20) for f in futures]
    batches = upstream.snapshot()
    arrivals = [b.at for b in batches]
    where = {item["id"]: index for index, b in enumerate(batches) for item in b.items}
    ahead = []
    for name, at in sent.items():
        if name.startswith("quiet") and name in where:
            ahead.append(sum(1 for t in arrivals[:where[name]] if t > at))
    assert sum(done[40:]) >= 20 and len(ahead) >= 20, (done, len(ahead))
    assert max(ahead) <= 4, f"batches sent between a quiet request and its own batch: {sorted(ahead)[-10:]}"
    assert sum(done[:40]) > sum(done[40:]), "the flooding tenant still gets its share"
    turns = callers.batcher("fair")["fairness"]
    assert turns["default_weight"] == 1 and turns["weights"] == {"quiet-*": 1}


def test_preferred_sizes_hold_then_pad(callers: Callers, upstream: BatchUpstream) -> None:
    started = time.monotonic()
    alone = callers.call("/pref/x", {"n": 0})
    took = time.monotonic() - started
    assert alone.status_code == 200 and alone.json()["echo"] == {"n": 0}
    assert took >= 0.3, "a lone item is held up to max_wait_ms for a second one"
    assert alone.headers["x-meshbatch-batch-size"] == "2"
    assert upstream.snapshot()[0].items == [{"n": 0}, {"pad": True}]
    pair = [callers.post("/pref/x", {"n": n}) for n in (1, 2)]
    assert [f.result(10).json()["echo"]["n"] for f in pair] == [1, 2]
    sizes = [b.size for b in upstream.snapshot()]
    assert set(sizes) <= {2, 4}, sizes
    view = callers.batcher("pref")["preferred"]
    assert view["sizes"] == [2, 4] and view["pad"] is True and view["padding_items"] >= 1
    assert callers.metric("meshbatch_batch_padding_items_total", route="pref") >= 1
