"""Outlier detection against real upstream processes that fail, die and come back mid-load: traffic moves
away within the configured thresholds and returns; every request gets exactly one answer."""

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
from testbed.proxy import MeshbatchProcess

OUTLIER = {"consecutive_5xx": 5, "consecutive_gateway_failure": 5, "interval_ms": 500,
           "base_ejection_time_ms": 1500, "max_ejection_percent": 34}


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    fleet = Fleet().start("a", "b", "c")
    yield fleet
    fleet.close()


def endpoints(proxy: MeshbatchProcess) -> dict[str, dict[str, Any]]:
    body = httpx.get(proxy.url("admin", "/clusters"), timeout=5).json()
    return {e["address"]: e for e in body["clusters"][0]["endpoints"]}


def start(mesh: Any, fleet: Fleet, **extra: Any) -> MeshbatchProcess:
    spec = cluster("svc", *fleet.addresses(), outlier_detection=OUTLIER, **extra)
    proxy: MeshbatchProcess = mesh.start(config([listener("main", [route("all", "svc", timeout_ms=2000)])],
                                                [spec]))
    return proxy


def run(proxy: MeshbatchProcess, n: int, concurrency: int = 4) -> list[Any]:
    return asyncio.run(load(proxy.address("main"), [request_bytes("GET", f"/r/{i}") for i in range(n)],
                            concurrency))


def wait_for(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_an_endpoint_answering_500_is_ejected_within_five_failures_and_returns(mesh: Any, fleet: Fleet) -> None:
    proxy = start(mesh, fleet)
    fleet["c"].control(status=500)
    results = run(proxy, 600, concurrency=1)
    assert len(results) == 600
    failures = [r for r in results if r.status != 200]
    assert {r.server for r in failures} == {"c"} and {r.status for r in failures} == {500}
    assert len(failures) == 5  # the fifth consecutive 5xx ejects it; with one caller nothing else is in flight
    state = endpoints(proxy)[fleet["c"].address]
    assert state["health"] == "ejected" and state["ejections"] == 1
    served = sum(fleet[n].stats()["requests"] for n in "abc")
    assert served == 600  # every request reached exactly one upstream once
    fleet["c"].control(status=200)
    wait_for(lambda: endpoints(proxy)[fleet["c"].address]["health"] == "healthy")
    results = run(proxy, 300)
    assert all(r.status == 200 for r in results)
    assert Counter(r.server for r in results)["c"] > 50


def test_a_killed_endpoint_is_ejected_and_a_revived_one_takes_traffic_again(mesh: Any, fleet: Fleet) -> None:
    proxy = start(mesh, fleet)
    assert all(r.status == 200 for r in run(proxy, 60))
    fleet["b"].kill()
    started = time.monotonic()
    results = run(proxy, 400)
    assert len(results) == 400
    failures = [r for r in results if r.status != 200]
    assert {r.status for r in failures} <= {502, 503}  # reset, or connect refused: local answers
    assert len(failures) <= 5 + 4  # five to eject, plus what four callers already had in flight
    state = endpoints(proxy)[fleet["b"].address]
    assert state["health"] == "ejected"
    assert time.monotonic() - started < 5
    fleet["b"].start()  # the same port
    wait_for(lambda: endpoints(proxy)[fleet["b"].address]["health"] == "healthy")
    results = run(proxy, 300)
    assert all(r.status == 200 for r in results)
    assert Counter(r.server for r in results)["b"] > 50


def test_the_cap_keeps_most_endpoints_in_service(mesh: Any, fleet: Fleet) -> None:
    proxy = start(mesh, fleet)
    fleet["b"].control(status=503)
    fleet["c"].control(status=503)
    run(proxy, 200)
    states = Counter(e["health"] for e in endpoints(proxy).values())
    assert states["ejected"] == 1  # 34% of 3: one at a time, never the whole cluster
    metrics = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    assert "meshbatch_upstream_endpoint_ejections_total" in metrics
    assert 'meshbatch_upstream_endpoint_state{cluster="svc"' in metrics
