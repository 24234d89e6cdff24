"""Hashing balancers through a running proxy: a header pins plain requests to one endpoint (ring_hash), the
batch key pins a tenant's batches to one endpoint (maglev), and an ejected endpoint's keys move elsewhere."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from testbed.config import cluster, config, listener, route
from testbed.fleet import Fleet, load, request_bytes


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    fleet = Fleet().start("a", "b", "c")
    yield fleet
    fleet.close()


def test_ring_hash_pins_a_header_value_to_one_endpoint(mesh: Any, fleet: Fleet) -> None:
    proxy = mesh.start(config([listener("main", [route("all", "svc")])],
                              [cluster("svc", *fleet.addresses(), lb="ring_hash", hash_key="header:x-user")]))
    users = [f"user-{i}" for i in range(30)]
    requests = [request_bytes("GET", "/", headers={"x-user": u}) for u in users for _ in range(5)]
    results = asyncio.run(load(proxy.address("main"), requests, 6))
    seen: dict[str, set[str]] = defaultdict(set)
    for i, r in enumerate(results):
        assert r.status == 200
        seen[users[i // 5]].add(r.server)
    assert all(len(s) == 1 for s in seen.values())
    assert len({next(iter(s)) for s in seen.values()}) == 3  # 30 users spread over the three


def test_maglev_pins_a_batch_key_to_one_endpoint(mesh: Any, fleet: Fleet) -> None:
    batch = {"max_items": 8, "max_wait_ms": 2, "codec": "json-array", "upstream_path": "/batch",
             "key": ["header:x-tenant"]}
    proxy = mesh.start(config([listener("main", [route("items", "svc", batch=batch)])],
                              [cluster("svc", *fleet.addresses(), lb="maglev",
                                       lb_config={"table_size": 4099})]))
    tenants = [f"tenant-{i}" for i in range(20)]
    requests = [request_bytes("POST", "/items", body=b'{"n": 1}', headers={"x-tenant": t})
                for _ in range(6) for t in tenants]
    results = asyncio.run(load(proxy.address("main"), requests, 40))
    seen: dict[str, set[str]] = defaultdict(set)
    for i, r in enumerate(results):
        assert r.status == 200, r.body
        seen[tenants[i % 20]].add(json.loads(r.body)["server"])
    assert all(len(s) == 1 for s in seen.values()), seen
    assert len({next(iter(s)) for s in seen.values()}) >= 2
