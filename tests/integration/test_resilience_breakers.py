"""Circuit breakers against real upstream processes: an endpoint's breaker opens after consecutive failures,
probes, and closes again; the cluster's request threshold answers 503 at once instead of queueing, and its
connection threshold makes requests wait for a connection (as Envoy does) without ever crossing it."""

from __future__ import annotations

import asyncio
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
    fleet = Fleet().start("a", "b", "c")
    yield fleet
    fleet.close()


def run(proxy: MeshbatchProcess, n: int, concurrency: int = 1) -> list[Any]:
    return asyncio.run(load(proxy.address("main"), [request_bytes("GET", f"/r/{i}") for i in range(n)],
                            concurrency))


def test_endpoint_breaker_opens_probes_and_closes(mesh: Any, fleet: Fleet) -> None:
    breakers = {"endpoint": {"consecutive_failures": 3, "open_ms": 300, "max_open_ms": 300}}
    proxy: MeshbatchProcess = mesh.start(config([listener("main", [route("all", "svc", timeout_ms=2000)])],
                                                [cluster("svc", *fleet.addresses(), circuit_breakers=breakers)]))
    fleet["c"].control(status=500)
    results = run(proxy, 300)
    failures = [r for r in results if r.status != 200]
    assert {r.server for r in failures} == {"c"}
    assert 3 <= len(failures) <= 3 + 2  # the trip, and at most a probe or two while the test ran
    clusters = httpx.get(proxy.url("admin", "/clusters"), timeout=5).json()["clusters"][0]["endpoints"]
    c = next(e for e in clusters if e["address"] == fleet["c"].address)
    assert c["health_flags"] == ["circuit_breaker_open"]
    fleet["c"].control(status=200)
    time.sleep(0.4)
    results = run(proxy, 90)
    assert Counter(r.status for r in results) == {200: 90}
    assert Counter(r.server for r in results)["c"] >= 20  # the probe succeeded: back in balancing
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    for state in ("open", "half_open", "closed"):
        assert metric_value(text, "meshbatch_endpoint_breaker_transitions_total", cluster="svc",
                            endpoint=fleet["c"].address, state=state) >= 1, state


def test_cluster_max_requests_answers_503_at_once(mesh: Any, fleet: Fleet) -> None:
    proxy: MeshbatchProcess = mesh.start(config(
        [listener("main", [route("all", "svc", timeout_ms=3000)])],
        [cluster("svc", *fleet.addresses(), circuit_breakers={"max_requests": 2})]))
    for name in ("a", "b", "c"):
        fleet[name].control(delay_ms=300)
    results = run(proxy, 12, concurrency=6)
    statuses = Counter(r.status for r in results)
    assert statuses[200] >= 2 and statuses[503] >= 4, statuses
    refused = [r for r in results if r.status == 503]
    assert all(b'"max_requests_overflow"' in r.body for r in refused)
    assert max(r.latency for r in refused) < 0.2  # refused at once, never queued behind the slow ones
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    assert metric_value(text, "meshbatch_circuit_breaker_overflow_total", cluster="svc",
                        reason="max_requests") == statuses[503]


def test_cluster_max_connections_makes_requests_wait_without_crossing_it(mesh: Any, fleet: Fleet) -> None:
    proxy: MeshbatchProcess = mesh.start(config(
        [listener("main", [route("all", "svc", timeout_ms=5000)])],
        [cluster("svc", *fleet.addresses(), lb="round_robin", circuit_breakers={"max_connections": 2})]))
    for name in ("a", "b", "c"):
        fleet[name].control(delay_ms=100)
    results = run(proxy, 12, concurrency=6)
    assert Counter(r.status for r in results) == {200: 12}  # none refused: they waited for a connection
    assert Counter(r.server for r in results).keys() == {"a", "b", "c"}  # idle connections were handed over
    assert max(r.latency for r in results) >= 0.2  # some did wait behind another exchange
    clusters = httpx.get(proxy.url("admin", "/clusters"), timeout=5).json()["clusters"][0]["endpoints"]
    assert sum(e["connections"]["open"] for e in clusters) <= 2
    assert sum(e["connections"]["connects"] for e in clusters) >= 3
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    assert metric_value(text, "meshbatch_circuit_breaker_overflow_total", cluster="svc",
                        reason="max_connections") >= 1
