"""Bounded loads through a running proxy: one hot key sent by many callers at once stays on its endpoint with
plain `ring_hash` / `maglev`, and spills onto the others with `lb_config.hash_balance_factor` (the proxy's own
requests in flight set the bound); answered one at a time, the same key goes home again."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from testbed.config import cluster, config, listener, route
from testbed.fleet import Fleet, load, request_bytes


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    fleet = Fleet().start("a", "b", "c")
    for name in ("a", "b", "c"):
        fleet[name].control(delay_ms=100)  # answers overlap: 12 callers keep 12 requests in flight
    yield fleet
    fleet.close()


def _servers(proxy: Any, concurrency: int, n: int = 24) -> Counter[str]:
    requests = [request_bytes("GET", "/", headers={"x-tenant": "hot"}) for _ in range(n)]
    results = asyncio.run(load(proxy.address("main"), requests, concurrency))
    assert all(r.status == 200 for r in results), [r.status for r in results]
    return Counter(r.server for r in results)


@pytest.mark.parametrize("lb", ["ring_hash", "maglev"])
def test_a_hot_key_spills_only_with_the_bound(mesh: Any, fleet: Fleet, lb: str) -> None:
    clusters = [cluster("plain", *fleet.addresses(), lb=lb, hash_key="header:x-tenant"),
                cluster("bounded", *fleet.addresses(), lb=lb, hash_key="header:x-tenant",
                        lb_config={"hash_balance_factor": 125})]
    proxy = mesh.start(config([listener("main", [route("plain", "plain", {"headers": [
        {"name": "x-bound", "exact": "no"}]}), route("bounded", "bounded")])], clusters))
    home = _servers(proxy, 1, 3)
    assert len(home) == 1  # one at a time: always within the bound, so the key's own endpoint
    requests = [request_bytes("GET", "/", headers={"x-tenant": "hot", "x-bound": "no"}) for _ in range(24)]
    plain = Counter(r.server for r in asyncio.run(load(proxy.address("main"), requests, 12)))
    assert plain == Counter({next(iter(home)): 24})
    spread = _servers(proxy, 12)
    assert len(spread) >= 2 and spread[next(iter(home))] < 24, spread
