"""Active health checks against real upstream processes: an endpoint whose health check fails leaves the
balancing set within the thresholds and comes back when it passes again."""

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


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    fleet = Fleet().start("a", "b", "c")
    yield fleet
    fleet.close()


def test_failing_health_checks_take_an_endpoint_out_and_passing_ones_bring_it_back(mesh: Any,
                                                                                    fleet: Fleet) -> None:
    check = {"path": "/health", "interval_ms": 100, "timeout_ms": 500, "unhealthy_threshold": 2,
             "healthy_threshold": 2}
    proxy = mesh.start(config([listener("main", [route("all", "svc")])],
                              [cluster("svc", *fleet.addresses(), health_check=check)]))

    def state() -> dict[str, str]:
        body = httpx.get(proxy.url("admin", "/clusters"), timeout=5).json()
        return {e["address"]: e["health"] for e in body["clusters"][0]["endpoints"]}

    def served(n: int) -> Counter[str]:
        results = asyncio.run(load(proxy.address("main"), [request_bytes("GET", "/")] * n, 4))
        assert all(r.status == 200 for r in results)
        return Counter(r.server for r in results)

    assert set(served(90)) == {"a", "b", "c"}
    fleet["b"].control(health=503)
    started = time.monotonic()
    while state()[fleet["b"].address] != "unhealthy":
        assert time.monotonic() - started < 3
        time.sleep(0.05)
    assert time.monotonic() - started < 1.5  # two failed probes 100 ms apart
    assert set(served(90)) == {"a", "c"}
    fleet["b"].control(health=200)
    while state()[fleet["b"].address] != "healthy":
        assert time.monotonic() - started < 6
        time.sleep(0.05)
    assert set(served(90)) == {"a", "b", "c"}
    fleet["c"].kill()  # a dead endpoint fails its probes too (connect refused)
    deadline = time.monotonic() + 3
    while state()[fleet["c"].address] != "unhealthy":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert set(served(60)) == {"a", "b"}
