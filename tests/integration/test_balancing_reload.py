"""Reloading balancing and health settings under load: the rebuilt cluster takes over the endpoints with
their warm connections and counters, and no request fails or is answered twice."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testbed.config import cluster, config, listener, route
from testbed.fleet import Fleet, load, request_bytes
from testbed.proxy import write_config


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    fleet = Fleet().start("a", "b", "c")
    yield fleet
    fleet.close()


def test_a_reload_that_changes_the_balancer_drops_nothing(mesh: Any, fleet: Fleet) -> None:
    routes = [route("all", "svc")]
    first = config([listener("main", routes)], [cluster("svc", *fleet.addresses())])
    proxy = mesh.start(first, name="reload.yaml")

    def endpoints() -> dict[str, Any]:
        body = httpx.get(proxy.url("admin", "/clusters"), timeout=5).json()["clusters"][0]
        return {"lb": body["lb"], **{e["address"]: e for e in body["endpoints"]}}

    warm = asyncio.run(load(proxy.address("main"), [request_bytes("GET", "/")] * 90, 3))
    assert all(r.status == 200 for r in warm)
    before = endpoints()
    results: list[Any] = []
    loader = threading.Thread(target=lambda: results.extend(asyncio.run(
        load(proxy.address("main"), [request_bytes("GET", f"/{i}") for i in range(3000)], 3))))
    loader.start()
    second = config([listener("main", routes)],
                    [cluster("svc", *fleet.addresses(), lb="ewma", outlier_detection={"consecutive_5xx": 3},
                             health_check={"path": "/health", "interval_ms": 200})])
    mark = proxy.mark()
    write_config(proxy.config_path, second)
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_for_line("meshbatch: reloaded", 10, start=mark)
    loader.join(60)
    assert len(results) == 3000 and all(r.status == 200 for r in results)
    after = endpoints()
    assert after["lb"] == "ewma"
    served = sum(fleet[n].stats()["requests"] for n in "abc")
    assert served == 90 + 3000  # each request reached one upstream exactly once
    for address in fleet.addresses():
        assert after[address]["requests"] > before[address]["requests"]  # counters carried over
        was, now = before[address]["connections"]["connects"], after[address]["connections"]["connects"]
        assert was <= now <= was + 3  # the same pool: its count goes on (a new balancer may want one more)
