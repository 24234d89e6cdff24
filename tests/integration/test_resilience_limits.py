"""Local rate limits (per caller header, in items for a batching route), fault injection by header, and the
adaptive concurrency limit, through a real proxy process and real upstreams."""

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


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    fleet = Fleet().start("a", "b")
    yield fleet
    fleet.close()


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, fleet: Fleet) -> MeshbatchProcess:
    batch = {"max_items": 8, "max_wait_ms": 2, "upstream_path": "/batch"}
    routes = [
        route("tenants", "svc", {"path_prefix": "/t"},
              rate_limit=[{"key": "header:x-tenant", "rate": 0.5, "burst": 3}]),
        route("items", "svc", {"path_prefix": "/i"}, batch=batch,
              rate_limit=[{"unit": "items", "rate": 0.5, "burst": 4}, {"rate": 1000}]),
        route("faults", "svc", {"path_prefix": "/f"}, fault={"from_headers": True}),
        route("adaptive", "slow", {"path_prefix": "/c"}, timeout_ms=3000,
              adaptive_concurrency={"min_concurrency": 2, "min_rtt_requests": 20}),
    ]
    started: MeshbatchProcess = module_mesh.start(config(
        [listener("main", routes)], [cluster("svc", fleet["a"].address), cluster("slow", fleet["b"].address)]))
    return started


def get(proxy: MeshbatchProcess, path: str, **headers: str) -> httpx.Response:
    return httpx.get(proxy.url("main", path), headers={"host": "service", **headers}, timeout=5)


def test_rate_limit_per_caller_header(proxy: MeshbatchProcess) -> None:
    first = [get(proxy, "/t/1", **{"x-tenant": "alice"}) for _ in range(5)]
    assert [r.status_code for r in first] == [200, 200, 200, 429, 429]
    refused = first[-1]
    assert refused.json() == {"error": "too many requests", "reason": "rate_limited",
                              "detail": "rate limit 'header:x-tenant' of route 'tenants'"}
    assert int(refused.headers["retry-after"]) >= 1
    assert get(proxy, "/t/1", **{"x-tenant": "bob"}).status_code == 200  # another caller, another bucket
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    assert metric_value(text, "meshbatch_rate_limited_total", route="tenants") == 2
    assert metric_value(text, "meshbatch_local_replies_total", status="429", reason="rate_limited") >= 2


def test_rate_limit_counted_in_items_before_the_batcher(proxy: MeshbatchProcess) -> None:
    requests = [request_bytes("POST", "/i", body=json.dumps({"n": i}).encode(),
                              headers={"content-type": "application/json"}) for i in range(10)]
    results = asyncio.run(load(proxy.address("main"), requests, 10))
    assert Counter(r.status for r in results) == {200: 4, 429: 6}


def test_faults_asked_for_by_header(proxy: MeshbatchProcess) -> None:
    aborted = get(proxy, "/f/1", **{"x-meshbatch-fault-abort": "503"})
    assert aborted.status_code == 503 and aborted.json()["reason"] == "fault_injected"
    started = time.monotonic()
    delayed = get(proxy, "/f/2", **{"x-meshbatch-fault-delay-ms": "150"})
    assert delayed.status_code == 200 and time.monotonic() - started >= 0.15
    assert get(proxy, "/f/3", **{"x-meshbatch-fault-abort": "503", "x-meshbatch-fault-abort-percent": "0"}
               ).status_code == 200
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    assert metric_value(text, "meshbatch_faults_injected_total", route="faults", kind="abort") == 1
    assert metric_value(text, "meshbatch_faults_injected_total", route="faults", kind="delay") == 1


def test_adaptive_concurrency_sheds_a_burst_while_measuring(proxy: MeshbatchProcess, fleet: Fleet) -> None:
    fleet["b"].control(delay_ms=50)
    try:
        results = asyncio.run(load(proxy.address("main"), [request_bytes("GET", f"/c/{i}") for i in range(40)],
                                   10))
    finally:
        fleet["b"].control(delay_ms=0)
    statuses = Counter(r.status for r in results)
    assert statuses[200] >= 2 and statuses[503] >= 1, statuses  # min_concurrency 2 while min RTT is measured
    assert all(json.loads(r.body)["reason"] == "concurrency_limited" for r in results if r.status == 503)
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    assert metric_value(text, "meshbatch_concurrency_limit", route="adaptive") >= 2
    assert metric_value(text, "meshbatch_concurrency_limited_total", route="adaptive") == statuses[503]
