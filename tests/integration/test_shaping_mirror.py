"""Mirroring to a shadow cluster never affects the caller: a slow shadow adds no latency, a dead one no
error; the copies arrive (bounded) with `-shadow` on their Host, for plain requests and for whole batches."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testbed.config import cluster, config, listener, route
from testbed.fleet import Fleet, load, request_bytes
from testbed.proxy import MeshbatchProcess, metric_value


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    fleet = Fleet().start("main", "shadow")
    yield fleet
    fleet.close()


def start(mesh: Any, fleet: Fleet, **route_extra: Any) -> MeshbatchProcess:
    proxy: MeshbatchProcess = mesh.start(config(
        [listener("main", [route("orders", "primary", timeout_ms=2000, **route_extra)])],
        [cluster("primary", fleet["main"].address), cluster("shadow", fleet["shadow"].address)]))
    return proxy


def test_a_slow_or_dead_shadow_never_touches_the_caller(mesh: Any, fleet: Fleet) -> None:
    proxy = start(mesh, fleet, mirror={"cluster": "shadow", "max_in_flight": 16, "timeout_ms": 5000})
    fleet["shadow"].control(delay_ms=1500)
    n = 400
    results = asyncio.run(load(proxy.address("main"), [request_bytes("POST", f"/o/{i}", body=b"{}")
                                                       for i in range(n)], 8))
    assert Counter(r.status for r in results) == {200: n} and {r.server for r in results} == {"main"}
    assert max(r.latency for r in results) < 0.5  # the shadow's 1.5 s is never waited for
    time.sleep(1.7)
    copies = fleet["shadow"].stats()["requests"]
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    dropped = metric_value(text, "meshbatch_mirrored_total", route="orders", outcome="dropped")
    print(f"\nmirror: {copies} copies reached the slow shadow, {dropped:.0f} dropped (max_in_flight 16)")
    assert 16 <= copies <= n and copies + dropped == n
    fleet["shadow"].kill()
    results = asyncio.run(load(proxy.address("main"), [request_bytes("GET", f"/o/{i}") for i in range(100)], 4))
    assert Counter(r.status for r in results) == {200: 100}


def test_batches_are_mirrored_whole(mesh: Any, fleet: Fleet) -> None:
    batch = {"max_items": 10, "max_wait_ms": 5, "upstream_path": "/batch"}
    proxy = start(mesh, fleet, batch=batch, mirror={"cluster": "shadow"})
    n = 200
    requests = [request_bytes("POST", "/o", body=json.dumps({"n": i}).encode(),
                              headers={"content-type": "application/json"}) for i in range(n)]
    results = asyncio.run(load(proxy.address("main"), requests, 20))
    assert Counter(r.status for r in results) == {200: n}
    deadline = time.monotonic() + 5
    while fleet["shadow"].stats()["items"] < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fleet["shadow"].stats()["items"] == n == fleet["main"].stats()["items"]
    assert fleet["shadow"].stats()["batches"] == fleet["main"].stats()["batches"]
